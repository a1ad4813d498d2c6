"""Memory bounded by design: features memory-mapped once and never copied whole,
`ramer data synth` streaming, scaled features searched block by block, and a run that
cannot fit refused before it starts."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.data import mapped
from pipeline.data.dataset import load_dataset
from pipeline.data.preprocess import ScaledView, Scaler
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.errors import RamerError
from pipeline.retrieval.faiss_index import FastIndex, StreamedIndex

TINY = {"labeled": 60, "unlabeled": 40, "dims": {"audio": 8, "visual": 6, "text": 10}, "seed": 3}


@pytest.fixture
def map_everything(monkeypatch):
    """Map every table, however small (the threshold keeps small datasets in two files)."""
    monkeypatch.setattr(mapped, "MMAP_MIN_BYTES", 0)


def test_features_are_memory_mapped_once_and_equal_the_table(tmp_path, map_everything):
    ds = write_synthetic(tmp_path / "d", SynthConfig(**TINY))
    table = pq.read_table(tmp_path / "d" / "features.parquet")
    for m in ds.modalities:
        x = ds.features[m]
        assert isinstance(x, np.memmap) and not x.flags.writeable  # a read-only map, not a copy
        assert str(x.filename) == str((tmp_path / "d" / mapped.MMAP_DIR / f"{m}.npy").resolve())
        col = table.column(m).combine_chunks()
        want = np.asarray(col.values.to_numpy(zero_copy_only=False), np.float32).reshape(len(ds), -1)
        np.testing.assert_array_equal(np.asarray(x), want)
        np.testing.assert_array_equal(ds.present[m], col.is_valid().to_numpy(zero_copy_only=False))
    built = (tmp_path / "d" / mapped.MMAP_DIR / mapped.SOURCE).stat().st_mtime_ns
    load_dataset(tmp_path / "d")  # a second reader maps the same files: nothing rebuilt
    assert (tmp_path / "d" / mapped.MMAP_DIR / mapped.SOURCE).stat().st_mtime_ns == built


def test_a_replaced_table_rebuilds_its_map(tmp_path, map_everything):
    write_synthetic(tmp_path / "d", SynthConfig(**TINY))
    other = write_synthetic(tmp_path / "d", SynthConfig(**{**TINY, "seed": 4}))  # same shape, other values
    fresh = load_dataset(tmp_path / "d")
    plain = {m: np.asarray(pq.read_table(tmp_path / "d" / "features.parquet").column(m).combine_chunks()
                           .values.to_numpy(zero_copy_only=False)).reshape(len(other), -1) for m in other.modalities}
    for m in other.modalities:
        np.testing.assert_array_equal(np.asarray(fresh.features[m]), plain[m])


def test_small_tables_keep_the_two_file_layout(tmp_path):
    ds = write_synthetic(tmp_path / "d", SynthConfig(**TINY))
    assert not isinstance(ds.features["audio"], np.memmap)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "features.parquet", "manifest.json", "oracle_unlabeled.parquet"]


def test_cli_synth_streams_chunk_by_chunk(tmp_path, monkeypatch):
    """`ramer data synth` writes chunk by chunk (memory independent of the row count),
    with the in-memory generator's very rows."""
    import pipeline.data.synth_stream as stream
    from pipeline.cli.data import app

    sizes = []
    real = stream._chunk_tables

    def spy(cfg, manifest, rows, start, stop):
        sizes.append(stop - start)
        return real(cfg, manifest, rows, start, stop)

    monkeypatch.setattr(stream, "_chunk_tables", spy)
    out = tmp_path / "s"
    res = CliRunner().invoke(app, ["synth", "--out", str(out), "--labeled", "60", "--unlabeled", "40",
                                   "--dims", "audio=8,visual=6,text=10", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert sum(sizes) == 100 and max(sizes) <= stream.CHUNK
    ref = write_synthetic(tmp_path / "ref", SynthConfig(**TINY))
    got = load_dataset(out)
    for m in ref.modalities:
        np.testing.assert_array_equal(got.features[m], ref.features[m])


def test_scaled_view_and_streamed_search_equal_the_copy_and_one_index():
    """Feature-space keys stay views: each block searched as a FastIndex gives the same
    neighbours and the same scores, to the last bit, as one index over the scaled copy."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6000, 24)) * 3 + 1).astype(np.float32)
    present = np.ones(len(x), bool)
    present[::7] = False
    x[~present] = 0.0
    scaler = Scaler().fit({"a": x}, {"a": present}, np.arange(5000))
    copy, view = scaler.transform("a", x, present), ScaledView(x, present, scaler, "a")
    rows = np.flatnonzero(present)
    np.testing.assert_array_equal(view[rows], copy[rows])
    np.testing.assert_array_equal(view[rows[:12].reshape(3, 4)], copy[rows[:12].reshape(3, 4)])  # (B, K, D)
    q = np.arange(0, 6000, 5)
    for metric in ("cosine", "euclidean"):
        one = FastIndex(metric, "cpu").fit(copy[rows], rows)
        blocks = StreamedIndex(metric, "cpu", block_bytes=1).fit(view, rows)  # one FAISS block at a time
        assert len(blocks._blocks(len(q))) > 1
        s1, i1 = one.search(copy[q], 10, exclude_ids=q)
        s2, i2 = blocks.search(view[q], 10, exclude_ids=q)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(s1, s2)
        assert not (i2 == q[:, None]).any()  # never the query itself


def test_a_run_that_cannot_fit_stops_in_one_line_before_anything_is_written(tmp_path, monkeypatch):
    from pipeline.config import Settings
    from pipeline.experiment import memory
    from pipeline.experiment.protocol import run_experiment
    from pipeline.training.config import ExperimentConfig

    write_synthetic(tmp_path / "d", SynthConfig(**TINY))
    monkeypatch.setattr(memory, "available_memory", lambda: 1 << 20)  # 1 MiB left
    settings = Settings(_env_file=None, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                        qdrant_path=tmp_path / "qdrant", qdrant_url=None)
    cfg = ExperimentConfig(experiment="x", dataset=str(tmp_path / "d"), folds=[0], runs=1)
    with pytest.raises(RamerError) as err:
        run_experiment(cfg, settings, jobs=1)
    msg = str(err.value)
    assert "\n" not in msg and "GiB" in msg and "available" in msg
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_the_refusal_names_the_jobs_that_fit(tmp_path):
    from pipeline.experiment.memory import estimate_run_memory, require_run_memory

    ds = write_synthetic(tmp_path / "d", SynthConfig(**TINY))
    one = estimate_run_memory(ds, jobs=1)
    assert estimate_run_memory(ds, jobs=2).total == one.mapped + 2 * one.per_job
    with pytest.raises(RamerError, match=r"x 2\), .* available: use --jobs 1$"):
        require_run_memory(ds, jobs=2, available=one.total + one.per_job // 2)
    assert require_run_memory(ds, jobs=1, available=one.total).total == one.total
