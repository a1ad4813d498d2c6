"""Losing nothing when things go wrong: processes killed with SIGKILL mid-work, re-run.

- an ingest killed midway, re-run -> a complete, duplicate-free collection;
- `ramer run` killed after its first checkpoint, re-run with --resume -> the same
  metrics.parquet values as an uninterrupted run with the same seed;
- determinism: the same seed twice (another process) -> the same metrics.
Bad input fuzzing is in test_fuzz_import.py; a second process opening the same embedded
store is test_store.py::test_folder_in_use_by_another_process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.config import Settings
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.store import HiddenFeatureStore, collection_name
from pipeline.store.backends import Where

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def scratch() -> Iterator[Path]:
    """tmpfs when there is one (the stores fsync every write; durability is not what
    a slow disk would test here: SIGKILL leaves the page cache intact either way)."""
    path = Path(tempfile.mkdtemp(prefix="ramer-rel-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(work: Path) -> dict[str, str]:
    env = {**os.environ, "RAMER_THREADS": "1", "OMP_NUM_THREADS": "1", "RAMER_DATA_DIR": str(work / "data"),
           "RAMER_RESULTS_DIR": str(work / "results"), "RAMER_RUNS_DIR": str(work / "runs"),
           "RAMER_QDRANT_ENGINE": "edge"}
    for key in ("QDRANT_URL", "RAMER_QDRANT_URL", "RAMER_QDRANT_PATH", "RAMER_SEED"):
        env.pop(key, None)
    return env


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


# ---------------------------------------------------------------- ingest

INGEST_FOREVER = textwrap.dedent("""
    import sys
    import numpy as np
    from pathlib import Path
    from pipeline.cli.collections import random_projection
    from pipeline.config import Settings
    from pipeline.data import load_dataset
    from pipeline.data.scales import scale_tags
    from pipeline.data.splits import make_split
    from pipeline.store import HiddenFeatureStore, collection_name, ingest_hidden

    ds = load_dataset(sys.argv[1])
    split = make_split(ds.y, ds.labeled, ds.folds, 0, 0, ds.manifest.seed)
    hidden = {m: random_projection(ds.features[m], m, 32, 0) for m in ds.modalities}  # as `collections ingest`
    tags = scale_tags(ds.samples, ds.labeled)
    settings = Settings(_env_file=None, qdrant_path=Path(sys.argv[2]), qdrant_engine="edge", qdrant_url=None)
    with HiddenFeatureStore.open(settings) as st:
        name = collection_name(ds.manifest.name, "raw", 0)
        while True:  # keeps writing until killed
            for lo in range(0, len(ds), 150):
                rows = np.arange(lo, min(lo + 150, len(ds)))
                ingest_hidden(st, name, ds, split, {m: h[rows] for m, h in hidden.items()}, rows=rows,
                              scale_tags=[tags[r] for r in rows], batch_size=10, progress=False)
                print("chunk", lo, flush=True)
""")


def _samples(store: HiddenFeatureStore, name: str) -> list[str]:
    return [r.payload["sample"] for recs in store.backend.scroll(name, Where(), [], 256) for r in recs]


def test_ingest_killed_midway_then_rerun_is_complete_and_duplicate_free(scratch: Path, monkeypatch) -> None:
    ds = write_synthetic(scratch / "ds", SynthConfig(labeled=600, unlabeled=600, dims={"audio": 8, "visual": 6, "text": 10},
                                                     missing_rate=0.1, seed=2))
    store_dir = scratch / "qdrant"
    proc = subprocess.Popen([sys.executable, "-c", INGEST_FOREVER, str(ds.root), str(store_dir)], cwd=ROOT,
                            env=_env(scratch), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # kill while chunk 3 of 8 is being written
            if line.strip() == "chunk 300":
                break
        else:
            pytest.fail(f"ingest child ended early: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    finally:
        _kill(proc)
    assert proc.returncode == -signal.SIGKILL
    name = collection_name("ds", "raw", 0)
    settings = Settings(_env_file=None, qdrant_path=store_dir, qdrant_engine="edge", qdrant_url=None)
    with HiddenFeatureStore.open(settings) as st:  # the kill released the folder lock; the WAL replays
        partial = _samples(st, name)
    assert 450 <= len(partial) < len(ds), "killed midway"
    assert len(set(partial)) == len(partial)

    monkeypatch.delenv("QDRANT_URL", raising=False)
    from pipeline.cli.collections import app, random_projection

    res = CliRunner().invoke(app, ["ingest", str(ds.root), "--store", str(store_dir), "--engine", "edge",
                                   "--dim", "32", "--seed", "0"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    with HiddenFeatureStore.open(settings) as st:
        stored = _samples(st, name)
        assert st.count(name) == len(ds) and sorted(stored) == sorted(ds.samples.tolist())
        want = random_projection(ds.features["audio"][[5]], "audio", 32, 0)[0]
        _, got, payload = st.lookup(name, ds.samples[5], "audio")
    np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-5)
    assert payload["sample"] == ds.samples[5] and payload["dataset"] == "ds"


# ---------------------------------------------------------------- ramer run

CONFIG = """
experiment = "{name}"
dataset = "{data}"
folds = [0]
runs = 1
seed = 7
[pretrain]
epochs = 2
[train]
epochs = 3
[encoder]
d_model = 32
hidden = 32
heads = 4
ff = 64
[retrieval]
k = 3
"""


def _ramer(work: Path, store: str, *args: str) -> subprocess.Popen:
    """`ramer ARGS` in a subprocess with its own embedded store folder (two run at once)."""
    env = {**_env(work), "RAMER_QDRANT_PATH": str(work / store)}
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=work, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _config(work: Path, name: str) -> Path:
    path = work / f"{name}.toml"
    path.write_text(CONFIG.format(name=name, data=work / "tiny"))
    return path


def _metric_rows(path: Path) -> list[tuple]:
    t = pq.read_table(path).to_pylist()
    keys = sorted(k for k in t[0] if k != "value")
    return sorted((*(str(r[k]) for k in keys), r["value"]) for r in t)


def test_run_killed_after_first_checkpoint_resumes_to_identical_metrics(scratch: Path) -> None:
    from pipeline.experiment import protocol
    from pipeline.experiment.results import write_results
    from pipeline.training.config import load_experiment

    write_synthetic(scratch / "tiny", SynthConfig(labeled=240, unlabeled=120, dims={"audio": 16, "visual": 12, "text": 20},
                                                  seed=3))
    whole = _ramer(scratch, "q_whole", "run", str(_config(scratch, "whole")))  # uninterrupted (runs alongside)
    try:
        killed = _ramer(scratch, "q_killed", "run", str(_config(scratch, "killed")))
        first = scratch / "runs" / "killed" / "f0_r0" / "encoders.pt"
        deadline = time.time() + 120
        while not first.exists() and killed.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        _kill(killed)
        assert killed.returncode == -signal.SIGKILL, killed.stderr.read() if killed.stderr else ""
        assert first.exists() and not (scratch / "results" / "killed" / "metrics.parquet").exists()
        _, err = whole.communicate(timeout=300)
    finally:
        _kill(whole)
    assert whole.returncode == 0, err[-2000:]
    again = _ramer(scratch, "q_killed", "run", str(_config(scratch, "killed")))  # without --resume: refused, one line
    _, err = again.communicate(timeout=120)
    assert again.returncode == 1 and "--resume" in err and "Traceback" not in err
    resumed = _ramer(scratch, "q_killed", "run", str(_config(scratch, "killed")), "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    reference = _metric_rows(scratch / "results" / "whole" / "metrics.parquet")
    assert _metric_rows(scratch / "results" / "killed" / "metrics.parquet") == reference
    # determinism: the same seed once more, in this process, gives the same numbers
    cfg = load_experiment(_config(scratch, "whole"), experiment="again")
    settings = Settings(_env_file=None, data_dir=scratch / "data", results_dir=scratch / "results",
                        runs_dir=scratch / "runs", qdrant_path=scratch / "q_again", qdrant_engine="edge", qdrant_url=None, threads=1)
    out = protocol.run_experiment(cfg, settings)
    write_results(out, cfg, settings)
    assert _metric_rows(scratch / "results" / "again" / "metrics.parquet") == reference


# ---------------------------------------------------------------- benchmarks stay runnable


def test_bench_command_finds_every_script() -> None:
    """`ramer bench NAME` runs benchmarks/<script>; the scripts themselves are not run here
    (they measure for minutes), but each must exist and parse its options."""
    from pipeline.cli.bench import SCRIPTS, benchmarks_dir

    root = benchmarks_dir()
    for script, _ in SCRIPTS.values():
        res = subprocess.run([sys.executable, str(root / script), "--help"], capture_output=True, text=True, timeout=60,
                             check=False)
        assert res.returncode == 0 and "usage:" in res.stdout, (script, res.stderr[-500:])
