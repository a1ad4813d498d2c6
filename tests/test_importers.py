"""Importers of real dataset formats: fixtures written in the exact source formats (npz,
pickle, torch .pt, h5 + npy), round-tripped into datasets the protocol accepts, plus
the clear errors on broken sources (nothing written)."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pipeline.config import Settings
from pipeline.data.dataset import load_dataset
from pipeline.data.importers import (
    import_carat_mosei,
    import_iemocap_mmin,
    import_mer2024,
    import_mmsa,
)
from pipeline.errors import DataError
from pipeline.experiment import protocol
from pipeline.experiment.results import write_results
from pipeline.training.config import load_experiment

RNG = np.random.default_rng(0)


def run_tiny(ds_dir: Path, tmp: Path, systems=("ramer",), folds=(0,)) -> protocol.RunOutputs:
    """1 fold x 1 run x 1 epoch with tiny encoders: the dataset is accepted end to end."""
    cfg = load_experiment(
        None, dataset=str(ds_dir), experiment="imp", folds=list(folds), runs=1, ingest=False,
        systems=list(systems),
        **{"train.epochs": 1, "pretrain.epochs": 1, "encoder.d_model": 16, "encoder.hidden": 16,
           "encoder.heads": 2, "encoder.ff": 32, "retrieval.k": 2, "precision_ks": [1, 2]},
    )
    st = Settings(data_dir=tmp, results_dir=tmp / "results", runs_dir=tmp / "runs")
    out = protocol.run_experiment(cfg, st, fresh=True)
    write_results(out, cfg, st)
    assert out.records and all(r["metrics"] for r in out.records)
    return out


# ---------------------------------------------------------------- MER2024


def write_mer2024(root: Path, n_train=40, n_test=12, n_unlisted=5, dims=(6, 5, 4)) -> None:
    emos = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
    train = {f"sample_{i:05d}": {"emo": emos[i % 6], "val": 0.0} for i in range(n_train)}
    test = {f"test_{i:05d}": {"emo": "", "val": 0.0} for i in range(n_test)}
    np.savez(root / "label-6way.npz", train_corpus=train, test1_corpus=test)
    names = list(train) + list(test) + [f"pool_{i:05d}" for i in range(n_unlisted)]
    for ext, d in zip(("chinese-hubert-large", "clip-vit-large-patch14", "Baichuan-13B-Base"), dims):
        folder = root / "features" / f"{ext}-UTT"
        folder.mkdir(parents=True)
        for n in names:
            np.save(folder / f"{n}.npy", RNG.standard_normal(d).astype(np.float32))


EXTRACTORS = {"audio": "chinese-hubert-large", "visual": "clip-vit-large-patch14", "text": "Baichuan-13B-Base"}


def test_mer2024_round_trip(tmp_path):
    (tmp_path / "src").mkdir()
    write_mer2024(tmp_path / "src")
    ds = import_mer2024(tmp_path / "src", "mer", tmp_path / "mer", EXTRACTORS, unlisted=True, folds=2)
    assert len(ds) == 57 and ds.labeled.sum() == 40
    assert ds.manifest.dims == [6, 5, 4] and ds.manifest.task == "single_label"
    half = "medium,large,turbo,half-pool,pool,train+half-pool,train+pool"  # the paper's medium = half the pool
    assert set(ds.extra["scale"][~ds.labeled]) <= {half, "large,turbo,pool,train+pool"}
    prov = ds.manifest.provenance
    assert len(prov["sha256"]) == 64 and set(prov["features"]) == {"audio", "visual", "text"}
    run_tiny(tmp_path / "mer", tmp_path)


def test_mer2024_missing_file_and_shape_errors(tmp_path):
    (tmp_path / "src").mkdir()
    write_mer2024(tmp_path / "src")
    (tmp_path / "src/features/clip-vit-large-patch14-UTT/sample_00003.npy").unlink()
    with pytest.raises(DataError, match="missing: sample_00003"):
        import_mer2024(tmp_path / "src", "mer", tmp_path / "out", EXTRACTORS)
    np.save(tmp_path / "src/features/Baichuan-13B-Base-UTT/sample_00005.npy", np.zeros(9, np.float32))
    with pytest.raises(DataError, match="sample_00005"):
        import_mer2024(tmp_path / "src", "mer", tmp_path / "out", EXTRACTORS, allow_missing=True)
    assert not (tmp_path / "out").exists()


def test_mer2024_unknown_emotion(tmp_path):
    (tmp_path / "src").mkdir()
    write_mer2024(tmp_path / "src")
    np.savez(tmp_path / "src/label-6way.npz", train_corpus={"sample_00000": {"emo": "bored", "val": 0}})
    with pytest.raises(DataError, match="bored"):
        import_mer2024(tmp_path / "src", "mer", tmp_path / "out", EXTRACTORS)


# ---------------------------------------------------------------- MMSA pickles


def write_mmsa(path: Path, sizes=(30, 8, 10), dims=(5, 4, 7), frames=(6, 5, 8), rng=None) -> None:
    rng = RNG if rng is None else rng  # a fixture of its own leaves the shared stream alone
    data = {}
    for split, n in zip(("train", "valid", "test"), sizes):
        data[split] = {
            "id": np.array([f"{split}_vid_{i}$_$0" for i in range(n)]),
            "raw_text": ["hello"] * n,
            "text": rng.standard_normal((n, frames[2], dims[2])).astype(np.float32),
            "audio": rng.standard_normal((n, frames[0], dims[0])).astype(np.float32),
            "vision": rng.standard_normal((n, frames[1], dims[1])).astype(np.float32),
            "audio_lengths": rng.integers(1, frames[0] + 1, n).tolist(),
            "vision_lengths": rng.integers(1, frames[1] + 1, n).tolist(),
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
            "classification_labels": rng.integers(0, 3, n).astype(np.float32),
        }
        data[split]["audio"][0, -1] = -np.inf  # MOSEI's COVAREP quirk
    with path.open("wb") as fh:
        pickle.dump(data, fh)


def test_mmsa_pooling_official_split_and_run(tmp_path):
    write_mmsa(tmp_path / "mosi.pkl")
    ds = import_mmsa(tmp_path / "mosi.pkl", "mosi", tmp_path / "mosi", official_split=True)
    assert ds.manifest.task == "regression" and ds.manifest.folds == 3
    assert np.bincount(ds.folds).tolist() == [30, 8, 10]
    with open(tmp_path / "mosi.pkl", "rb") as fh:
        raw = pickle.load(fh)["train"]
    k = raw["vision_lengths"][1]
    np.testing.assert_allclose(ds.features["visual"][1], raw["vision"][1, :k].mean(0), rtol=1e-5)
    assert np.isfinite(ds.features["audio"]).all()
    run_tiny(tmp_path / "mosi", tmp_path, systems=("ramer",), folds=(2,))


def test_mmsa_single_label_and_missing_key(tmp_path):
    write_mmsa(tmp_path / "sims.pkl")
    ds = import_mmsa(tmp_path / "sims.pkl", "sims", tmp_path / "sims", task="single_label", folds=2)
    assert ds.manifest.classes == ["negative", "neutral", "positive"]
    with open(tmp_path / "sims.pkl", "rb") as fh:
        data = pickle.load(fh)
    del data["valid"]["vision"]
    with open(tmp_path / "bad.pkl", "wb") as fh:
        pickle.dump(data, fh)
    with pytest.raises(DataError, match="'valid' lacks key"):
        import_mmsa(tmp_path / "bad.pkl", "bad", tmp_path / "bad")


# ---------------------------------------------------------------- CARAT's aligned MOSEI


def write_carat_pt(path: Path, sizes=(40, 8, 12), n_ids=6, dims=(74, 35, 300), t=60) -> None:
    data = {}
    for split, n in zip(("train", "valid", "test"), sizes):
        tgt = []
        for i in range(n):
            k = i % 3  # 0 = "None", 1 or 2 emotions
            ids = sorted(RNG.choice(np.arange(4, 4 + n_ids), size=k, replace=False).tolist())
            tgt.append([2, *ids, 3])
        seqs = {}
        for key, d in zip(("src-audio", "src-visual", "src-text"), dims):
            arr = RNG.standard_normal((n, t, d)).astype(np.float32)
            arr[:, : t // 2] = 0.0  # left padding as in the aligned file
            seqs[key] = list(arr)
        data[split] = {**seqs, "tgt": tgt}
    data["dict"] = {"tgt": {"<blank>": 0}}
    torch.save(data, path)


def test_carat_mosei_multilabel_round_trip(tmp_path):
    write_carat_pt(tmp_path / "train_valid_test.pt")
    ds = import_carat_mosei(tmp_path / "train_valid_test.pt", "mosei", tmp_path / "mosei", folds=2)
    assert ds.manifest.task == "multi_label" and ds.manifest.classes[0] == "happy"
    assert ds.y.shape == (60, 6) and (ds.y.sum(1) == 0).sum() == 14 + 3 + 4  # "None" samples kept
    assert ds.manifest.dims == [74, 35, 300]
    out = run_tiny(tmp_path / "mosei", tmp_path, systems=("ramer", "carat"))
    names = {m["metric"] for r in out.records for m in r["metrics"]}
    assert {"Acc", "P", "R", "F1"} <= names
    report = (tmp_path / "results/imp/report.md").read_text()
    assert "Acc / F1" in report and "WA" not in report


def test_carat_mosei_bad_label_id(tmp_path):
    write_carat_pt(tmp_path / "x.pt")
    data = torch.load(tmp_path / "x.pt", weights_only=False)
    data["test"]["tgt"][3] = [2, 11, 3]
    torch.save(data, tmp_path / "x.pt")
    with pytest.raises(DataError, match=r"test\[3\]: 11"):
        import_carat_mosei(tmp_path / "x.pt", "mosei", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# M3ED: tests/test_import_m3ed.py (fixtures built to the upstream writers)


# ---------------------------------------------------------------- IEMOCAP (MMIN layout)


def write_iemocap(root: Path, n_cv=3, per=8, dims=(130, 342, 1024)) -> None:
    utts = [f"Ses0{c + 1}F_impro01_F{i:03d}" for c in range(n_cv) for i in range(per)]
    labels = {u: int(RNG.integers(0, 4)) for u in utts}
    for sub, fname, d in (("A", "comparE", dims[0]), ("V", "denseface", dims[1]), ("L", "bert_large", dims[2])):
        (root / sub).mkdir(parents=True)
        with h5py.File(root / sub / f"{fname}.h5", "w") as h5:
            for u in utts:
                h5[u] = RNG.standard_normal((int(RNG.integers(2, 7)), d)).astype(np.float32)
    for c in range(n_cv):
        cv = root / "target" / str(c + 1)
        cv.mkdir(parents=True)
        tst = utts[c * per : (c + 1) * per]
        rest = [u for u in utts if u not in tst]
        for s, names in (("trn", rest[2:]), ("val", rest[:2]), ("tst", tst)):
            np.save(cv / f"{s}_label.npy", np.eye(4)[[labels[u] for u in names]])
            np.save(cv / f"{s}_int2name.npy", np.array([[u.encode()] for u in names]))


def test_iemocap_mmin_folds_kept(tmp_path):
    write_iemocap(tmp_path / "iemocap", dims=(13, 34, 20))
    ds = import_iemocap_mmin(tmp_path / "iemocap", "iemocap", tmp_path / "ie")
    assert ds.manifest.folds == 3 and len(ds) == 24
    assert all(s.startswith(f"Ses0{f + 1}") for s, f in zip(ds.samples, ds.folds))
    assert any(k.endswith("comparE.h5") for k in ds.manifest.provenance["sha256"])
    run_tiny(tmp_path / "ie", tmp_path)


def test_iemocap_missing_utterance(tmp_path):
    write_iemocap(tmp_path / "iemocap", dims=(3, 3, 3))
    with h5py.File(tmp_path / "iemocap/V/denseface.h5", "a") as h5:
        del h5["Ses02F_impro01_F004"]
    with pytest.raises(DataError, match="Ses02F_impro01_F004"):
        import_iemocap_mmin(tmp_path / "iemocap", "iemocap", tmp_path / "ie")
    assert not (tmp_path / "ie").exists()


def test_imported_dataset_reloads(tmp_path):
    write_carat_pt(tmp_path / "t.pt", sizes=(10, 4, 6))
    import_carat_mosei(tmp_path / "t.pt", "m", tmp_path / "m", official_split=True)
    ds = load_dataset(tmp_path / "m")
    assert ds.manifest.provenance["importer"] == "carat-mosei" and ds.manifest.folds == 3
