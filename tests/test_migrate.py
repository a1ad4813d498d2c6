"""`ramer collections migrate`: embedded (edge) collections copied to another store, verified.

qdrant-client local mode in a second folder stands in for the Qdrant server: it runs the
same client calls a server gets (pipeline/store/client.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.config import Settings
from pipeline.data.splits import make_split
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.errors import StoreError
from pipeline.store import HiddenFeatureStore, collection_name, ingest_hidden
from pipeline.store.backends import Where
from pipeline.store.migrate import migrate_collections

DIM = 16


def _settings(path: Path, engine: str) -> Settings:
    return Settings(_env_file=None, data_dir=path, qdrant_path=path / "qdrant", qdrant_engine=engine, qdrant_url=None)


def _scratch() -> Path:
    """tmpfs when there is one: both stores fsync every write, which tests nothing here."""
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="ramer-migrate-", dir=shm))


@pytest.fixture()
def tmp_path() -> Iterator[Path]:  # shadows pytest's on purpose: tmpfs
    path = _scratch()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def source() -> Iterator[Path]:
    """An edge store with two folds' collections of a small dataset (some modalities absent)."""
    root = _scratch()
    ds = write_synthetic(root / "ds", SynthConfig(labeled=60, unlabeled=40, dims={"audio": 6, "visual": 5, "text": 7},
                                                  missing_rate=0.2, seed=1))
    rng = np.random.default_rng(0)
    hidden = {m: rng.standard_normal((len(ds), DIM)).astype(np.float32) for m in ds.modalities}
    with HiddenFeatureStore.open(_settings(root, "edge")) as st:
        for f in (0, 1):
            split = make_split(ds.y, ds.labeled, ds.folds, f, 0, 0)
            ingest_hidden(st, collection_name("ds", "t", f), ds, split, hidden, progress=False)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _points(store: HiddenFeatureStore, name: str) -> dict[str, tuple[dict, dict]]:
    mods = list(store.backend.vectors(name))
    return {r.id: (r.payload, {m: np.asarray(v, np.float32) for m, v in r.vectors.items()})
            for recs in store.backend.scroll(name, Where(), mods, 64) for r in recs}


def _same_points(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for pid, (pay, vecs) in a.items():
        assert pay == b[pid][0] and vecs.keys() == b[pid][1].keys(), pid
        for m, v in vecs.items():
            np.testing.assert_allclose(v, b[pid][1][m], atol=1e-6)


def test_migrate_copies_every_point_and_is_idempotent(source: Path, tmp_path: Path) -> None:
    with HiddenFeatureStore.open(_settings(source, "edge")) as src, \
            HiddenFeatureStore.open(_settings(tmp_path, "local")) as dst:
        first = migrate_collections(src, dst, batch_size=17, check=10)
        assert [r.collection for r in first] == ["ds__t__f0", "ds__t__f1"]
        assert all(r.created and r.points == 100 and r.checked == 10 for r in first)
        again = migrate_collections(src, dst, ["ds__t__f1"], batch_size=64)  # re-run: update, no duplicates
        assert [(r.collection, r.points, r.created) for r in again] == [("ds__t__f1", 100, False)]
        for name in ("ds__t__f0", "ds__t__f1"):
            _same_points(_points(dst, name), _points(src, name))  # ids, payloads, absent vectors alike
            assert dst.count(name, split="train") == src.count(name, split="train")
        hits_src = src.search_sample("ds__t__f0", "lab_000003", "audio", k=5)
        hits_dst = dst.search_sample("ds__t__f0", "lab_000003", "audio", k=5)
        assert [h.sample for h in hits_src] == [h.sample for h in hits_dst]


def test_migrate_refuses_clearly(source: Path, tmp_path: Path) -> None:
    with HiddenFeatureStore.open(_settings(source, "edge")) as src, \
            HiddenFeatureStore.open(_settings(tmp_path, "local")) as dst:
        with pytest.raises(StoreError, match=r"collection\(s\) \['nope'\] not found in edge store"):
            migrate_collections(src, dst, ["nope"])
        # shard settings are server-only: an embedded destination says so, writes nothing
        with pytest.raises(StoreError, match=r"shard settings .* needs a Qdrant server: the embedded 'local' store"):
            migrate_collections(src, dst, shard_number=2)
        assert dst.list_collections() == []
        dst.apply("ds__t__f0", ["audio", "visual", "text"], dim=DIM + 1)  # same name, other vectors
        with pytest.raises(StoreError, match="exists with vectors"):
            migrate_collections(src, dst, ["ds__t__f0"])
        assert dst.count("ds__t__f0") == 0


def test_cli_migrate(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli import collections as cli

    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:9")  # the source ignores it
    monkeypatch.setattr(cli, "_open_destination",
                        lambda url, key, spec: HiddenFeatureStore.open(_settings(tmp_path, "local")))
    res = CliRunner().invoke(cli.app, ["migrate", "--to", "http://server:6333", "--store", str(source / "qdrant"),
                                       "--engine", "edge", "-c", "ds__t__f1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "ds__t__f1" in res.output and "100" in res.output and "ds__t__f0" not in res.output
    monkeypatch.undo()
    res = CliRunner().invoke(cli.app, ["migrate", "--to", "http://127.0.0.1:9", "--store", str(source / "qdrant")])
    assert isinstance(res.exception, StoreError)  # main() prints it as one red line, exit 1
    assert str(res.exception).startswith("cannot reach Qdrant at http://127.0.0.1:9")
