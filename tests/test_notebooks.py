"""The analysis notebooks run end to end on a tiny experiment, so they never rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _env(root: Path) -> dict[str, str]:
    env = {**os.environ, "RAMER_THREADS": "1", "OMP_NUM_THREADS": "1",
           "RAMER_DATA_DIR": str(root / "data"), "RAMER_RESULTS_DIR": str(root / "results")}
    for key in ("QDRANT_URL", "RAMER_QDRANT_URL", "RAMER_QDRANT_PATH", "MPLBACKEND"):
        env.pop(key, None)  # the tiny embedded store; inline plots
    return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding `data/` (dataset + embedded store) and `results/demo/`."""
    root = tmp_path_factory.mktemp("nb")
    cmd = [sys.executable, "-m", "pipeline.cli", "demo", "--labeled", "300", "--unlabeled", "300",
           "--epochs", "2", "--folds", "0"]
    res = subprocess.run(cmd, check=False, cwd=root, env=_env(root), capture_output=True, text=True,
                         timeout=600, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-2000:]
    return root


def _ensure_python3_kernel(tmp: Path, env: dict[str, str]) -> None:
    """ipykernel provides `python3` (running this interpreter); install it if it does not."""
    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        prefix = tmp / "jupyter"
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix)],
                       check=True)
        paths = [str(prefix / "share" / "jupyter"), os.environ.get("JUPYTER_PATH", "")]
        os.environ["JUPYTER_PATH"] = env["JUPYTER_PATH"] = os.pathsep.join(filter(None, paths))


def run_notebook(name: str, root: Path, **params: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), f"{name}: no parameters cell first"
    assert not any(c.outputs or c.execution_count for c in code), f"{name}: outputs not stripped"
    env = {**_env(root), **params}
    _ensure_python3_kernel(root, env)
    client = NotebookClient(nb, kernel_name="python3", timeout=180,
                            resources={"metadata": {"path": str(root)}})
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    return nb


def outputs(nb: nbformat.NotebookNode, mime: str) -> list[str]:
    return [o.data[mime] for c in nb.cells if c.cell_type == "code"
            for o in c.outputs if "data" in o and mime in o.data]


def rows(markdown: str) -> dict[str, list[float]]:
    """A markdown table's body: first cell -> the other cells as numbers."""
    out = {}
    for line in markdown.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0]] = [float(c) if "." in c else int(c) for c in cells[1:]]
    return out


def test_collections_notebook(workdir: Path) -> None:
    nb = run_notebook("01_collections.ipynb", workdir, RAMER_NB_COLLECTION="demo__demo__f0",
                      RAMER_NB_SAMPLE="150", RAMER_NB_TSNE_ITER="250")
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "demo__demo__f0, 600 points" in text
    tables = outputs(nb, "text/markdown")
    counts = rows(next(t for t in tables if t.startswith("| label |")))
    total = counts.pop("**total (store count)**")  # train, val, test, unlabeled, total
    assert total[-1] == 600 and total[3] == 300 and sum(total[:4]) == 600
    assert [sum(r[i] for r in counts.values()) for i in range(5)] == total
    precision = rows(next(t for t in tables if t.startswith("| modality | queries |")))
    assert set(precision) == {"audio", "visual", "text"}
    for row in precision.values():  # queries: labeled train points; candidates: train + unlabeled
        assert row[:2] == [total[0], total[0] + total[3]]
        assert all(0 <= p <= 100 for p in row[2:])
    assert len(outputs(nb, "image/png")) == 2  # t-SNE (one subplot per modality) + precision@K


def test_results_notebook(workdir: Path) -> None:
    nb = run_notebook("02_results.ipynb", workdir,
                      RAMER_NB_RESULTS=str(workdir / "results" / "demo"))
    tables = outputs(nb, "text/markdown")
    main = next(t for t in tables if t.startswith("| system | a WA | a UA |"))
    assert "| ramer |" in main and "| w/o retrieval |" in main and "Avg WA" in main
    assert any(t.startswith("| system | fold | run | metric |") for t in tables)  # raw numbers
    assert any(t.startswith("| modality | P@1 |") for t in tables)  # from precision.parquet
    assert any(t.startswith("Paired comparison with `ramer`") for t in tables)
    assert len(outputs(nb, "image/png")) == 3  # WA per condition, paired differences, precision@K
