"""Independent (fold, run) units on several processes: `ramer run --jobs N`.

Each unit seeds every stage itself (`stages.stage_seed`), so a unit computes the same
numbers in a worker process as in the parent. Workers never open the Qdrant store (its
embedded folder admits one process): they hand their hidden vectors back and the parent
writes them (`finish.Finisher`), in the serial order. The pool is the standard
library's (spawn context: no forked torch / OpenMP state), not a scheduler of our own.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any

from pipeline.config import Settings
from pipeline.errors import RamerError

log = logging.getLogger(__name__)

# BLAS / OpenMP pools read these when a worker first loads them: set before it starts.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (a cgroup / taskset limit counts, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_job(settings: Settings, jobs: int) -> int:
    """Threads for each of `jobs` processes: an explicit RAMER_THREADS wins; otherwise
    the cores are shared out so that jobs x threads = cores (at least 1 each)."""
    if jobs <= 1 or "threads" in settings.model_fields_set:
        return max(1, settings.threads)
    return max(1, available_cores() // jobs)


_BLAS_LIMIT: list = []  # keeps the threadpoolctl limit alive for the process


def set_threads(threads: int) -> None:
    """torch intra-op, FAISS OpenMP and numpy/scipy BLAS threads of this process. BLAS
    too: with another thread count a large BLAS product (sklearn's lbfgs in lr-knn) sums
    in another order, and --jobs 1 and --jobs 2 would differ in the last bits."""
    import torch
    from threadpoolctl import threadpool_limits

    from pipeline.extras import load_faiss

    torch.set_num_threads(threads)
    load_faiss().omp_set_num_threads(threads)
    _BLAS_LIMIT[:] = [threadpool_limits(limits=threads, user_api="blas")]


@contextlib.contextmanager
def _thread_env(threads: int) -> Iterator[None]:
    """Workers inherit the environment at spawn: their BLAS pools start at `threads`."""
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: str(threads) for k in THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
LIVENESS_SECONDS = 1.0  # how often a worker looks for its parent where prctl is missing


def _die_with_parent(parent: int) -> None:
    """A worker of a parent killed with SIGKILL would go on training (~0.5 GB each) and
    writing checkpoints another run may own: Linux kills it with the parent
    (PR_SET_PDEATHSIG); elsewhere, or should the parent already be gone, a daemon thread
    exits the worker once it is orphaned (its parent pid changes)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(LIVENESS_SECONDS)
        os._exit(1)

    if os.getppid() != parent:  # died before prctl took effect
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(threads: int, parent: int) -> None:
    """Every worker: dies with its parent, leaves Ctrl-C to the parent (which stops it;
    a worker of its own would print a KeyboardInterrupt traceback), `threads` threads."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_threads(threads)


class Stopped(RamerError):
    """SIGTERM reached the parent: its workers are stopped, the checkpoints kept."""


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM becomes an exception in the parent, so the workers are stopped on the way
    out (`_collect`) instead of being orphaned by the default handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Stopped("stopped by SIGTERM; the workers were stopped and the finished units kept "
                      "(continue with --resume)")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End the running units now, not after they finish (minutes), and wait until they
    are gone: Python >= 3.14 has `terminate_workers`; before it, the executor's process
    table is the only handle."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
    else:
        for proc in procs:
            proc.terminate()
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()


def unit_error(where: str, exc: BaseException) -> RamerError:
    """One line for a failed unit. A bug's traceback (sent back by the worker as the
    exception's cause) is logged first, so it is not lost."""
    if isinstance(exc, RamerError):
        return RamerError(f"{where}: {exc}")
    if isinstance(exc, BrokenProcessPool):
        return RamerError(f"{where}: a worker process died (out of memory? try fewer --jobs)")
    cause = getattr(exc, "__cause__", None)
    log.error("%s failed:%s", where, f"\n{cause}" if cause is not None else f" {exc!r}")
    return RamerError(f"{where}: {type(exc).__name__}: {exc} (traceback logged above)")


def run_parallel(
    work: Callable[[Any], Any], tasks: list[Any], names: list[str], jobs: int, threads: int,
    on_done: Callable[[int, Any], None], after: list[int | None] | None = None,
) -> None:
    """`work(task)` for every task on `jobs` spawned processes of `threads` threads each;
    `on_done(i, result)` in the parent as each finishes (any order). `after[i]`: the
    index of a task that must have finished before task i starts (None: none). A free
    worker takes the first task of the list that may start, so the list's order is the
    preference. The first failure stops every other task and raises one RamerError
    naming it (`names[i]`)."""
    after = after if after is not None else [None] * len(tasks)
    with _thread_env(threads), _sigterm_stops():  # workers spawn at submit: the whole run is inside
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                                   initializer=_init_worker, initargs=(threads, os.getpid()))
        _collect(pool, jobs, work, tasks, names, after, on_done)


def _collect(pool: ProcessPoolExecutor, jobs: int, work, tasks, names, after, on_done) -> None:
    """Keep `jobs` tasks in flight (never more: the choice of the next task waits for a
    free worker, when more prerequisites may have finished)."""
    finished: set[int] = set()
    waiting = list(range(len(tasks)))  # not yet submitted, in preference order
    running: dict[Future, int] = {}

    def submit_ready() -> None:
        while len(running) < jobs:
            i = next((i for i in waiting if after[i] is None or after[i] in finished), None)
            if i is None:
                return
            waiting.remove(i)
            running[pool.submit(work, tasks[i])] = i

    try:
        submit_ready()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            ready = []
            for fut in sorted(done, key=running.get):  # same-time finishers in task order
                i = running.pop(fut)
                exc = fut.exception()
                if exc is not None:
                    raise unit_error(names[i], exc)
                ready.append((i, fut.result()))
                finished.add(i)
            submit_ready()  # free workers start their next task before the parent applies
            for i, result in ready:  # these results (store writes, views: seconds to minutes)
                on_done(i, result)
        if waiting:  # a prerequisite that is not in the list: a caller's bug
            raise RuntimeError(f"tasks {waiting} wait for prerequisites that never ran")
    except BaseException:
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)
