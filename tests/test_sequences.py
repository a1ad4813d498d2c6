"""Frame sequences kept beside the pooled features (`sequences/`): importers with
--keep-sequences round-trip the source frames, bad sequences are refused with one clear
error and nothing written, and CARAT trains on frames (missing modalities masked) inside
the full protocol."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from test_importers import (  # fixture writers in the source formats
    run_tiny,
    write_carat_pt,
    write_mmsa,
)
from typer.testing import CliRunner

from pipeline.data.bank import FeatureBank
from pipeline.data.dataset import build_table, load_dataset, write_dataset
from pipeline.data.importers import import_carat_mosei, import_mmsa
from pipeline.data.schema import Manifest, ModalitySpec
from pipeline.data.sequences import Sequences
from pipeline.errors import DataError, RamerError
from pipeline.models.base import ModelSpec, task_loss
from pipeline.models.inference import predict
from pipeline.models.registry import create_model
from pipeline.models.scores import score_micro_f1
from pipeline.training.trainer import ConditionBatches, TrainConfig, fit

SMALL = {"d_model": 16, "tokens": 2, "layers": 1, "heads": 2, "ff": 32, "latent": 8, "queue": 64, "anchors": 32}
CARAT_DIMS = (7, 5, 9)


def leftovers(folder: Path) -> list[str]:
    """Hidden staging / temporary folders an import must never leave behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def write_carat_ragged(path: Path, t: int = 10, sizes=(40, 8, 12)) -> dict:
    """CARAT's .pt fixture with left padding of a different length per sample (>= 1 frame)."""
    write_carat_pt(path, sizes=sizes, dims=CARAT_DIMS, t=t)
    data = torch.load(path, weights_only=False)
    rng = np.random.default_rng(1)
    for split in ("train", "valid", "test"):
        for key in ("src-audio", "src-visual", "src-text"):
            for arr in data[split][key]:
                arr[:] = rng.standard_normal(arr.shape).astype(np.float32)
                arr[: int(rng.integers(0, t))] = 0.0  # left padding, 1..t valid frames
    torch.save(data, path)
    return data


# ---------------------------------------------------------------- importers


def test_mmsa_keep_sequences_round_trip(tmp_path):
    write_mmsa(tmp_path / "mosi.pkl")
    ds = import_mmsa(tmp_path / "mosi.pkl", "mosi", tmp_path / "mosi", folds=2, keep_sequences=True)
    assert ds.manifest.sequences == {"audio": 6, "visual": 5, "text": 8}
    assert leftovers(tmp_path) == []
    with open(tmp_path / "mosi.pkl", "rb") as fh:
        raw = pickle.load(fh)["train"]
    audio, visual = ds.sequences["audio"], ds.sequences["visual"]
    assert isinstance(audio.values, np.memmap) and audio.values.shape == (48, 6, 5)
    assert audio.lengths[:30].tolist() == raw["audio_lengths"]
    k = raw["vision_lengths"][3]
    np.testing.assert_array_equal(visual.values[3, :k], raw["vision"][3, :k])
    assert not visual.values[3, k:].any()  # zero padding after the valid frames
    first = raw["audio"][0, : raw["audio_lengths"][0]]
    np.testing.assert_array_equal(audio.values[0, : len(first)], np.where(np.isinf(first), 0, first))  # -inf -> 0
    for m, s in ds.sequences.items():  # the pooled vectors are the means of the kept frames
        pooled = s.values.sum(1) / np.maximum(s.lengths, 1)[:, None]
        np.testing.assert_allclose(ds.features[m], pooled, rtol=1e-5, atol=1e-6)
    again = load_dataset(tmp_path / "mosi")
    np.testing.assert_array_equal(again.sequences["text"].values, ds.sequences["text"].values)
    plain = import_mmsa(tmp_path / "mosi.pkl", "mosi", tmp_path / "plain", folds=2)
    assert plain.sequences is None and plain.manifest.sequences is None
    assert not (tmp_path / "plain/sequences").exists()
    assert "sequences" not in json.loads((tmp_path / "plain/manifest.json").read_text())


def test_carat_keep_sequences_packs_left_padding(tmp_path):
    data = write_carat_ragged(tmp_path / "c.pt")
    ds = import_carat_mosei(tmp_path / "c.pt", "c", tmp_path / "c", folds=2, keep_sequences=True)
    assert ds.manifest.sequences == {"audio": 10, "visual": 10, "text": 10}
    src = data["valid"]["src-text"][2]  # row 40 + 2 of the dataset
    valid = src[np.abs(src).sum(1) > 0]
    s = ds.sequences["text"]
    assert s.lengths[42] == len(valid)
    np.testing.assert_array_equal(s.values[42, : len(valid)], valid)  # moved to the front, in order
    assert not s.values[42, len(valid) :].any()
    np.testing.assert_allclose(ds.features["text"][42], valid.mean(0), rtol=1e-5)
    assert len(set(s.lengths.tolist())) > 3 and leftovers(tmp_path) == []


def test_cli_keep_sequences_and_info(tmp_path):
    from pipeline.cli.data import app

    write_carat_ragged(tmp_path / "c.pt")
    runner = CliRunner()
    res = runner.invoke(app, ["import", "carat-mosei", str(tmp_path / "c.pt"), "--name", "c", "--out",
                              str(tmp_path / "c"), "--folds", "2", "--keep-sequences"])
    assert res.exit_code == 0, res.output
    assert "frames of audio, visual, text kept" in res.output
    res = runner.invoke(app, ["info", str(tmp_path / "c")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for word in ("frame sequences", "60 x 10 x 7", "60 x 10 x 9", "sequences/audio.npy"):
        assert word in res.output, word
    runner.invoke(app, ["import", "carat-mosei", str(tmp_path / "c.pt"), "--name", "p", "--out", str(tmp_path / "p")])
    res = runner.invoke(app, ["info", str(tmp_path / "p")], env={"COLUMNS": "200"})
    assert "frame sequences: none" in res.output


# ---------------------------------------------------------------- bad sequences


def tiny_table(n=12, dims=(3, 2)):
    rng = np.random.default_rng(0)
    man = Manifest(name="t", task="single_label", classes=["a", "b"],
                   modalities=[ModalitySpec(name=m, dim=d) for m, d in zip(("audio", "text"), dims)], folds=2)
    feats = {m: rng.standard_normal((n, d)).astype(np.float32) for m, d in zip(("audio", "text"), dims)}
    present = {"audio": np.arange(n) != 5, "text": np.ones(n, bool)}
    table = build_table(man, np.array([f"s{i}" for i in range(n)]), np.arange(n) % 2, np.ones(n, bool),
                        (np.arange(n) % 2).astype(np.int8), feats, present)
    lengths = np.where(present["audio"], 3, 0).astype(np.int32)
    seq = rng.standard_normal((n, 4, dims[0])).astype(np.float32)
    seq[:, 3:] = 0.0
    seq[5] = 0.0
    return man, table, {"audio": Sequences(seq, lengths)}


def _break(kind: str, seqs: dict[str, Sequences]) -> dict[str, Sequences]:
    s = seqs["audio"]
    v, ln = s.values.copy(), s.lengths.copy()
    if kind == "rows":
        v = v[:-1]
    elif kind == "dim":
        v = np.zeros((12, 4, 5), np.float32)
    elif kind == "dtype":
        v = v.astype(np.float64)
    elif kind == "too-long":
        ln[2] = 9
    elif kind == "absent-with-frames":
        ln[5] = 2
    elif kind == "nan":
        v[7, 1, 0] = np.nan
    elif kind == "unknown":
        return {**seqs, "video": s}
    return {"audio": Sequences(v, ln)}


@pytest.mark.parametrize("kind, match", [
    ("rows", r"audio\.npy: shape \(11, 4, 3\) != \(12, 4, 3\)"),
    ("dim", r"audio\.npy: shape \(12, 4, 5\) != \(12, 4, 3\).*dim of 'audio'"),
    ("dtype", r"audio\.npy: must be a C-order float32"),
    ("too-long", r"audio\.lengths\.npy: length 9 outside 0\.\.4 at row 2 's2'"),
    ("absent-with-frames", r"audio\.lengths\.npy: modality 'audio' is absent but has frames at row 5 's5'"),
    ("nan", r"audio\.npy: NaN/inf frame values at row 7 's7'"),
    ("unknown", r"manifest\.json: sequences: 'video' is not one of the modalities"),
])
def test_bad_sequences_rejected_nothing_written(tmp_path, kind, match):
    man, table, seqs = tiny_table()
    with pytest.raises(DataError, match=match):
        write_dataset(tmp_path / "out", man, table, sequences=_break(kind, seqs))
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    ds = write_dataset(tmp_path / "out", man, table, sequences=seqs)  # the good version goes through
    assert ds.manifest.sequences == {"audio": 4} and ds.sequences["audio"].lengths[5] == 0


def test_broken_sequences_on_disk_fail_load_and_validate(tmp_path):
    from pipeline.cli.data import app

    man, table, seqs = tiny_table()
    write_dataset(tmp_path / "d", man, table, sequences=seqs)
    np.save(tmp_path / "d/sequences/audio.lengths.npy", np.full(12, 7, np.int32))
    with pytest.raises(DataError, match=r"sequences/audio\.lengths\.npy: length 7 outside 0\.\.4"):
        load_dataset(tmp_path / "d")
    (tmp_path / "d/sequences/audio.npy").write_bytes(b"not numpy")
    res = CliRunner().invoke(app, ["validate", str(tmp_path / "d")])
    assert res.exit_code == 1 and "audio.npy: not a readable .npy file" in str(res.exception or res.output)
    (tmp_path / "d/sequences/audio.npy").unlink()
    with pytest.raises(DataError, match=r"audio\.npy: not found"):
        load_dataset(tmp_path / "d")


def test_failed_import_with_sequences_leaves_nothing(tmp_path):
    data = write_carat_ragged(tmp_path / "c.pt")
    data["test"]["tgt"][3] = [2, 11, 3]
    torch.save(data, tmp_path / "c.pt")
    with pytest.raises(DataError, match=r"test\[3\]: 11"):
        import_carat_mosei(tmp_path / "c.pt", "c", tmp_path / "c", keep_sequences=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


# ---------------------------------------------------------------- CARAT on frames


@pytest.fixture(scope="module")
def carat_ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("seq")
    write_carat_ragged(root / "c.pt", sizes=(60, 12, 16))
    return import_carat_mosei(root / "c.pt", "c", root / "c", folds=2, keep_sequences=True)


def test_bank_masks_frames_of_unavailable_modalities(carat_ds):
    bank = FeatureBank(carat_ds, np.flatnonzero(carat_ds.labeled))
    rows = np.array([9, 3, 30, 3])
    b = bank.batch(rows, np.array([True, False, True]), with_full=True, with_seq=True)
    assert b.seq.lengths[:, 1].eq(0).all() and not b.seq.x[1].any()
    want = carat_ds.sequences["text"]
    t = b.seq.x[2].shape[1]
    assert t == want.lengths[rows].max()  # trimmed to the batch's longest
    np.testing.assert_array_equal(b.seq.x[2].numpy(), want.values[rows, :t])
    assert b.seq_full.lengths[:, 1].tolist() == carat_ds.sequences["visual"].lengths[rows].tolist()
    assert bank.batch(rows, np.ones(3, bool), with_full=False).seq is None  # only when asked


def test_carat_trains_on_frames_under_missing_modalities(carat_ds):
    ds = carat_ds
    bank = FeatureBank(ds, np.flatnonzero(ds.labeled))
    spec = ModelSpec(tuple(ds.modalities), tuple(ds.manifest.dims), 6, "multi_label")
    torch.manual_seed(0)
    m = create_model("carat", spec, **SMALL, max_frames=4)  # 10 frames -> windows of 3
    m.train()
    b = bank.batch(np.arange(16), np.array([[True, False, True], [False, True, False]] * 8), with_full=True,
                   with_seq=True)
    out = m(b)
    loss = task_loss("multi_label", out.logits, b.y) + out.aux_loss
    loss.backward()
    assert torch.isfinite(loss) and bool(m.trained_on_frames)
    grads = {n: p.grad for n, p in m.named_parameters() if p.grad is not None}
    assert any(n.endswith("frame_proj.1.weight") for n in grads)
    assert all(torch.isfinite(g).all() for g in grads.values())
    conds = np.array([[True, False, False], [False, True, True], [True, True, True]])
    fit(m, ConditionBatches(bank, np.arange(60), np.arange(60, 72), conds), score_micro_f1,
        TrainConfig(epochs=2, batch_size=16, patience=5, seed=0))
    test = np.arange(72, 88)
    logits = predict(m, bank, test, np.array([True, False, True]))
    assert np.isfinite(logits).all() and logits.shape == (16, 6)
    # the unavailable modality's frames do not reach the prediction
    m.eval()
    b = bank.batch(test, np.array([True, False, True]), with_full=False, with_seq=True)
    b.seq.x[1] = torch.randn_like(b.seq.x[1])
    with torch.no_grad():
        np.testing.assert_allclose(m(b).logits.numpy(), logits, rtol=1e-4, atol=1e-5)
    # a perturbed copy of the bank (span / noise transforms) has no frames: refused, not ignored
    noisy = FeatureBank.__new__(FeatureBank)
    noisy.__dict__.update(bank.__dict__)
    noisy.x = [x + 1 for x in bank.x]
    assert noisy.seq is None and bank.seq is not None
    with pytest.raises(RamerError, match="trained on frame sequences"):
        predict(m, noisy, test, np.ones(3, bool))


def test_run_experiment_on_kept_sequences(carat_ds, tmp_path):
    run_tiny(carat_ds.root, tmp_path, systems=("ramer", "carat"))
    state = torch.load(next((tmp_path / "runs/imp/f0_r0").glob("carat*.pt")), weights_only=True)
    assert bool(state["trained_on_frames"])


def test_carat_checkpoint_from_before_frames_loads():
    spec = ModelSpec(("audio", "visual", "text"), CARAT_DIMS, 6, "multi_label")
    old = {k: v for k, v in create_model("carat", spec, **SMALL).state_dict().items() if "frame" not in k}
    m = create_model("carat", spec, **SMALL)
    m.load_state_dict(old)  # strict: only the frame path may be missing
    assert not bool(m.trained_on_frames)
    with pytest.raises(RuntimeError, match="Missing key"):
        m.load_state_dict({k: v for k, v in old.items() if k != "clf"})


def test_span_strategy_keeps_carat_on_pooled_vectors(carat_ds):
    """Spans act on the pooled vectors: under a strategy CARAT trains and is tested on
    them (never on clean frames beside span-corrupted vectors)."""
    from pipeline.evaluation.stage4 import evaluate_spans
    from pipeline.training.strategies import SpanBatches, fit_strategy

    bank = FeatureBank(carat_ds, np.flatnonzero(carat_ds.labeled))
    spec = ModelSpec(tuple(carat_ds.modalities), tuple(carat_ds.manifest.dims), 6, "multi_label")
    torch.manual_seed(0)
    m = create_model("carat", spec, **SMALL)
    ranges = [(0.4, 0.6)] * 3
    fit_strategy(m, SpanBatches(bank, np.arange(60), np.arange(60, 72), "spl-trn", ranges, seed=0, val_seed=1),
                 score_micro_f1, TrainConfig(epochs=1, batch_size=16, seed=0))
    assert not bool(m.trained_on_frames)
    rows = evaluate_spans(m, bank, np.arange(72, 88), carat_ds.y[72:88], ranges, 3, "multi_label")
    assert rows and all(np.isfinite(r["value"]) for r in rows)


def test_noise_evaluation_reaches_the_frames(carat_ds):
    """A CARAT trained on frames is scored under noise: the frames get seeded noise too."""
    from pipeline.data.noise import NoiseScheduler
    from pipeline.evaluation.robustness import frame_stats, noise_rows, noisy_bank, train_stats

    ds = carat_ds
    bank = FeatureBank(ds, np.flatnonzero(ds.labeled))
    spec = ModelSpec(tuple(ds.modalities), tuple(ds.manifest.dims), 6, "multi_label")
    torch.manual_seed(0)
    m = create_model("carat", spec, **SMALL)
    fit(m, ConditionBatches(bank, np.arange(60), np.arange(60, 72), np.ones((1, 3), bool)), score_micro_f1,
        TrainConfig(epochs=2, batch_size=16, patience=5, seed=0))
    assert bool(m.trained_on_frames)
    train, test = np.arange(60), np.arange(72, 88)
    stats = train_stats(bank, train)
    fstats = frame_stats(bank, train, stats)
    assert fstats is not None and all(s > 0 for s in fstats.std)

    def run():
        return noise_rows(m, bank, test, ds.y[test], "multi_label", [("gaussian", [100]), ("impulse", [60])],
                          lambda name: 7, stats, frames=fstats)

    rows = run()
    assert rows == run()  # seeded: identical on a rerun
    assert {(r["noise"], r["intensity"]) for r in rows} == {("none", 0), ("gaussian", 100), ("impulse", 60)}
    # the scores move under noise (a metric may not: a tiny model can keep its decisions)
    every = np.ones(3, bool)
    noisy = noisy_bank(bank, test, NoiseScheduler("gaussian", "linear"), 100, 7, stats, fstats)
    assert not np.allclose(predict(m, noisy, test, every), predict(m, bank, test, every))
    with pytest.raises(RamerError, match="trained on frame sequences"):  # without frame noise: refused
        noise_rows(m, bank, test, ds.y[test], "multi_label", [("gaussian", [50])], lambda name: 7, stats)
