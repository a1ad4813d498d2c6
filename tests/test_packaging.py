"""Set-up promises: extras that never overwrite each other, README commands = CI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_faiss_cpu_and_gpu_are_separate_extras() -> None:
    proj = _project()
    extras = proj["optional-dependencies"]
    assert not any("faiss" in d for d in proj["dependencies"]), "faiss must not sit in the base deps"
    assert any(d.startswith("faiss-cpu") for d in extras["cpu"])
    assert any(d.startswith("faiss-gpu") for d in extras["gpu"])
    assert not any("faiss-cpu" in d for d in extras["gpu"]), "gpu extra would sit on top of faiss-cpu"
    assert not any("faiss" in d for d in extras["dev"])


def test_documented_install_gives_a_working_faiss() -> None:
    import faiss
    import numpy as np

    index = faiss.IndexFlatIP(4)
    index.add(np.eye(4, dtype=np.float32))
    _, ids = index.search(np.eye(4, dtype=np.float32)[:1], 1)
    assert ids[0, 0] == 0
    assert hasattr(faiss, "get_num_gpus") or not hasattr(faiss, "StandardGpuResources")


def test_torch_range_admits_the_local_wheel() -> None:
    from packaging.requirements import Requirement

    req = next(Requirement(d) for d in _project()["dependencies"] if d.startswith("torch"))
    assert req.specifier.contains("2.13.0")


def test_readme_starts_with_two_commands_and_ci_runs_the_second() -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash)?\n(.*?)```", text, re.DOTALL)
    assert block is not None and text.index("```") < 200, "the README must open with the commands"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert commands[0].endswith("ramer demo") and "torch==2.13.0" in commands[0]
    assert "pytest" in commands[1] and commands[1].index("torch==2.13.0") < commands[1].index("pip install -e")
    ci = (ROOT / ".ci" / "run").read_text()
    strip = lambda c: c.replace(" -q", "")
    assert strip(commands[1]) in strip(ci)


def test_benchmark_experiment_configs_parse():
    """The README's report commands use these configs: each must load and name valid systems."""
    from pipeline.training.config import load_experiment
    from pipeline.training.systems import experiment_systems

    paths = sorted((Path(__file__).parent.parent / "benchmarks" / "experiments").glob("*.toml"))
    assert len(paths) >= 6
    for path in paths:
        cfg = load_experiment(path)
        systems = experiment_systems(cfg)
        assert systems, path
        text = path.read_text()  # a sweep config is rerun with `ramer sweep` (validation only)
        assert "ramer data" in text and ("ramer run" in text or "ramer sweep" in text), f"{path}: no command to rerun"


def test_dependencies_the_code_imports_are_declared() -> None:
    proj = _project()
    deps, extras = proj["dependencies"], proj["optional-dependencies"]
    assert any(d.startswith("scipy") for d in deps), "pipeline/evaluation/report.py imports scipy"
    assert any(d.startswith("tomli") and "python_version < '3.11'" in d for d in deps), "the 3.10 tomllib"
    assert any(d.startswith("h5py") for d in extras["iemocap"]), "ramer data import iemocap-mmin"
    assert any(d.startswith("h5py") for d in extras["dev"]), "the IEMOCAP importer tests"


# Runs `main()` once per command (argument lists separated by "--") in one process where
# faiss and h5py cannot be imported, as after `pip install ramer` without extras; prints
# each command's exit code and stderr after a marker.
WITHOUT_EXTRAS = r"""
import contextlib, io, sys
sys.modules["faiss"] = None  # `import faiss` now raises ImportError, as if not installed
sys.modules["h5py"] = None
from pipeline.cli import main
commands, cur = [], []
for a in sys.argv[1:] + ["--"]:
    if a == "--":
        commands.append(cur)
        cur = []
    else:
        cur.append(a)
for args in commands:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code
    print(f"=== {code} {' '.join(args)}\n{err.getvalue()}", end="")
"""


def _run_without_extras(tmp_path: Path, commands: list[list[str]]) -> list[tuple[int, list[str]]]:
    env = {**os.environ, "RAMER_DATA_DIR": str(tmp_path / "data"), "RAMER_RUNS_DIR": str(tmp_path / "runs"),
           "RAMER_RESULTS_DIR": str(tmp_path / "results"), "RAMER_QDRANT_PATH": str(tmp_path / "qdrant")}
    env.pop("QDRANT_URL", None)
    argv = [a for c in commands for a in (*c, "--")][:-1]
    res = subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, *argv], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    out = []
    for report in res.stdout.split("=== ")[1:]:
        head, *lines = report.splitlines()
        out.append((int(head.split()[0]), [ln for ln in lines if ln.strip()]))
    assert len(out) == len(commands), res.stdout[-3000:]
    return out


def test_without_faiss_help_data_and_collections_work_and_training_names_the_extra(tmp_path: Path) -> None:
    """`pip install -e .` without extras: no module-level `import faiss` on these paths."""
    synth = ["data", "synth", "--out", "d", "--labeled", "60", "--unlabeled", "20", "--dims",
             "audio=4,visual=3,text=5", "--folds", "3"]
    working = [["--help"], ["data", "--help"], ["collections", "--help"], ["run", "--help"], ["predict", "--help"],
               ["bench", "retrieval", "--help"], synth, ["data", "validate", "d"], ["data", "info", "d"],
               ["collections", "ingest", "d", "--dim", "8"], ["collections", "list"],
               ["collections", "search", "d__raw__f0", "--sample", "lab_000001", "--modality", "audio", "-k", "2"]]
    needing = [["run", "--dataset", "d", "-e", "x"], ["pretrain", "--dataset", "d", "-e", "x"],
               ["demo", "--out", "demo"], ["collections", "explore", "d__raw__f0", "-o", "view.html"],
               ["data", "import", "iemocap-mmin", "nowhere", "--name", "i"]]
    results = _run_without_extras(tmp_path, working + needing)
    for args, (code, lines) in zip(working, results):
        assert code == 0, (args, lines)
    for args, (code, lines) in zip(needing, results[len(working):]):
        assert code == 1 and len(lines) == 1 and "Traceback" not in lines[0], (args, lines)
        fix = "pip install 'ramer[iemocap]'" if "iemocap-mmin" in args else "pip install 'ramer[cpu]'"
        assert fix in lines[0], (args, lines[0])
    assert not [p for p in ("runs", "demo", "view.html") if (tmp_path / p).exists()], "stopped before any work"
