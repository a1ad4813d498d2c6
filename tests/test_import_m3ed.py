"""M3ED importer against replicas of what the upstream writers produce: the M3ED authors'
feature pickle (JinmingZhao/MEmoConv) and CARAT's m3ed_data_60.pt (chengzju/CARAT).
Values are checked (the right modality in the right column, pooled over the utterances
that have a vector, labels and splits exact), and every broken structure is one line."""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from refusals import assert_one_line_refusal, imported_or_one_line_refusal
from test_importers import run_tiny

from pipeline.data.importers import import_m3ed
from pipeline.errors import DataError

DIMS = {"speech": 1024, "visual": 342, "text": 768}  # MEmoConv codes/dialogrnn/config.py ftname2dim
NAME = "Asent_avg_wav2vec_zh-Vsent_avg_affectdenseface-Lsent_avg_robert_base_wwm_chinese.pkl"
MOVIES = {"train": ["anjia", "baobei"], "val": ["chunfeng"], "test": ["dongfang"]}


def write_m3ed_pickle(path: Path, dialogues_per_movie: int = 3, seed: int = 0) -> list:
    """The feature pickle as JinmingZhao/MEmoConv `codes/dialogrnn/prepare_fts.py` writes it
    (and `dataloader.py` M3EDDataset unpacks it): a list [dialog2utts, dialog2spks,
    dialog2labels, dialog2textfts, dialog2speechfts, dialog2visualfts, dialog2sents,
    train_vids, val_vids, test_vids]; the dicts are OrderedDicts keyed by dialogue id
    '{movie}_{n}' (the first two '_' parts of the utterance id); a dialogue's features
    are np.array of its utterance vectors (n_utt, D), an utterance without speech / face
    a zeros(D) vector (prepare_fts' "None Speech/Visual" case); labels are utterance
    emotion ids 0..6 ({'Happy':0, 'Neutral':1, 'Sad':2, 'Disgust':3, 'Anger':4, 'Fear':5,
    'Surprise':6}); the split lists hold the dialogue ids of the split's movies. The
    speech features are drawn around +5 and the visual ones around -5, so a swap cannot
    pass a value check. Returns the list."""
    rng = np.random.default_rng(seed)
    utts, spks, labels, text, speech, visual, sents = (collections.OrderedDict() for _ in range(7))
    vids = {p: [] for p in MOVIES}
    for part, movies in MOVIES.items():
        for movie in movies:
            for k in range(1, dialogues_per_movie + 1):
                d = f"{movie}_{k}"
                n_utt = int(rng.integers(2, 7))
                spk = ["A" if i % 2 == 0 else "B" for i in range(n_utt)]
                utts[d] = [f"{s}_{d}_{i + 1}" for i, s in enumerate(spk)]
                spks[d] = spk
                labels[d] = rng.integers(0, 7, n_utt).tolist()
                text[d] = rng.standard_normal((n_utt, DIMS["text"])).astype(np.float32)
                speech[d] = (5 + rng.standard_normal((n_utt, DIMS["speech"]))).astype(np.float32)
                visual[d] = (-5 + rng.standard_normal((n_utt, DIMS["visual"]))).astype(np.float32)
                if k == 2:
                    visual[d][0] = 0.0  # an utterance without a face
                sents[d] = np.array([f"sentence {i}" for i in range(n_utt)])
                vids[part].append(d)
    data = [utts, spks, labels, text, speech, visual, sents, vids["train"], vids["val"], vids["test"]]
    with path.open("wb") as fh:
        pickle.dump(data, fh)
    return data


def write_m3ed_pt(path: Path, data: list, total_len: int = 100, final_len: int = 60) -> None:
    """`m3ed_data_60.pt` as chengzju/CARAT `utils/m3ed_reader.py` writes it from the pickle:
    per split ('train' <- item [7], 'valid' <- [8], 'test' <- [9]) 'src-visual' = item [4]
    (the speech, 1024-d), 'src-audio' = item [5] (the visual, 342-d), 'src-text' = item [3],
    each dialogue zero-padded at the end to `total_len` utterances and cut to `final_len`;
    'len_list' (utterances per dialogue); 'tgt' = [2, first-seen label + 4 ..., 3]; plus
    'dict' and 'settings'."""
    final = {}
    for split, item in (("train", 7), ("valid", 8), ("test", 9)):
        part = {"src-visual": [], "src-audio": [], "src-text": [], "len_list": [], "tgt": []}
        for d in data[item]:
            n_utt = len(data[2][d])
            part["len_list"].append(n_utt)
            tgt = [2]
            for lab in data[2][d]:
                if lab + 4 not in tgt:
                    tgt.append(lab + 4)
            part["tgt"].append([*tgt, 3])
            for key, src_item in (("src-visual", 4), ("src-audio", 5), ("src-text", 3)):
                seq = data[src_item][d]
                padded = np.concatenate([seq, np.zeros((total_len - n_utt, seq.shape[1]), np.float32)])
                part[key].append(padded[:final_len])
        final[split] = part
    final["dict"] = {"tgt": {"<s>": 2, "</s>": 3, "<unk>": 1, "<blank>": 0, "Happy": 4, "Neutral": 5, "Sad": 6,
                             "Disgust": 7, "Anger": 8, "Fear": 9, "Surprise": 10}, "src": {}}
    final["settings"] = {}
    torch.save(final, path)


def expected(data: list) -> dict:
    """What a faithful import gives, row by row in split order: audio = mean of the speech
    (item [4]), visual = mean of the faces (item [5]) over utterances that have one, text =
    mean of item [3], labels = the union of the utterance emotions, split 0 / 1 / 2."""
    ids = [*data[7], *data[8], *data[9]]
    out = {"ids": ids, "split": [0] * len(data[7]) + [1] * len(data[8]) + [2] * len(data[9])}
    out["audio"] = np.stack([data[4][d].mean(0) for d in ids])
    out["visual"] = np.stack([data[5][d][np.abs(data[5][d]).sum(1) > 0].mean(0) for d in ids])
    out["text"] = np.stack([data[3][d].mean(0) for d in ids])
    out["y"] = np.stack([np.isin(np.arange(7), data[2][d]).astype(np.float32) for d in ids])
    return out


def test_pickle_reads_speech_as_audio_and_faces_as_visual(tmp_path):
    data = write_m3ed_pickle(tmp_path / NAME)
    ds = import_m3ed(tmp_path / NAME, "m3ed", tmp_path / "m3ed", official_split=True)
    want = expected(data)
    assert ds.manifest.dims == [1024, 342, 768] and ds.manifest.modalities[0].name == "audio"
    assert list(ds.samples) == want["ids"] and ds.folds.tolist() == want["split"]
    for m in ("audio", "visual", "text"):
        np.testing.assert_allclose(ds.features[m], want[m], rtol=1e-5, atol=1e-6, err_msg=m)
    np.testing.assert_array_equal(ds.y, want["y"])
    src = ds.manifest.provenance["modality_sources"]
    assert src["audio"].startswith("item [4]") and src["visual"] == "item [5]" and src["text"] == "item [3]"
    assert "warnings" not in ds.manifest.provenance
    run_tiny(tmp_path / "m3ed", tmp_path, systems=("carat",), folds=(2,))


def test_pt_swaps_carats_keys_back_and_matches_the_pickle(tmp_path):
    data = write_m3ed_pickle(tmp_path / NAME)
    write_m3ed_pt(tmp_path / "m3ed_data_60.pt", data)
    ds = import_m3ed(tmp_path / "m3ed_data_60.pt", "m3ed60", tmp_path / "m3ed60", official_split=True)
    want = expected(data)
    assert ds.manifest.dims == [1024, 342, 768]
    for m in ("audio", "visual", "text"):
        np.testing.assert_allclose(ds.features[m], want[m], rtol=1e-5, atol=1e-6, err_msg=m)
    np.testing.assert_array_equal(ds.y, want["y"])
    assert ds.folds.tolist() == want["split"]
    assert ds.manifest.provenance["modality_sources"]["audio"].startswith("src-visual")
    seq = import_m3ed(tmp_path / "m3ed_data_60.pt", "m3ed60s", tmp_path / "m3ed60s", folds=2, keep_sequences=True)
    assert seq.sequences is not None and seq.sequences["audio"].values.shape[2] == 1024


def test_a_dim_contradicting_the_named_extractor_warns(tmp_path, caplog):
    data = write_m3ed_pickle(tmp_path / NAME)
    data[4], data[5] = data[5], data[4]  # a file written with the modalities the other way round
    swapped = tmp_path / NAME.replace(".pkl", "_x.pkl")
    with swapped.open("wb") as fh:
        pickle.dump(data, fh)
    with caplog.at_level("WARNING"):
        ds = import_m3ed(swapped, "sw", tmp_path / "sw", folds=2)
    lines = ds.manifest.provenance["warnings"]
    assert len(lines) == 2 and "audio is 342-d but the source names wav2vec (1024-d)" in lines[0]
    assert any("swapped" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("missing", ["zz_99", "17"])
def test_split_id_without_labels_is_one_line(tmp_path, missing):
    """a split id with no labels (digit or not) names the id; no traceback."""
    data = write_m3ed_pickle(tmp_path / NAME)
    data[8].append(missing)
    with (tmp_path / "x.pkl").open("wb") as fh:
        pickle.dump(data, fh)
    with pytest.raises(DataError, match=f"labels:{missing}") as err:
        import_m3ed(tmp_path / "x.pkl", "x", tmp_path / "x")
    assert "\n" not in str(err.value) and str(tmp_path / "x.pkl") in str(err.value)
    assert not (tmp_path / "x").exists()


def test_integer_dialogue_keys_match_text_split_ids(tmp_path):
    data = write_m3ed_pickle(tmp_path / NAME)
    old = [*data[7], *data[8], *data[9]]
    new = {d: i for i, d in enumerate(old)}
    for item in (2, 3, 4, 5):
        data[item] = collections.OrderedDict((new[d], v) for d, v in data[item].items())
    for item in (7, 8, 9):
        data[item] = [str(new[d]) for d in data[item]]
    with (tmp_path / "i.pkl").open("wb") as fh:
        pickle.dump(data, fh)
    ds = import_m3ed(tmp_path / "i.pkl", "i", tmp_path / "i", folds=2)
    assert list(ds.samples) == [str(i) for i in range(len(old))]


def test_utterance_vectors_kept_as_1_x_d_rows_read_the_same(tmp_path):
    """An utterance vector saved as (1, D) makes the dialogue array (n_utt, 1, D)."""
    data = write_m3ed_pickle(tmp_path / NAME)
    want = expected(data)
    for item in (3, 4, 5):
        for d in data[item]:
            data[item][d] = data[item][d][:, None, :]
    with (tmp_path / "k.pkl").open("wb") as fh:
        pickle.dump(data, fh)
    ds = import_m3ed(tmp_path / "k.pkl", "k", tmp_path / "k", official_split=True)
    for m in ("audio", "visual", "text"):
        np.testing.assert_allclose(ds.features[m], want[m], rtol=1e-5, atol=1e-6, err_msg=m)


def _mutate(data: list, case: str) -> list:
    d0 = data[7][0]
    if case == "labels_list":
        data[2] = list(data[2].values())
    elif case == "text_list":
        data[3] = list(data[3].values())
    elif case == "no_splits":
        data = data[:7]
    elif case == "split_none":
        data[7] = None
    elif case == "split_int":
        data[8] = 5
    elif case == "label_string":
        data[2][d0] = "happy"
    elif case == "label_int":
        data[2][d0] = 3
    elif case == "label_strings":
        data[2][d0] = ["happy"] * len(data[2][d0])
    elif case == "label_out_of_range":
        data[2][d0] = [7] * len(data[2][d0])
    elif case == "wrong_dim":
        data[4][d0] = data[4][d0][:, :1000]
    elif case == "wrong_rows":
        data[5][d0] = data[5][d0][:1]
    elif case == "string_features":
        data[3][d0] = np.array([["x"] * 768] * len(data[2][d0]))
    elif case == "ragged_features":
        data[4][d0] = [np.zeros(1024), np.zeros(3)]
    elif case == "frame_level":  # prepare_fts.py with a frame-level extractor (is_seq)
        data[4][d0] = np.zeros((len(data[2][d0]), 5, 1024), np.float32)
    elif case == "not_a_list":
        data = {"a": 1}
    return data


M3ED_CASES = {
    "labels_list": "item [2] (labels) is a list", "text_list": "item [3] (text) is a list",
    "no_splits": "expected the M3ED feature list", "split_none": "item [7] (train dialogue ids) is a NoneType",
    "split_int": "item [8] (val dialogue ids) is a int", "label_string": "rule: a non-empty list of utterance emotion ids",
    "label_int": "rule: a non-empty list of utterance emotion ids",
    "label_strings": "rule: a non-empty list of utterance emotion ids", "label_out_of_range": "outside 0..6",
    "wrong_dim": "rule: one vector per utterance", "wrong_rows": "rule: one vector per utterance",
    "string_features": "not numbers", "ragged_features": "different shapes", "not_a_list": "expected the M3ED",
    "frame_level": "frame-level features are not supported",
}


@pytest.mark.parametrize("case", sorted(M3ED_CASES))
def test_broken_pickle_structure_is_one_line(tmp_path, case):
    """A broken source (M3ED): each mutation of the structure / dtypes is one DataError
    line naming the file and the rule; nothing is written."""
    data = _mutate(write_m3ed_pickle(tmp_path / NAME), case)
    src = tmp_path / f"{case}.pkl"
    with src.open("wb") as fh:
        pickle.dump(data, fh)
    assert_one_line_refusal(lambda: import_m3ed(src, "x", tmp_path / "out"), src, tmp_path / "out", M3ED_CASES[case])


BAD_VALUES = st.sampled_from([
    None, 3, 2.5, "text", b"b", [], {}, ["a", "b"], [[1.0], [1.0, 2.0]], np.array(["x", "y"]), np.zeros((0,)),
    np.zeros((2, 2, 2)), np.array([object(), 1], dtype=object), torch.zeros(()), {"anjia_1": "x"},
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(item=st.sampled_from([2, 3, 4, 5, 7, 8, 9]), whole=st.booleans(), bad=BAD_VALUES)
def test_fuzzed_structure_fails_cleanly(tmp_path, item, whole, bad):
    """Structure / dtype fuzzer: an item of the list, or one dialogue's entry in it (one
    split id for items 7-9), replaced by a wrongly typed or shaped value gives one
    DataError line (or a dataset where the value happens to be usable), never another
    exception; nothing is written on error."""
    if not (tmp_path / "good.pkl").exists():
        write_m3ed_pickle(tmp_path / "good.pkl", dialogues_per_movie=2)
    with (tmp_path / "good.pkl").open("rb") as fh:
        data = pickle.load(fh)
    if whole:
        data[item] = bad
    elif item >= 7:
        data[item][0] = bad
    else:
        data[item][data[7][0]] = bad
    with (tmp_path / "fuzz.pkl").open("wb") as fh:
        pickle.dump(data, fh)
    out = tmp_path / "out"
    imported_or_one_line_refusal(lambda: import_m3ed(tmp_path / "fuzz.pkl", "x", out, folds=2), "fuzz.pkl", out)


def test_cli_prints_one_line_for_a_split_id_without_labels(tmp_path, capsys):
    """The CLI path of a split id without labels: one `error:` line naming the id, exit 1, nothing written."""
    from pipeline.cli import main

    data = write_m3ed_pickle(tmp_path / NAME, dialogues_per_movie=1)
    data[9].append("nosuch_3")
    with (tmp_path / "bad.pkl").open("wb") as fh:
        pickle.dump(data, fh)
    with pytest.raises(SystemExit) as code:
        main(["data", "import", "m3ed", str(tmp_path / "bad.pkl"), "--name", "b", "--out", str(tmp_path / "b"),
              "--folds", "2"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code.value.code == 1 and len(lines) == 1 and lines[0].startswith("error:"), lines
    assert "labels:nosuch_3" in lines[0] and not (tmp_path / "b").exists()
