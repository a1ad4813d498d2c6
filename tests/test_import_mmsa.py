"""MMSA / MMSA-FET importer against replicas of what MMSA-FET's `run_dataset` writes
(thuiar/MMSA-FET): padding at the end and at the start, aligned, `pt` tensors, no
classification_labels. Values are checked (pooled over the valid frames only, the right
modality in the right column, labels and splits exact), and every broken structure or
dtype is one line, also under a structure fuzzer."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from refusals import assert_one_line_refusal, imported_or_one_line_refusal

from pipeline.data.importers import import_mmsa
from pipeline.errors import DataError

SPLITS = ("train", "valid", "test")
DIMS = {"audio": 33, "vision": 25, "text": 12}


def _pad(seqs: list[np.ndarray], location: str) -> tuple[np.ndarray, int]:
    """MMSA-FET `paddingSequence` + `padding` (value 'zero'): T = int(mean + 3 std) of the
    lengths; a longer sequence keeps its first T frames, a shorter one gets zeros before
    (location 'start') or after ('end') it; an empty one stays all zero."""
    lengths = [len(s) for s in seqs]
    t = int(np.mean(lengths) + 3 * np.std(lengths))
    out = np.zeros((len(seqs), t, seqs[0].shape[-1]))  # float64, as np.zeros there
    for i, s in enumerate(seqs):
        if len(s) == 0:
            continue
        s = s[:t]
        out[i] = np.concatenate([np.zeros((t - len(s), s.shape[1])), s]) if location == "start" else \
            np.concatenate([s, np.zeros((t - len(s), s.shape[1]))])
    return out, t


def write_fet(path: Path, sizes=(24, 6, 8), location: str = "end", aligned: bool = False, return_type: str = "np",
              seed: int = 0) -> dict:
    """A feature pickle as thuiar/MMSA-FET `src/MSA_FET/dataset.py` `run_dataset` writes it:
    per sample 'id' = video_id + '$_$' + clip_id, 'raw_text', 'annotations', the float
    'regression_labels' (and _A/_V/_T, dropped when NaN), 'vision' / 'audio' frame arrays
    with 'vision_lengths' / 'audio_lengths' = their frame counts (not for aligned
    features, whose audio / vision are word-aligned to the text's frames), 'text'
    (tokens, 'text_bert' when the extractor gives ids); no 'classification_labels'
    ("no longer supported by MMSA"). Every sequence entry is padded by `paddingSequence`
    (see `_pad`, `padding_location` = `location`), lengths above T cut to T; the samples
    are split by their 'mode' into {'train', 'valid', 'test'} (np.array per key) and
    'config' is stored beside them; return_type 'pt' turns audio / vision / text /
    text_bert into torch tensors. Audio frames are drawn around +3, vision around -3.
    Returns {'data': the pickle's dict, 'raw': per split the unpadded frames per modality}."""
    rng = np.random.default_rng(seed)
    mode = np.repeat(SPLITS, sizes)
    n = len(mode)
    raw = {"audio": [], "vision": [], "text": []}
    for i in range(n):
        words = int(rng.integers(3, 9))
        raw["text"].append(rng.standard_normal((words, DIMS["text"])))
        frames = {"audio": words if aligned else int(rng.integers(4, 30)),
                  "vision": words if aligned else int(rng.integers(0 if i == 5 else 3, 20))}
        if i == 5 and not aligned:
            frames["vision"] = 0  # no face found: an empty sequence, length 0
        raw["audio"].append(3 + rng.standard_normal((frames["audio"], DIMS["audio"])))
        raw["vision"].append(-3 + rng.standard_normal((frames["vision"], DIMS["vision"])))
    labels = np.round(rng.uniform(-3, 3, n), 1)
    labels[:6] = [0.0, -0.2, 0.4, 0.0, -3.0, 3.0]  # neutral exactly 0, as MOSI's labels can be
    flat = {"id": [f"vid{i // 3}$_${i % 3}" for i in range(n)], "raw_text": [f"words {i}" for i in range(n)],
            "annotations": ["Positive"] * n, "regression_labels": labels.tolist()}
    for key in ("audio", "vision", "text"):
        flat[key], t = _pad(raw[key], location)
        if key != "text" and not aligned:
            flat[f"{key}_lengths"] = [min(len(s), t) for s in raw[key]]
    data = {}
    for s in SPLITS:
        idx = np.flatnonzero(mode == s)
        data[s] = {k: (v[idx] if isinstance(v, np.ndarray) else np.array([v[i] for i in idx])) for k, v in flat.items()}
        if return_type == "pt":
            for k in ("audio", "vision", "text"):
                data[s][k] = torch.from_numpy(data[s][k])
    data["config"] = {"audio": {"tool": "librosa"}, "video": {"tool": "openface"}, "text": {"model": "bert"}}
    with path.open("wb") as fh:
        pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
    by_split = {s: {k: [raw[k][i] for i in np.flatnonzero(mode == s)] for k in raw} for s in SPLITS}
    return {"data": data, "raw": by_split}


def faithful(raw: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) mean over each sample's own frames (cut to the file's T as MMSA-FET cuts them)
    in split order, and (N,) "has a frame"."""
    t = None
    seqs = [x for s in SPLITS for x in raw[s][key]]
    lengths = [len(x) for x in seqs]
    t = int(np.mean(lengths) + 3 * np.std(lengths))
    dim = seqs[0].shape[1]
    means = np.stack([x[:t].mean(0) if len(x) else np.zeros(dim) for x in seqs])
    return means.astype(np.float32), np.array([len(x) > 0 for x in seqs])


@pytest.mark.parametrize("location", ["end", "start"])
def test_fet_pools_the_valid_frames_wherever_the_padding_sits(tmp_path, location):
    """padding_location='start' keeps the valid frames at the end."""
    made = write_fet(tmp_path / "feature.pkl", location=location)
    ds = import_mmsa(tmp_path / "feature.pkl", "fet", tmp_path / "fet", official_split=True)
    for m, key in (("audio", "audio"), ("visual", "vision"), ("text", "text")):
        want, has = faithful(made["raw"], key)
        np.testing.assert_allclose(ds.features[m], want, rtol=1e-5, atol=1e-5, err_msg=m)
        np.testing.assert_array_equal(ds.present[m], has, err_msg=m)
    assert not ds.present["visual"][5] and ds.present["visual"].sum() == len(ds) - 1
    labels = np.concatenate([made["data"][s]["regression_labels"] for s in SPLITS])
    np.testing.assert_allclose(ds.y, labels, rtol=1e-6)
    assert ds.folds.tolist() == [0] * 24 + [1] * 6 + [2] * 8
    assert list(ds.samples[:2]) == ["vid0$_$0", "vid0$_$1"]
    src = ds.manifest.provenance["modality_sources"]
    assert src["audio"] == f"audio (valid frames: audio_lengths, padding at the {location})"
    assert src["text"] == "text (valid frames: non-zero frames)"


def test_explicit_padding_location_is_used(tmp_path):
    made = write_fet(tmp_path / "feature.pkl", location="start")
    ds = import_mmsa(tmp_path / "feature.pkl", "fet", tmp_path / "fet", folds=2, padding="start")
    np.testing.assert_allclose(ds.features["audio"], faithful(made["raw"], "audio")[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="--padding-location must be one of auto, end, start"):
        import_mmsa(tmp_path / "feature.pkl", "fet", tmp_path / "x", padding="left")


def test_fet_aligned_and_pt_tensors(tmp_path):
    made = write_fet(tmp_path / "aligned.pkl", aligned=True, return_type="pt")
    ds = import_mmsa(tmp_path / "aligned.pkl", "al", tmp_path / "al", folds=2)
    assert ds.manifest.dims == [DIMS["audio"], DIMS["vision"], DIMS["text"]]
    for m, key in (("audio", "audio"), ("visual", "vision")):
        np.testing.assert_allclose(ds.features[m], faithful(made["raw"], key)[0], rtol=1e-5, atol=1e-5)
    assert ds.manifest.provenance["modality_sources"]["visual"] == "vision (valid frames: non-zero frames)"


def test_fet_single_label_from_regression_labels(tmp_path):
    """no classification_labels -> MMSA's rule on regression_labels."""
    made = write_fet(tmp_path / "feature.pkl")
    ds = import_mmsa(tmp_path / "feature.pkl", "cls", tmp_path / "cls", task="single_label", official_split=True)
    labels = np.concatenate([made["data"][s]["regression_labels"] for s in SPLITS])
    want = np.where(labels < 0, 0, np.where(labels > 0, 2, 1))
    assert ds.y[:6].tolist() == [1, 0, 2, 1, 0, 2]
    np.testing.assert_array_equal(ds.y, want)
    assert ds.manifest.classes == ["negative", "neutral", "positive"]
    assert "MMSA's rule" in ds.manifest.provenance["labels"]


def test_classification_labels_are_still_preferred(tmp_path):
    made = write_fet(tmp_path / "feature.pkl")
    data = made["data"]
    for s in SPLITS:
        data[s]["classification_labels"] = np.full(len(data[s]["id"]), 2.0)
    with (tmp_path / "c.pkl").open("wb") as fh:
        pickle.dump(data, fh)
    ds = import_mmsa(tmp_path / "c.pkl", "c", tmp_path / "c", task="single_label", folds=2)
    assert (ds.y == 2).all() and ds.manifest.provenance["labels"] == "classification_labels"


def test_fet_without_a_text_extractor_imports_audio_and_visual(tmp_path):
    """run_dataset drops the key of a modality with no extractor configured."""
    made = write_fet(tmp_path / "feature.pkl")
    for s in SPLITS:
        del made["data"][s]["text"]
    with (tmp_path / "av.pkl").open("wb") as fh:
        pickle.dump(made["data"], fh)
    ds = import_mmsa(tmp_path / "av.pkl", "av", tmp_path / "av", folds=2)
    assert [m.name for m in ds.manifest.modalities] == ["audio", "visual"]
    np.testing.assert_allclose(ds.features["visual"], faithful(made["raw"], "vision")[0], rtol=1e-5, atol=1e-5)
    assert set(ds.manifest.provenance["modality_sources"]) == {"audio", "visual"}
    for s in SPLITS:
        del made["data"][s]["audio"], made["data"][s]["vision"]
    with (tmp_path / "none.pkl").open("wb") as fh:
        pickle.dump(made["data"], fh)
    with pytest.raises(DataError, match="rule: at least one modality's frames"):
        import_mmsa(tmp_path / "none.pkl", "none", tmp_path / "none", folds=2)


def _mutate(data: dict, case: str) -> dict:
    tr = data["train"]
    n = len(tr["id"])
    if case == "split_int":
        data["valid"] = 3
    elif case == "ragged_frames":
        tr["audio"] = [np.zeros((5, DIMS["audio"]))] * (n - 1) + [np.zeros((4, DIMS["audio"]))]
    elif case == "short_labels":
        tr["regression_labels"] = tr["regression_labels"][:-2]
    elif case == "string_labels":
        tr["regression_labels"] = np.array(["pos"] * n)
    elif case == "string_features":
        tr["vision"] = np.full(tr["vision"].shape, "x")
    elif case == "wrong_length_lengths":
        tr["audio_lengths"] = tr["audio_lengths"][:-1]
    elif case == "negative_lengths":
        tr["audio_lengths"] = -np.asarray(tr["audio_lengths"])
    elif case == "fractional_lengths":
        tr["vision_lengths"] = np.asarray(tr["vision_lengths"]) + 0.5
    elif case == "ids_int":
        tr["id"] = 7
    elif case == "rows_mismatch":
        tr["text"] = tr["text"][:-1]
    elif case == "one_d_features":
        tr["audio"] = np.zeros(n)
    elif case == "not_a_dict":
        data = [1, 2]
    return data


MMSA_CASES = {
    "split_int": "split 'valid' is a int, not a dict", "ragged_frames": "different shapes",
    "short_labels": "rule: one label per id", "string_labels": "not numbers", "string_features": "not numbers",
    "wrong_length_lengths": "rule: one frame count per id", "negative_lengths": "whole frame counts >= 0",
    "fractional_lengths": "whole frame counts >= 0", "ids_int": "not a list of sample ids",
    "rows_mismatch": "aligned with 'id'", "one_d_features": "rule: numbers of shape", "not_a_dict": "expected a dict",
}


@pytest.mark.parametrize("case", sorted(MMSA_CASES))
def test_broken_structure_is_one_line(tmp_path, case):
    """A broken source (MMSA): one DataError line naming the file and the rule, nothing written."""
    data = _mutate(write_fet(tmp_path / "f.pkl", sizes=(12, 4, 4))["data"], case)
    src = tmp_path / f"{case}.pkl"
    with src.open("wb") as fh:
        pickle.dump(data, fh)
    assert_one_line_refusal(lambda: import_mmsa(src, "x", tmp_path / "out"), src, tmp_path / "out", MMSA_CASES[case])


BAD_VALUES = st.sampled_from([
    None, 3, 2.5, "text", b"bytes", [], {}, ["a", "b"], [[1.0], [1.0, 2.0]], np.array(["x", "y"]),
    np.zeros((0,)), np.zeros((2, 2, 2, 2)), np.array([object(), 1], dtype=object), np.full(3, np.nan),
])
KEYS = ("id", "audio", "vision", "text", "audio_lengths", "vision_lengths", "regression_labels")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(split=st.sampled_from(SPLITS), key=st.sampled_from(KEYS), bad=BAD_VALUES, task=st.sampled_from(["regression", "single_label"]))
def test_fuzzed_structure_fails_cleanly(tmp_path, split, key, bad, task):
    """Structure / dtype fuzzer: any entry of any split replaced by a wrongly typed or shaped
    value gives one DataError line (or, where the value happens to be usable, a dataset),
    never another exception, and nothing is written on error."""
    src = tmp_path / "fuzz.pkl"
    if not (tmp_path / "good.pkl").exists():
        write_fet(tmp_path / "good.pkl", sizes=(8, 3, 3))
    with (tmp_path / "good.pkl").open("rb") as fh:
        data = pickle.load(fh)
    data[split][key] = bad
    with src.open("wb") as fh:
        pickle.dump(data, fh)
    out = tmp_path / "out"
    imported_or_one_line_refusal(lambda: import_mmsa(src, "x", out, task=task, folds=2), str(src), out)


def test_cli_prints_one_line_for_a_broken_file(tmp_path, capsys):
    """The CLI path of a structure error: one `error:` line naming the file, exit 1, nothing written."""
    from pipeline.cli import main

    data = _mutate(write_fet(tmp_path / "f.pkl", sizes=(12, 4, 4))["data"], "string_labels")
    with (tmp_path / "bad.pkl").open("wb") as fh:
        pickle.dump(data, fh)
    with pytest.raises(SystemExit) as code:
        main(["data", "import", "mmsa", str(tmp_path / "bad.pkl"), "--name", "b", "--out", str(tmp_path / "b")])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code.value.code == 1 and len(lines) == 1 and lines[0].startswith("error:") and "bad.pkl" in lines[0]
    assert "Traceback" not in lines[0] and not (tmp_path / "b").exists()
