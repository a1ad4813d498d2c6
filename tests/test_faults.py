"""Fault injection: no run may corrupt another, no failed write may leave a
half-written result or a temporary file, no worker may outlive its parent.

- two processes on one experiment: the second (`run --resume`, `run --fresh`, a stage
  command) is refused in one line naming the holder's pid, and the holder's checkpoints
  stay; a lock left by a process killed with SIGKILL is taken over;
- kill -9 of the parent of `ramer run --jobs 2`: no live worker after it; SIGTERM: the
  parent stops its workers and exits with one line;
- a results folder that cannot be written (full disk, read-only): one line, the previous
  complete results byte for byte, no temporary folder; a failed checkpoint write leaves
  no `.tmp` file; a killed `data synth`'s temporary folder is removed by the next one.
Predict's faults are in test_predict_faults.py, config values in test_config_validation.py.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.errors import RamerError
from pipeline.experiment import protocol
from pipeline.experiment.results import write_results
from pipeline.training.config import load_experiment

ROOT = Path(__file__).resolve().parents[1]
DIMS = {"audio": 8, "visual": 6, "text": 10}
TINY = {"folds": [0, 1], "runs": 1, "train.epochs": 2, "pretrain.epochs": 2, "encoder.d_model": 16,
        "encoder.hidden": 16, "encoder.heads": 2, "encoder.ff": 32, "encoder.layers": 1, "retrieval.k": 3}
# Long enough to be still running while the test does its checks; killed by the test.
LONG = """
experiment = "{name}"
dataset = "{data}"
folds = [0, 1]
runs = 1
systems = ["ramer", "lr"]
ingest = false
[pretrain]
epochs = 400
patience = 400
[train]
epochs = 2
[encoder]
d_model = 16
hidden = 16
heads = 2
ff = 32
layers = 1
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "tiny"
    write_synthetic(root, SynthConfig(labeled=150, unlabeled=60, dims=DIMS, seed=4))
    return root


def _env(work: Path) -> dict[str, str]:
    env = {**os.environ, "RAMER_THREADS": "1", "OMP_NUM_THREADS": "1", "RAMER_DATA_DIR": str(work / "data"),
           "RAMER_RESULTS_DIR": str(work / "results"), "RAMER_RUNS_DIR": str(work / "runs"),
           "PYTHONPATH": str(ROOT)}
    for key in ("QDRANT_URL", "RAMER_QDRANT_URL", "RAMER_QDRANT_PATH", "RAMER_SEED", "RAMER_JOBS"):
        env.pop(key, None)
    return env


def _ramer(work: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=work, env=_env(work),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _long_config(work: Path, data: Path, name: str) -> Path:
    path = work / f"{name}.toml"
    path.write_text(LONG.format(name=name, data=data))
    return path


def _wait_for(check, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not check():
        if proc.poll() is not None:
            pytest.fail(f"the command ended early: {proc.stderr.read() if proc.stderr else ''}")
        if time.time() > deadline:
            pytest.fail("timed out waiting for the command")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(timeout=60)


# ---------------------------------------------------------------- one process per experiment

def test_a_second_process_on_a_running_experiment_is_refused_and_deletes_nothing(tmp_path, data, monkeypatch,
                                                                                   capsys):
    from pipeline.cli import main

    cfg = _long_config(tmp_path, data, "busy")
    first = _ramer(tmp_path, "run", str(cfg))
    for key, value in _env(tmp_path).items():  # this test process is the second one
        if key.startswith("RAMER_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    try:
        saved = tmp_path / "runs" / "busy" / "config.json"
        _wait_for(saved.is_file, first)
        for args in (["run", str(cfg), "--resume"], ["run", str(cfg), "--fresh"], ["pretrain", str(cfg)],
                     ["sweep", str(cfg), "--fresh"]):
            with pytest.raises(SystemExit) as done:
                main(args)
            lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
            assert done.value.code == 1 and len(lines) == 1, (args, lines)
            assert f"in use by process {first.pid}" in lines[0], (args, lines)
            assert saved.is_file(), f"{args} deleted the running experiment's checkpoints"
        assert first.poll() is None, "the first run was disturbed"
    finally:
        _stop(first)


LOCK_FOREVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from pipeline.experiment.lock import experiment_lock
    with experiment_lock(Path(sys.argv[1]), "x"):
        print("locked", flush=True)
        time.sleep(600)
""")


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    from pipeline.experiment.lock import experiment_lock, lock_path

    runs = tmp_path / "runs"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_FOREVER, str(runs)], cwd=ROOT, env=_env(tmp_path),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RamerError, match=f"in use by process {holder.pid}"), experiment_lock(runs, "x"):
            pass
    finally:
        _stop(holder)  # SIGKILL: its lock file stays behind, naming a dead pid
    assert lock_path(runs, "x").read_text().strip() == str(holder.pid)
    with experiment_lock(runs, "x"):
        assert lock_path(runs, "x").read_text().strip() == str(os.getpid())
        with experiment_lock(runs, "x"):  # re-entrant in the holding process
            pass
    assert not lock_path(runs, "x").exists()


# ---------------------------------------------------------------- --jobs workers

def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _workers(parent: subprocess.Popen) -> list[int]:
    """The spawned unit workers of `parent` (not its resource tracker)."""
    pids = []
    for pid in _children(parent.pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmd:
            pids.append(pid)
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_jobs_2_workers_do_not_outlive_their_parent(tmp_path, data, sig):
    parent = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(_long_config(tmp_path, data, "par")),
                               "--jobs", "2"], cwd=tmp_path, env=_env(tmp_path), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "err.txt", "w"))  # noqa: SIM115
    workers: list[int] = []
    try:
        _wait_for(lambda: len(_workers(parent)) == 2, parent)
        workers = _workers(parent)
        time.sleep(0.5)  # the workers are past their start-up
        _stop(parent, sig)
        deadline = time.time() + 10
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "workers outlived their parent"
        if sig == signal.SIGTERM:
            err = (tmp_path / "err.txt").read_text()
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert parent.returncode == 1 and lines and "SIGTERM" in lines[-1] and "Traceback" not in err, err
    finally:
        _stop(parent)
        for w in workers:  # a failed test leaves no orphan training on the machine
            if _alive(w):
                os.kill(w, signal.SIGKILL)


# ---------------------------------------------------------------- results and temporary files

@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    """A finished experiment with its results written (the previous results)."""
    root = tmp_path_factory.mktemp("done")
    cfg = load_experiment(None, dataset=str(data), experiment="done", systems=["lr"], ingest=False, **TINY)
    st = Settings(_env_file=None, data_dir=root, results_dir=root / "results", runs_dir=root / "runs", threads=1)
    out = protocol.run_experiment(cfg, st)
    write_results(out, cfg, st)
    return cfg, st, out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


def test_a_full_disk_while_writing_results_keeps_the_previous_results(finished, monkeypatch):
    cfg, st, out = finished
    results = st.results_dir / "done"
    before = _snapshot(results)
    from pipeline.evaluation import report

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "render_report", full)  # after config, metrics and fits are written
    with pytest.raises(RamerError, match="No space left on device") as exc:
        write_results(out, cfg, st)
    assert "\n" not in str(exc.value) and "unchanged" in str(exc.value)
    assert _snapshot(results) == before
    assert _hidden(st.results_dir) == []


def test_a_read_only_results_folder_is_one_line_and_left_as_it_was(finished):
    cfg, st, out = finished
    results = st.results_dir / "done"
    before = _snapshot(results)
    mode = results.stat().st_mode
    results.chmod(0o555)
    try:
        with pytest.raises(RamerError, match="read-only"):
            write_results(out, cfg, st)
    finally:
        results.chmod(mode)
    assert _snapshot(results) == before and _hidden(st.results_dir) == []
    report = write_results(out, cfg, st)  # writable again: replaced whole
    assert report == results / "report.md" and _hidden(st.results_dir) == []


def test_a_failed_checkpoint_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    import torch

    from pipeline.training.checkpoint import save_torch

    def half_then_full(obj, path):
        Path(path).write_bytes(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(OSError):
        save_torch({"w": 1}, tmp_path / "encoders.pt")
    assert list(tmp_path.iterdir()) == []


def test_a_killed_synth_leaves_nothing_the_next_synth_keeps(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f".ds.tmp-{dead.pid}-0badc0de", tmp_path / ".ds.tmp-0badc0de"]  # with and without a pid
    live = tmp_path / f".ds.tmp-{os.getpid()}-0badc0de"  # a writer still at work
    for folder in (*stale, live):
        folder.mkdir()
        (folder / "features.parquet").write_bytes(b"x" * 100)
    write_synthetic(tmp_path / "ds", SynthConfig(labeled=60, unlabeled=0, dims={"audio": 4, "text": 4}, seed=1))
    assert not any(p.exists() for p in stale) and live.exists()


def test_a_disk_too_full_for_an_ingest_is_one_line_before_any_write(tmp_path, data, monkeypatch):
    import shutil
    from collections import namedtuple

    import numpy as np

    from pipeline.data.dataset import load_dataset
    from pipeline.errors import StoreError
    from pipeline.store import HiddenFeatureStore, ingest_hidden, qdrant_store

    ds = load_dataset(data)
    st = Settings(_env_file=None, qdrant_path=tmp_path / "q", qdrant_engine="edge", qdrant_url=None)
    hidden = {m: np.ones((len(ds), 8), np.float32) for m in ds.modalities}
    usage = namedtuple("usage", "total used free")
    real = shutil.disk_usage
    monkeypatch.setattr(qdrant_store.shutil, "disk_usage", lambda p: usage(*real(p)[:2], 1 << 20))  # 1 MiB free
    with HiddenFeatureStore.open(st) as store:
        with pytest.raises(StoreError, match="MiB free") as exc:
            ingest_hidden(store, "c", ds, None, hidden, progress=False)
        assert "\n" not in str(exc.value)
        assert store.backend.list_collections() in ([], ["c"]) and (
            not store.backend.exists("c") or store.count("c") == 0)  # nothing written; listing still works
