"""The README's demo path and `ramer predict`, through the real console entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data import load_dataset


def ramer(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAMER_THREADS": "1", "RAMER_DATA_DIR": "data"}
    env.pop("QDRANT_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=600, stdin=subprocess.DEVNULL, check=False,  # callers assert on the exit code
    )


def test_demo_then_predict_with_missing_modalities(tmp_path: Path) -> None:
    res = ramer(tmp_path, "demo", "--labeled", "300", "--unlabeled", "300", "--epochs", "2", "--folds", "0")
    assert res.returncode == 0, res.stderr[-2000:]
    results = tmp_path / "results" / "demo"
    for name in ("report.md", "metrics.parquet", "precision.parquet", "config.json", "wa_by_condition.png", "precision_at_k.png"):
        assert (results / name).is_file(), name
    assert "w/o retrieval" in res.stdout and "report.md" in res.stdout
    # one browsable view per fold's collection, linked from the report and printed
    assert (results / "views" / "demo__demo__f0.html").is_file()
    assert "(views/demo__demo__f0.html)" in (results / "report.md").read_text()
    assert f"collection views (open in a browser, offline): {Path('results/demo/views/demo__demo__f0.html')}" in res.stdout
    metrics = pq.read_table(results / "metrics.parquet")
    assert set(metrics.column("system").to_pylist()) == {"ramer", "w/o retrieval", "lr", "lr-knn"}
    # the embedded store holds the fold's collection
    listed = ramer(tmp_path, "collections", "list")
    assert listed.returncode == 0 and "demo__demo__f0" in listed.stdout

    ds = load_dataset(tmp_path / "data" / "demo")
    rows = np.flatnonzero(ds.labeled)[:6]
    cols: dict[str, pa.Array] = {"sample": pa.array([f"new{i}" for i in range(6)])}
    for j, m in enumerate(ds.modalities):
        vals = [ds.features[m][r].tolist() if (i + j) % 3 else None for i, r in enumerate(rows)]
        cols[m] = pa.array(vals, pa.list_(pa.float32()))
    pq.write_table(pa.table(cols), tmp_path / "in.parquet")
    res = ramer(tmp_path, "predict", "-e", "demo", "-i", "in.parquet", "-o", "out.parquet")
    assert res.returncode == 0, res.stderr[-2000:]
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.num_rows == 6
    probs = np.stack([out.column(f"p_{c}").to_numpy() for c in ds.manifest.classes], 1)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert all(len(a) == 2 for a in out.column("available").to_pylist())


def test_every_command_explains_itself(tmp_path: Path) -> None:
    for cmd in ([], ["run"], ["demo"], ["predict"], ["report"], ["pretrain"], ["index"], ["train"], ["evaluate"],
                ["data"], ["data", "synth"], ["collections"], ["collections", "search"], ["collections", "explore"]):
        res = ramer(tmp_path, *cmd, "--help")
        assert res.returncode == 0, (cmd, res.stderr)
        assert "Usage" in res.stdout and len(res.stdout) > 200, cmd


def test_run_without_dataset_is_one_clear_line(tmp_path: Path) -> None:
    res = ramer(tmp_path, "run")
    assert res.returncode == 1
    assert "no dataset given" in res.stderr and "Traceback" not in res.stderr


def test_without_a_terminal_progress_is_plain_lines_with_eta() -> None:
    """CI, nohup, a log file: one line per stage, epochs at most every 30 s, with ETA."""
    from pipeline.cli.progress import LogProgress, progress_display

    now = [100.0]
    lines: list[str] = []
    plain = LogProgress(emit=lines.append, clock=lambda: now[0])
    hooks = plain.hooks()
    hooks.on_start(4)
    hooks.on_stage("fold 1/2 run 1/1 · stages 1-2 (pretrain, index)")
    now[0] += 10
    hooks.on_epoch("fold 1/2 run 1/1 · pretrain audio", 0, {"val": 0.5})  # 10 s after the last line: quiet
    now[0] += 30
    hooks.on_epoch("fold 1/2 run 1/1 · pretrain audio", 4, {"val": 0.61})
    hooks.on_advance(1)
    now[0] += 20
    hooks.on_stage("fold 1/2 run 1/1 · train ramer")
    assert lines == [
        "fold 1/2 run 1/1 · stages 1-2 (pretrain, index) | 0/4 units, elapsed 0:00:00, ETA -",
        "fold 1/2 run 1/1 · pretrain audio · epoch 5 · val 0.610 | 0/4 units, elapsed 0:00:40, ETA -",
        "fold 1/2 run 1/1 · train ramer | 1/4 units, elapsed 0:01:00, ETA 0:03:00",
    ]
    bar, _ = progress_display()  # pytest captures stdout: not a terminal
    assert isinstance(bar, LogProgress)


def test_paper_table_shows_published_and_recomputed_averages():
    from pipeline.evaluation.report import paper_table

    rows = {line.split(" | ")[0].strip("| "): line for line in paper_table().splitlines() if line.startswith("| ")}
    ramer = rows["RAMER"].strip("| ").split(" | ")
    assert ramer[-4:] == ["85.13", "85.18 *", "78.73", "78.09 *"]  # published vs mean of its cells
    assert rows["AE"].strip("| ").split(" | ")[-4:] == ["67.74", "67.74", "61.61", "61.61"]  # consistent: unmarked
