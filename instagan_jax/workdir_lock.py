"""One training run per workdir: a lock held for as long as the run lives.

Two runs in one workdir (a re-queued cluster job that starts while the old one still runs, a
second terminal) would write the same checkpoints. The lock is ``WORKDIR/lock``: an
``flock`` on it, which the kernel drops when its process dies however it dies, and in it the
holder's host, pid and start time, so that the run refused can say who holds the workdir. A
lock file left by a dead process is taken over, with a line that says so. In a multi-host run
process 0 holds it for all.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time

from absl import logging

from instagan_jax.checks import InputError

LOCK_NAME = "lock"


class WorkdirInUse(InputError):
    """Another live run holds the workdir."""


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"host {info['host']} pid {info['pid']} (since {info['since']})"
    except (ValueError, TypeError, KeyError):
        return "an unknown process (unreadable lock file)"


@contextlib.contextmanager
def hold(workdir: str, enabled: bool = True):
    """Holds WORKDIR/lock for the duration of the block; WorkdirInUse if another run holds it."""
    if not enabled:
        yield
        return
    path = os.path.join(workdir, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise InputError(f"{path}: cannot create the workdir's lock file ({e.strerror})") from None
    with os.fdopen(fd, "r+") as f:
        previous = f.read(4096)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise WorkdirInUse(
                f"{workdir} is in use by another training run: {_holder(previous)}; wait for it to end, stop it, "
                "or use another --workdir"
            ) from None
        if previous.strip():
            logging.warning("%s: took over the lock of %s, which no longer runs", workdir, _holder(previous))
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": since}))
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()  # an empty file: released cleanly (the flock goes with the file's closing)
