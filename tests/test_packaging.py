"""Set-up promises: extras that never overwrite each other, README commands = CI."""

from __future__ import annotations

import re
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
    from pipeline.training.protocol import _expand_strategies
    from pipeline.training.systems import parse_system

    paths = sorted((Path(__file__).parent.parent / "benchmarks" / "experiments").glob("*.toml"))
    assert len(paths) >= 6
    for path in paths:
        cfg = load_experiment(path)
        systems = [parse_system(s, cfg.retrieval) for s in _expand_strategies(cfg)]
        assert systems, path
        assert "ramer data" in path.read_text() and "ramer run" in path.read_text(), f"{path}: no command to rerun"
