"""Data flows one way: no module of `pipeline/` imports a layer above its own, and
training and evaluation, side by side under the experiment layer, never import each other.

    data -> store, retrieval -> models -> training | evaluation -> experiment -> cli

Every import counts, at module level or inside a function (a lazy import is still a
dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pipeline"
# the rank of each package; a module may import packages of its own or a lower rank, and
# the two packages of one rank (store and retrieval, training and evaluation) not each other
RANK = {"errors": 0, "config": 1, "extras": 1, "data": 2, "store": 3, "retrieval": 3, "models": 4,
        "training": 5, "evaluation": 5, "experiment": 6, "cli": 7}
ALLOWED_SIDEWAYS = {("retrieval", "store"), ("store", "retrieval")}  # one layer: the vector store and its search


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "pipeline" and len(parts) > 1 else None


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            if node.module == "pipeline":  # 'from pipeline import training'
                out += [(node.lineno, f"pipeline.{a.name}") for a in node.names]
    return out


def _violations() -> list[str]:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        own = _package("pipeline." + ".".join(path.relative_to(ROOT).with_suffix("").parts))
        if own is None or own not in RANK:
            continue
        for line, module in _imports(path):
            other = _package(module)
            if other is None or other == own or other not in RANK:
                continue
            up = RANK[other] > RANK[own]
            sideways = RANK[other] == RANK[own] and (own, other) not in ALLOWED_SIDEWAYS
            if up or sideways:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {own} imports {module}")
    return bad


def test_every_package_has_a_rank():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= set(RANK), sorted(packages | modules - set(RANK))


def test_no_module_imports_upward_or_sideways():
    assert _violations() == []


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The rule itself: a models module importing training is reported."""
    fake = tmp_path / "pipeline"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "__init__.py").write_text("")
    (fake / "models" / "bad.py").write_text("def f():\n    from pipeline.training.trainer import fit\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", fake, raising=False)
    globals()["ROOT"] = fake
    try:
        assert _violations() == ["pipeline/models/bad.py:2: models imports pipeline.training.trainer"]
    finally:
        globals()["ROOT"] = Path(__file__).resolve().parents[1] / "pipeline"


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
