"""Stage 0: fold-fitted scaling makes every system blind to the features' units, and its
statistics never see a val or test row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.data.dataset import build_table, load_dataset, write_dataset
from pipeline.data.preprocess import Scaler
from pipeline.data.splits import make_split
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.experiment import protocol
from pipeline.models.registry import list_models
from pipeline.training.config import load_experiment
from pipeline.training.stages import PREPROCESS_FILE, fold_scaler

DIMS = {"audio": 12, "visual": 8, "text": 10}
# every single-label system: the registry's models plus RAMER's retrieval ablation
SYSTEMS = [*list_models(), "w/o retrieval"]


def _rewrite(src, out: Path, change) -> object:
    """A copy of dataset `src` whose features are `change(modality, features, rows)`."""
    feats = {m: change(m, np.array(src.features[m]), np.arange(len(src))) for m in src.modalities}
    table = build_table(src.manifest, src.samples, src.y, src.labeled, src.folds, feats, src.present, src.extra)
    return write_dataset(out, src.manifest, table)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    return write_synthetic(root / "tiny", SynthConfig(labeled=200, unlabeled=100, dims=DIMS, seed=5))


def _metrics(ds_dir: Path, tmp: Path, name: str, preprocess: str = "standard") -> dict:
    cfg = load_experiment(
        None, dataset=str(ds_dir), experiment=name, systems=SYSTEMS, preprocess=preprocess,
        folds=[0], runs=1, ingest=False, **{
            "train.epochs": 2, "pretrain.epochs": 2, "encoder.d_model": 16, "encoder.hidden": 16,
            "encoder.heads": 2, "encoder.ff": 32, "retrieval.k": 3})
    st_ = Settings(data_dir=tmp, results_dir=tmp / "results", runs_dir=tmp / "runs")
    out = protocol.run_experiment(cfg, st_)
    return {(r["system"], m["condition"], m["metric"]): m["value"] for r in out.records for m in r["metrics"]}


def test_units_do_not_matter_to_any_system(tiny, tmp_path):
    """x -> 1000 x + 10000 (or another positive affine map per modality) leaves every
    system's metrics unchanged: all of them see the same fold-scaled inputs. (A map that
    squeezes values far below float32's resolution, e.g. 0.001 x - 3, loses digits in
    the file itself; a negative factor flips the scaled features' sign.)"""
    factor = {"audio": 1000.0, "visual": 250.0, "text": 1000.0}
    offset = {"audio": 10000.0, "visual": 4000.0, "text": 10000.0}
    moved = _rewrite(tiny, tmp_path / "moved", lambda m, x, _: x * factor[m] + offset[m])
    base = _metrics(tiny.root, tmp_path, "base")
    other = _metrics(moved.root, tmp_path, "moved")
    assert base.keys() == other.keys() and {s for s, _, _ in base} == set(SYSTEMS)
    worst = max(abs(base[k] - other[k]) for k in base)
    assert worst < 1e-6, f"metrics moved by {worst} when only the units changed"


def test_without_scaling_units_do_matter(tiny, tmp_path):
    """The check above can fail: with preprocess='none' the same change moves the metrics."""
    moved = _rewrite(tiny, tmp_path / "moved", lambda m, x, _: x * 1000.0 + 10000.0)
    base = _metrics(tiny.root, tmp_path, "base", preprocess="none")
    other = _metrics(moved.root, tmp_path, "moved", preprocess="none")
    assert max(abs(base[k] - other[k]) for k in base) > 0.01


def test_statistics_never_see_val_or_test_rows(tiny, tmp_path):
    split = make_split(tiny.y, tiny.labeled, tiny.folds, 0, 0, 0)
    held_out = np.concatenate([split.val, split.test])
    rng = np.random.default_rng(0)

    def garbage(m, x, rows):
        x[held_out] = rng.normal(1e6, 1e5, (len(held_out), x.shape[1]))
        return x

    spoiled = _rewrite(tiny, tmp_path / "spoiled", garbage)
    clean = fold_scaler(tiny, split, "standard", tmp_path / "a")
    dirty = fold_scaler(load_dataset(spoiled.root), split, "standard", tmp_path / "b")
    for m in tiny.modalities:
        np.testing.assert_array_equal(clean.center_[m], dirty.center_[m])
        np.testing.assert_array_equal(clean.scale_[m], dirty.scale_[m])
    assert (tmp_path / "a" / PREPROCESS_FILE).is_file()


@pytest.mark.parametrize("mode", ["standard", "robust"])
def test_scaler_maps_train_rows_to_unit_scale(mode):
    rng = np.random.default_rng(1)
    x = rng.normal(50.0, 20.0, (400, 5)).astype(np.float32)
    x[:, 3] = 7.0  # a constant dimension maps to 0, never to inf
    present = np.ones(400, bool)
    present[:10] = False  # absent rows are neither fitted on nor moved from zero
    x[:10] = 0.0
    sc = Scaler(mode).fit({"m": x}, {"m": present}, np.arange(400))
    z = sc.transform("m", x, present)
    assert np.isfinite(z).all() and (z[:10] == 0).all() and (z[:, 3] == 0).all()
    live = z[10:, [0, 1, 2, 4]]
    assert abs(live.mean()) < 0.1 and 0.8 < live.std() < 1.2


def test_saved_scaler_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    feats = {"a": rng.normal(3, 2, (50, 4)).astype(np.float32), "b": rng.normal(-1, 5, (50, 2)).astype(np.float32)}
    pres = {m: np.ones(50, bool) for m in feats}
    sc = Scaler("robust").fit(feats, pres, np.arange(50))
    sc.save(tmp_path / "s.npz")
    back = Scaler.load(tmp_path / "s.npz", ["a", "b"], [4, 2])
    assert back.mode == "robust"
    for m, x in feats.items():
        np.testing.assert_array_equal(back.transform(m, x), sc.transform(m, x))
