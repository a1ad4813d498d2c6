"""One live process per experiment: runs/.<experiment>.lock.

Two processes on one experiment corrupt both (a second `--fresh` deleted the first's
checkpoints while it wrote them, and `--resume` adopted the other run's encoders), so
every command that writes runs/<experiment>/ or results/<experiment>/ holds this lock.
It is an `flock` on a file beside the runs folder (outside it: `--fresh` deletes that
folder), so the kernel releases it when its holder dies, kill -9 included: a stale lock
file is simply locked again by the next process, which writes its own pid into it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import RamerError


def lock_path(runs_dir: Path, experiment: str) -> Path:
    return runs_dir / f".{experiment}.lock"


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _open_locked(path: Path, experiment: str) -> int | None:
    """An fd of `path` holding its flock; None when this process already holds it
    (further up its stack). A lock file is unlinked by its holder on release, so the
    inode locked must still be the one at `path`, or it is tried again."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RamerError(f"{path}: cannot create the experiment lock ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RamerError(f"{path}: cannot lock ({exc.strerror})") from None
            holder = _holder(path)
            if holder == str(os.getpid()):
                return None
            raise RamerError(f"experiment '{experiment}' is in use by process {holder} (lock {path}); "
                             "wait for it to end, or stop it first") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # its holder released and unlinked it meanwhile: lock the new file


@contextlib.contextmanager
def experiment_lock(runs_dir: Path, experiment: str) -> Iterator[None]:
    """Hold the experiment's lock for the block, or raise one RamerError line naming
    the pid that holds it. Re-entrant within one process (the CLI holds it around the
    protocol and the results, and the protocol takes it again). A command that fails
    before writing anything leaves nothing: the lock file (and a runs folder made only
    for it) goes on release."""
    path = lock_path(runs_dir, experiment)
    made = not runs_dir.exists()
    runs_dir.mkdir(parents=True, exist_ok=True)
    fd = _open_locked(path, experiment)
    if fd is None:
        yield
        return
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a waiter re-checks the inode
        os.close(fd)  # releases the flock
        if made:
            with contextlib.suppress(OSError):
                runs_dir.rmdir()  # only when empty


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files a killed writer left (`.NAME.<hex>.tmp`, checkpoint.save_*): only
    called under the experiment lock, so no live writer owns them."""
    if not folder.is_dir():
        return
    for tmp in folder.rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
