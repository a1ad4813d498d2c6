"""CARAT's CMU-MOSEI importer against replicas of what CARAT's loaders read
(chengzju/CARAT `dataloaders/cmu_dataloader.py`): the aligned `train_valid_test.pt`
and the unaligned variant (frames from MulT's `mosei_senti_data_noalign.pkl`,
yaohungt/Multimodal-Transformer, labels from the .pt's 'tgt'). Values are checked (the
right modality in the right column, pooled over the non-padding frames, labels and splits
exact), and every broken structure or dtype is one line."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from refusals import assert_one_line_refusal, imported_or_one_line_refusal

from pipeline.data.importers import import_carat_mosei
from pipeline.errors import DataError

SPLITS = ("train", "valid", "test")
DIMS = {"audio": 74, "visual": 35, "text": 300}  # COVAREP, FACET, GloVe (cmu_dataloader.py's header)
OFFSET = {"audio": 4.0, "visual": -4.0, "text": 0.0}  # a swap cannot pass a value check


def _frames(rng: np.random.Generator, m: str, t: int, valid: int, left: bool) -> np.ndarray:
    """(t, D) float32 frames, `valid` of them non-zero, the zero padding on the left or the right."""
    x = np.zeros((t, DIMS[m]), np.float32)
    body = (OFFSET[m] + rng.standard_normal((valid, DIMS[m]))).astype(np.float32)
    if left:
        x[t - valid :] = body
    else:
        x[:valid] = body
    return x


def _tgt(rng: np.random.Generator, i: int) -> list[int]:
    k = i % 3  # 0 = MOSEI's "None", 1 or 2 emotions
    return [2, *sorted(rng.choice(np.arange(4, 10), size=k, replace=False).tolist()), 3]


def write_aligned_pt(path: Path, sizes=(12, 4, 5), t: int = 60, seed: int = 0) -> dict:
    """`train_valid_test.pt` as chengzju/CARAT `dataloaders/cmu_dataloader.py`
    AlignedMoseiDataset reads it: torch.save'd {'train', 'valid', 'test', ...}, each a dict
    of per-sample lists 'src-visual' ((60, 35) FACET), 'src-audio' ((60, 74) COVAREP, -inf
    where the loader zeroes it), 'src-text' ((60, 300) GloVe) and 'tgt' token lists
    [<s>=2, emotion ids 4..9 (happy, sad, anger, surprise, disgust, fear), </s>=3] (the
    loader drops the first and last token). The frames are zero-padded on the left (the
    aligned CMU-MOSEI layout; the loader masks nothing). Returns the dict."""
    rng = np.random.default_rng(seed)
    data = {}
    for s, n in zip(SPLITS, sizes):
        part = {"src-visual": [], "src-audio": [], "src-text": [], "tgt": []}
        for i in range(n):
            valid = int(rng.integers(1, t + 1))
            for m in DIMS:
                part[f"src-{m}"].append(_frames(rng, m, t, valid, left=True))
            part["src-audio"][-1][t - 1, 0] = -np.inf
            part["tgt"].append(_tgt(rng, i))
        data[s] = part
    data["dict"] = {"tgt": {"<blank>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}}
    data["settings"] = {}
    torch.save(data, path)
    return data


def write_mult_noalign(path: Path, sizes=(12, 4, 5), t_av: int = 50, t_text: int = 10, seed: int = 1) -> dict:
    """`mosei_senti_data_noalign.pkl` as yaohungt/Multimodal-Transformer `src/dataset.py`
    reads it (and CARAT's UnAlignedMoseiDataset after it): a pickle {'train', 'valid',
    'test'} -> 'vision' (N, 500, 35), 'audio' (N, 500, 74) (-inf possible: the loader
    zeroes it), 'text' (N, 50, 300), 'labels' (N, 1, 1) sentiment, 'id' (N, 3) (video id,
    start, end); numpy arrays cast to float32 by the loader (float64 here), zero-padded
    sequences (some rows on the left, some on the right: the importer must not care).
    `t_av` / `t_text` shrink 500 / 50 for speed. Returns the dict."""
    rng = np.random.default_rng(seed)
    data = {}
    for s, n in zip(SPLITS, sizes):
        part = {}
        for m, key, t in (("visual", "vision", t_av), ("audio", "audio", t_av), ("text", "text", t_text)):
            part[key] = np.stack([_frames(rng, m, t, int(rng.integers(1, t + 1)), left=i % 2 == 0)
                                  for i in range(n)]).astype(np.float64)
        part["audio"][0, -1, 3] = -np.inf
        part["labels"] = rng.uniform(-3, 3, (n, 1, 1)).astype(np.float32)
        part["id"] = np.array([[f"vid{i}", "0.0", "1.5"] for i in range(n)], dtype=object)
        data[s] = part
    with path.open("wb") as fh:
        pickle.dump(data, fh)
    return data


def pooled(frames) -> np.ndarray:
    """(N, D): each sample's mean over its not all-zero frames, -inf counted as 0."""
    out = []
    for x in frames:
        x = np.where(np.isinf(x), 0.0, np.asarray(x, np.float64))
        out.append(x[np.abs(x).sum(1) > 0].mean(0))
    return np.stack(out).astype(np.float32)


def multi_hot(tgts) -> np.ndarray:
    return np.stack([np.isin(np.arange(4, 10), t[1:-1]).astype(np.float32) for t in tgts])


def test_aligned_values_labels_and_splits(tmp_path):
    data = write_aligned_pt(tmp_path / "train_valid_test.pt")
    ds = import_carat_mosei(tmp_path / "train_valid_test.pt", "mosei", tmp_path / "mosei", official_split=True)
    assert ds.manifest.dims == [74, 35, 300]
    for m in DIMS:
        want = pooled([x for s in SPLITS for x in data[s][f"src-{m}"]])
        np.testing.assert_allclose(ds.features[m], want, rtol=1e-5, atol=1e-5, err_msg=m)
    np.testing.assert_array_equal(ds.y, multi_hot([t for s in SPLITS for t in data[s]["tgt"]]))
    assert ds.folds.tolist() == [0] * 12 + [1] * 4 + [2] * 5
    assert ds.manifest.provenance["modality_sources"] == {"audio": "src-audio", "visual": "src-visual",
                                                           "text": "src-text"}


def test_unaligned_frames_from_mult_labels_from_pt(tmp_path):
    """CARAT's UnAlignedMoseiDataset = MulT's frames + the .pt's tgt."""
    pt = write_aligned_pt(tmp_path / "train_valid_test.pt")
    mult = write_mult_noalign(tmp_path / "mosei_senti_data_noalign.pkl")
    ds = import_carat_mosei(tmp_path / "train_valid_test.pt", "un", tmp_path / "un", official_split=True,
                            unaligned=tmp_path / "mosei_senti_data_noalign.pkl")
    assert ds.manifest.dims == [74, 35, 300]
    for m, key in (("audio", "audio"), ("visual", "vision"), ("text", "text")):
        want = pooled(np.concatenate([mult[s][key] for s in SPLITS]))
        np.testing.assert_allclose(ds.features[m], want, rtol=1e-5, atol=1e-5, err_msg=m)
    np.testing.assert_array_equal(ds.y, multi_hot([t for s in SPLITS for t in pt[s]["tgt"]]))
    assert ds.folds.tolist() == [0] * 12 + [1] * 4 + [2] * 5
    prov = ds.manifest.provenance
    assert prov["variant"].startswith("unaligned") and prov["modality_sources"]["visual"].endswith(": vision")
    seq = import_carat_mosei(tmp_path / "train_valid_test.pt", "us", tmp_path / "us", folds=2, keep_sequences=True,
                             unaligned=tmp_path / "mosei_senti_data_noalign.pkl")
    assert seq.sequences["audio"].values.shape[1:] == (50, 74)


def test_unaligned_row_mismatch_is_one_line(tmp_path):
    write_aligned_pt(tmp_path / "t.pt")
    write_mult_noalign(tmp_path / "m.pkl", sizes=(12, 4, 6))
    with pytest.raises(DataError, match=r"split 'test' has rows .* but the \.pt has 5 tgt lists") as err:
        import_carat_mosei(tmp_path / "t.pt", "x", tmp_path / "x", unaligned=tmp_path / "m.pkl")
    assert "\n" not in str(err.value) and str(tmp_path / "m.pkl") in str(err.value)
    assert not (tmp_path / "x").exists()


def _mutate(data: dict, case: str) -> dict:
    tr = data["train"]
    if case == "tgt_string":
        tr["tgt"][1] = "happy"
    elif case == "tgt_int":
        tr["tgt"][2] = 5
    elif case == "tgt_strings":
        tr["tgt"][0] = ["<s>", "happy", "</s>"]
    elif case == "empty_train":
        data["train"] = {k: [] for k in tr}
    elif case == "integer_features":
        tr["src-visual"][0] = 7
    elif case == "int_features_all":
        tr["src-text"] = [7] * len(tr["tgt"])
    elif case == "string_features":
        tr["src-audio"][3] = np.full((60, 74), "x")
    elif case == "ragged":
        tr["src-text"][4] = tr["src-text"][4][:30]
    elif case == "split_list":
        data["valid"] = [1, 2]
    elif case == "key_int":
        tr["src-audio"] = 12
    elif case == "unequal":
        tr["tgt"] = tr["tgt"][:-1]
    elif case == "missing_key":
        del data["test"]["src-text"]
    return data


CARAT_CASES = {
    "tgt_string": "not a list of token ids", "tgt_int": "not a list of token ids",
    "tgt_strings": "not a list of token ids", "empty_train": "the train split is empty",
    "integer_features": "holds entries of shape ()", "int_features_all": "rule: (T, D) frames or a (D,) vector per sample",
    "string_features": "not numbers", "ragged": "different shapes", "split_list": "'valid' is a list",
    "key_int": "'train/src-audio' is a int, not one entry per sample", "unequal": "unequal lengths",
    "missing_key": "split 'test' lacks key(s) ['src-text']",
}


@pytest.mark.parametrize("case", sorted(CARAT_CASES))
def test_broken_pt_structure_is_one_line(tmp_path, case):
    """A broken source (CARAT): one DataError line naming the file and the rule, nothing written."""
    data = _mutate(write_aligned_pt(tmp_path / "good.pt"), case)
    src = tmp_path / f"{case}.pt"
    torch.save(data, src)
    assert_one_line_refusal(lambda: import_carat_mosei(src, "x", tmp_path / "out"), src, tmp_path / "out", CARAT_CASES[case])


BAD_VALUES = st.sampled_from([
    None, 3, 2.5, "text", [], {}, ["a", "b"], [[1.0], [1.0, 2.0]], np.array(["x", "y"]), np.zeros((0,)),
    np.zeros((2, 2, 2)), np.array([object(), 1], dtype=object), torch.zeros(()), (2, 4, 3),
])
KEYS = ("src-audio", "src-visual", "src-text", "tgt")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(split=st.sampled_from(SPLITS), key=st.sampled_from(KEYS), whole=st.booleans(), bad=BAD_VALUES,
       unaligned=st.booleans())
def test_fuzzed_structure_fails_cleanly(tmp_path, split, key, whole, bad, unaligned):
    """Structure / dtype fuzzer over the .pt (and MulT's pickle): a split entry, or one
    sample of it, replaced by a wrongly typed or shaped value gives one DataError line (or
    a dataset where the value happens to be usable), never another exception; nothing is
    written on error."""
    if not (tmp_path / "good.pt").exists():
        write_aligned_pt(tmp_path / "good.pt", sizes=(6, 3, 3), t=8)
        write_mult_noalign(tmp_path / "good.pkl", sizes=(6, 3, 3), t_av=8, t_text=4)
    data = torch.load(tmp_path / "good.pt", weights_only=False)
    with (tmp_path / "good.pkl").open("rb") as fh:
        mult = pickle.load(fh)
    if unaligned and key != "tgt":
        target, name = mult[split], {"src-audio": "audio", "src-visual": "vision", "src-text": "text"}[key]
    else:
        target, name = data[split], key
    if whole:
        target[name] = bad
    else:
        target[name] = list(target[name])
        target[name][1] = bad
    torch.save(data, tmp_path / "fuzz.pt")
    with (tmp_path / "fuzz.pkl").open("wb") as fh:
        pickle.dump(mult, fh)
    out = tmp_path / "out"
    imported_or_one_line_refusal(
        lambda: import_carat_mosei(tmp_path / "fuzz.pt", "x", out, folds=2,
                                   unaligned=tmp_path / "fuzz.pkl" if unaligned else None),
        "fuzz.p", out)


def test_cli_unaligned_prints_one_line_for_a_broken_file(tmp_path, capsys):
    """The CLI path (`--unaligned`): one `error:` line naming the file, exit 1, nothing written."""
    from pipeline.cli import main

    write_aligned_pt(tmp_path / "t.pt")
    write_mult_noalign(tmp_path / "m.pkl", sizes=(11, 4, 5))
    with pytest.raises(SystemExit) as code:
        main(["data", "import", "carat-mosei", str(tmp_path / "t.pt"), "--unaligned", str(tmp_path / "m.pkl"),
              "--name", "b", "--out", str(tmp_path / "b")])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code.value.code == 1 and len(lines) == 1 and lines[0].startswith("error:") and "m.pkl" in lines[0]
    assert not (tmp_path / "b").exists()
