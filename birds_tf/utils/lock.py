"""One process per workdir: a lock that a crashed run does not leave stuck.

Why ``flock``: the kernel drops the lock when its holder dies (``kill -9``, a node crash on a
local disk), so a stale lock is never stuck; the file keeps the holder's pid, host, start time
and command, for the refusal message and to say whose lock was taken over. On NFS, Linux
implements ``flock`` with NFSv4 byte-range locks, held across clients.
"""
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys

from birds_tf.utils.workdir import Workdir

LOCK_NAME = Workdir.LOCK  # also a launch.reproduce output folder's
# sysexits.h EX_CANTCREAT: the output cannot be created (someone else is writing it).
EXIT_CODE = 73


class WorkdirBusyError(RuntimeError):
    """Another live process holds the folder's lock."""

    exit_code = EXIT_CODE


class WorkdirLock:
    """A held lock; ``release`` (or the process's end) frees it."""

    def __init__(self, path, fd):
        self.path = path
        self._fd = fd

    def release(self):
        if self._fd is None:
            return
        try:
            if _same_file(self.path, self._fd):
                os.remove(self.path)  # while still locked, so no one locks the removed file
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _same_file(path, fd):
    try:
        a, b = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_owner(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 65536).decode() or "{}")
    except (OSError, ValueError):
        return {}


def describe(owner):
    """``pid 123 on host h, started 2026-12-07 13:40:02 UTC (python -m launch.train ...)``."""
    if not owner:
        return "a process that did not record itself"
    return (f"pid {owner.get('pid')} on host {owner.get('host')}, started "
            f"{owner.get('started')} ({owner.get('command')})")


def acquire(folder, what="this run"):
    """Lock ``folder`` (created) for this process, or raise ``WorkdirBusyError`` naming the holder.

    Args:
      folder: the workdir (or ``launch.reproduce``'s output folder).
      what: how the refusal names the folder's contents, e.g. ``"launch.train workdir"``.
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_NAME)
    for _ in range(10):  # a holder may remove the file between our open and our lock
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            owner = _read_owner(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise WorkdirBusyError(
                f"{folder!r} is in use by another {what}: {describe(owner)}. Two processes "
                "writing one folder would interleave their files; wait for it to finish or stop "
                "it (a SIGTERM saves it), then rerun. A lock left by a process that died is "
                "taken over automatically.") from None
        if not _same_file(path, fd):
            os.close(fd)
            continue
        previous = _read_owner(fd)
        if previous:
            logging.warning("Took over the lock of %s: that process is gone.",
                            describe(previous))
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": datetime.datetime.now(datetime.timezone.utc).strftime(
                     "%Y-%m-%d %H:%M:%S UTC"),
                 "command": " ".join([os.path.basename(sys.executable)] + sys.argv)[:500]}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(owner).encode())
        return WorkdirLock(path, fd)
    raise WorkdirBusyError(f"Could not lock {path}: it keeps being replaced by another process.")
