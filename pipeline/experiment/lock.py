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


@contextlib.contextmanager
def experiment_lock(runs_dir: Path, experiment: str) -> Iterator[None]:
    """Hold the experiment's lock for the block, or raise one RamerError line naming
    the pid that holds it. Re-entrant within one process (the CLI holds it around the
    protocol and the results, and the protocol takes it again): a lock held by this
    very pid is ours."""
    path = lock_path(runs_dir, experiment)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RamerError(f"{path}: cannot create the experiment lock ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RamerError(f"{path}: cannot lock ({exc.strerror})") from None
            holder = _holder(path)
            if holder == str(os.getpid()):  # taken further up this process's stack
                yield
                return
            raise RamerError(f"experiment '{experiment}' is in use by process {holder} (lock {path}); "
                             "wait for it to end, or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # unlocked below; an empty file names no holder
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files a killed writer left (`.NAME.<hex>.tmp`, checkpoint.save_*): only
    called under the experiment lock, so no live writer owns them."""
    if not folder.is_dir():
        return
    for tmp in folder.rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
