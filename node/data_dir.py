"""The node's data directory: private to its user, and used by one daemon at a time.

``claim`` runs before anything in the directory is opened: it creates the directory
(0700), repairs one that others may write to (with a warning) or refuses one that belongs
to another user, then takes an exclusive ``flock`` on ``<data_dir>/daemon.lock``, held
until the daemon exits (the kernel drops it even after ``kill -9``). A second daemon on
the same directory stops there, before it touches the key or the store.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = "daemon.lock"

log = logging.getLogger(__name__)


class DataDirError(Exception):
    """The data directory is in use by another daemon, or unsafe to use."""


def prepare(data_dir: Path) -> None:
    """Make ``data_dir`` (0700) or make it private, as ``claim`` does, without taking the lock:
    what a command that only reads or creates the key (``id show``) needs.

    Raises
    ------
    DataDirError
        It cannot be made, or it belongs to another user and others may write to it.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = data_dir.stat()
    except OSError as exc:
        raise DataDirError(f"cannot use data dir '{data_dir}': {exc.strerror}") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        if info.st_uid != os.getuid():
            raise DataDirError(
                f"data dir '{data_dir}' (mode {mode:04o}) belongs to another user and others may "
                f"write to it; use a directory of your own"
            )
        os.chmod(data_dir, 0o700)
        log.warning("data dir %s had mode %04o, others could read or write it: set to 0700", data_dir, mode)


@contextmanager
def claim(data_dir: Path) -> Iterator[None]:
    """Hold ``data_dir`` for this process (see the module docstring)."""
    prepare(data_dir)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise DataDirError(
                f"data dir '{data_dir}' is in use by another daemon (pid {holder}); "
                f"stop it first or use another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
