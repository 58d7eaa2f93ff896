"""Preemption: a SIGTERM (cluster scheduler, cloud VM) saves the run at the next step boundary.

Why not ``tf.distribute.experimental.PreemptionCheckpointHandler``: it checkpoints a custom
training loop and restarts the epoch from its first step; the protocol's runs go through
``model.fit`` and must resume bit for bit, so the step boundary is taken from the resume
callback instead (``resume.ResumeCheckpoint`` saves the mid-epoch state and raises
``Preempted``). Outside the main stage's steps (start-up, a pre-stage, the final evaluation)
nothing partial is worth saving: the handler raises ``Preempted`` at once and the rerun redoes
that part, as after ``kill -9``.
"""
import contextlib
import signal
import threading

# sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to retry".
EXIT_CODE = 75


class Preempted(Exception):
    """The run stopped on SIGTERM after saving what it could; the same command resumes it."""

    exit_code = EXIT_CODE


_requested = threading.Event()
_armed = []  # the step-boundary savers currently running (their fit checks ``requested()``)


def requested():
    """True once a SIGTERM arrived while a step-boundary saver was running."""
    return _requested.is_set()


@contextlib.contextmanager
def step_boundary():
    """While inside, a SIGTERM only sets ``requested()``; the caller saves and raises."""
    _armed.append(True)
    try:
        yield
    finally:
        _armed.pop()


def _handler(signum, frame):
    _requested.set()
    if not _armed:
        raise Preempted("Stopped by SIGTERM before the training steps (or after them); nothing "
                        "of this part is saved. Rerun the same command: it resumes from the "
                        "last completed epoch.")


@contextlib.contextmanager
def on_sigterm():
    """Install the SIGTERM handler for the block (main thread only; elsewhere a no-op)."""
    _requested.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _requested.clear()
