"""One command-line convention for every launcher: absl flags, ``--help``, ``--verbosity``.

Each launcher keeps its flags in its own ``FlagValues`` (several define ``--workdir`` and tests
import them into one process) and parses them with ``parse``, which also gives every launcher:

- ``-h``, ``--help``, ``--helpshort``, ``--helpfull``: the module's docstring and its flags.
- ``--verbosity`` (``-v``), absl's levels: -1 (default) keeps the console to the progress
  lines, results and warnings; 0 brings back INFO logs (absl and TensorFlow's own, e.g. the
  pre-stage rows, checkpoint timings), Keras' full per-epoch line (every log entry, per-layer
  densities included) and TensorFlow's C++ start-up lines; 1 adds DEBUG.
- ``--flagfile=FILE``: flags from a file, as absl does everywhere.
- one line for a bad input: ``run`` turns the errors a bad input raises (``BAD_INPUT``) into
  ``prog: message`` on stderr and exit status 1; from ``--verbosity`` 0 up the traceback comes
  first, as it does for every other error.
"""
import pickle
import sys
import traceback

from absl import flags
from absl import logging

HELP = ("-h", "--help", "--helpshort", "--helpfull")
VERBOSITY_HELP = ("Console detail, absl levels: -1 progress lines, results and warnings only; "
                  "0 also INFO logs, Keras' full epoch line and TensorFlow's start-up lines; "
                  "1 DEBUG.")


# What a bad input raises: a refused value (gin's unknown names included), a missing or
# misplaced path, a dataset file that is not what it claims.
BAD_INPUT = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
             FileExistsError, pickle.UnpicklingError)


def new_flags():
    """A launcher's own FlagValues, holding the shared ``--verbosity`` (``-v``)."""
    flag_values = flags.FlagValues()
    flags.DEFINE_integer("verbosity", -1, VERBOSITY_HELP, short_name="v",
                         flag_values=flag_values)
    return flag_values


def help_text(flag_values, prog, doc):
    """The docstring, then the launcher's flags and the shared ones (``--flagfile`` too)."""
    lines = []
    for line in flag_values.get_help(include_special_flags=False).splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):  # a defining file's path
            line = ("shared flags (every launcher):" if line.rstrip(":").endswith(("cli", "cli.py"))
                    else f"{prog} flags:")
        lines.append(line)
    return f"{(doc or '').strip()}\n\n" + "\n".join(lines).strip() + "\n"


def parse(flag_values, argv, prog, doc, positional=False):
    """Parse ``argv`` (without the program name) into ``flag_values``; returns the positional
    arguments. ``--help`` prints ``help_text`` and exits 0; a bad flag, or a positional argument
    where ``positional`` is false, exits with the program's name and the reason."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in HELP for a in argv):
        print(help_text(flag_values, prog, doc))
        raise SystemExit(0)
    flag_values.unparse_flags()
    try:
        rest = flag_values([prog] + argv)[1:]
    except flags.Error as e:
        raise SystemExit(f"{prog}: {e} (see {prog} --help)") from None
    if rest and not positional:
        raise SystemExit(f"{prog}: unexpected arguments {rest}; every setting is a "
                         "--flag=value.")
    set_verbosity(flag_values.verbosity)
    return rest


def set_verbosity(verbosity):
    """absl's handler and level, as ``absl.app.run`` would set them, without parsing absl's own
    flags (which would claim ``-v`` and the launchers' names)."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # else absl prints "Logging before flag parsing"
    logging.use_absl_handler()
    logging.set_verbosity(int(verbosity))


def train_verbose(verbosity):
    """``train_eval``'s ``verbose`` for a console verbosity: 1 (our one line per epoch) by
    default, 2 (Keras' full line too) from verbosity 0 up."""
    return 2 if int(verbosity) >= 0 else 1


def run(main, flag_values, prog):
    """Run a launcher's ``main`` as ``python -m`` does; returns its exit status.

    A ``BAD_INPUT`` error leaves as ``prog: message`` on one line (status 1), and so does the
    ``SystemExit(message)`` a launcher raises for one; from ``--verbosity`` 0 up the traceback
    of the error behind it is printed too. ``main`` itself keeps raising, so tests and scripts
    calling it see the error.

    Args:
      main: the launcher's ``main()``, parsing ``sys.argv`` into ``flag_values``.
      flag_values: the launcher's FlagValues (``new_flags``), read for ``--verbosity``.
      prog: the name the message starts with, e.g. "launch.train".
    """
    try:
        return main()
    except SystemExit as e:
        behind = e.__cause__ or e.__context__
        if isinstance(e.code, str) and behind is not None and _verbose(flag_values):
            traceback.print_exception(behind)
        raise
    except BAD_INPUT as e:
        if _verbose(flag_values):
            raise
        raise SystemExit(f"{prog}: {one_line(e)}") from None


def one_line(error):
    """An error's message on one line (gin adds the binding or file on lines of its own)."""
    return " ".join(part.strip() for part in str(error).splitlines() if part.strip())


def _verbose(flag_values):
    return flag_values.is_parsed() and int(flag_values.verbosity) >= 0
