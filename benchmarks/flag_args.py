"""What the benchmark entry points share with the launchers (``launch/cli.py``): absl flags,
``--help``, ``--verbosity``, and a bad input as one line ``benchmarks.X: message`` with exit
status 1 (the traceback too from ``--verbosity`` 0 up).

The benchmarks keep the flag names their docs and the Makefile use (``--train-rounds``); ``args``
reads them back as attributes (``train_rounds``).
"""
import types

from launch import cli


def args(flag_values):
    """The parsed flags as attributes, ``--train-rounds`` read as ``train_rounds``."""
    return types.SimpleNamespace(**{name.replace("-", "_"): value for name, value
                                    in flag_values.flag_values_dict().items()})


def entry(main, flag_values, prog, argv=None):
    """Run ``main(argv)`` as ``python -m`` does, through ``cli.run``.

    Args:
      main: the benchmark's ``main(argv)``; it raises ``ValueError`` (or another of
        ``cli.BAD_INPUT``) for a bad input, before any heavy work.
      flag_values: the benchmark's FlagValues (``cli.new_flags``).
      prog: the name the one-line message starts with, e.g. "benchmarks.pgd_at".
      argv: the arguments without the program name (default ``sys.argv[1:]``).
    Returns:
      The exit status: ``main``'s when it returns an int, else 0.
    """
    status = cli.run(lambda: main(argv), flag_values, prog)
    return status if isinstance(status, int) else 0
