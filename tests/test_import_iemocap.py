"""IEMOCAP in MMIN's layout: fixtures built to the structure MMIN's own writers produce
(random values, exact keys, dtypes, shapes, padding and label encodings), checked by VALUE:
padded visual / text pooled over their valid frames only, a face-less utterance absent,
labels and folds exact; make_aligned.py's raw {feat, start, end} groups; and every broken
file (corrupt or truncated h5, string labels or features, mutated structure) is one
DataError line naming the file, with nothing written."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.data.importers import import_iemocap_mmin
from pipeline.errors import DataError

DIMS = {"A": 130, "V": 342, "L": 1024}  # ComParE, DenseFace, BERT-large (MMIN's IEMOCAP features)
FILES = {"A": "comparE", "V": "denseface", "L": "bert_large"}
NO_FACE = "Ses02F_impro01_F001"  # an utterance whose visual rows are all padding


def _utterances(n_cv: int, per: int) -> list[str]:
    return [f"Ses0{c + 1}F_impro01_F{i:03d}" for c in range(n_cv) for i in range(per)]


def write_targets(tdir: Path, utts: list[str], labels: dict[str, int], n_cv: int) -> None:
    """target/{cv}/{trn,val,tst}_label.npy and _int2name.npy as AIM3-RUC/MMIN's
    `data/multimodal_dataset.py` reads them: labels one-hot float (N, 4) (it takes their
    argmax), int2name (N, 1) bytes (it reads `int2name[i][0].decode()`); cv folders 1..n_cv
    whose tst lists partition the utterances."""
    per = len(utts) // n_cv
    for c in range(n_cv):
        cv = tdir / str(c + 1)
        cv.mkdir(parents=True)
        tst = utts[c * per : (c + 1) * per]
        rest = [u for u in utts if u not in tst]
        for s, names in (("trn", rest[2:]), ("val", rest[:2]), ("tst", tst)):
            np.save(cv / f"{s}_label.npy", np.eye(4, dtype=np.float32)[[labels[u] for u in names]])
            np.save(cv / f"{s}_int2name.npy", np.array([[u.encode()] for u in names]))


def write_mmin_iemocap(root: Path, n_cv: int = 3, per: int = 4, t_fixed: int = 10, seed: int = 0,
                       dims: dict[str, int] = DIMS) -> dict:
    """MMIN's IEMOCAP feature root (AIM3-RUC/MMIN, `data/multimodal_dataset.py` reads
    A/{A_type}.h5, V/{V_type}.h5, L/{L_type}.h5 with `h5[utt_id][()]`):
    - A/comparE.h5: one (frames, 130) float32 dataset per utterance, variable length;
    - V/denseface.h5 and L/bert_large.h5: written by `preprocess/IEMOCAP/migrate_VL_feat.py`
      as `all_h5f[utt_id] = v_feat` from cv-level (N, T, D) arrays, so every utterance is
      (T, D) at one T, valid frames first and zero padding after; NO_FACE has no valid frame.
    Returns what a correct import gives: per utterance its label and the mean of its valid
    frames per modality (None where absent)."""
    rng = np.random.default_rng(seed)
    utts = _utterances(n_cv, per)
    labels = {u: int(rng.integers(0, 4)) for u in utts}
    expect: dict[str, dict] = {u: {"label": labels[u]} for u in utts}
    for sub in ("A", "V", "L"):
        (root / sub).mkdir(parents=True)
        with h5py.File(root / sub / f"{FILES[sub]}.h5", "w") as h5:
            for u in utts:
                d = dims[sub]
                if sub == "A":  # variable length, no padding
                    frames = rng.standard_normal((int(rng.integers(3, 9)), d)).astype(np.float32)
                    h5[u] = frames
                    expect[u][sub] = frames.mean(0)
                    continue
                valid = 0 if (sub == "V" and u == NO_FACE) else int(rng.integers(1, t_fixed))
                padded = np.zeros((t_fixed, d), np.float32)
                padded[:valid] = rng.standard_normal((valid, d)) + 2.0  # valid frames, then zeros
                h5[u] = padded
                expect[u][sub] = padded[:valid].mean(0) if valid else None
    write_targets(root / "target", utts, labels, n_cv)
    return expect


def write_raw_aligned(root: Path, n_cv: int = 3, per: int = 4, seed: int = 1, skip_text: str | None = None) -> dict:
    """`{feature_root}/aligned/{A,V,L}/raw_*.h5` as AIM3-RUC/MMIN's
    `preprocess/IEMOCAP/make_aligned.py` writes them: one group per utterance holding `feat`
    (frames, D), `start` and `end` (seconds). raw_comparE: every 10 ms frame, start = 0.1 * i;
    raw_denseface: one row per detected face at (frame_id - 1) / 30, or, without a face, one
    zero row (1, 342) with start = end = [-1]; raw_bert: one row per word-piece token, and
    make_all_bert skips 'Ses03M_impro03_M001' (no alignment file): `skip_text` plays it."""
    rng = np.random.default_rng(seed)
    utts = _utterances(n_cv, per)
    labels = {u: int(rng.integers(0, 4)) for u in utts}
    expect: dict[str, dict] = {u: {"label": labels[u]} for u in utts}
    names = {"A": "raw_comparE", "V": "raw_denseface", "L": "raw_bert"}
    for sub in ("A", "V", "L"):
        (root / sub).mkdir(parents=True)
        with h5py.File(root / sub / f"{names[sub]}.h5", "w") as h5:
            for u in utts:
                if sub == "L" and u == skip_text:
                    expect[u][sub] = None
                    continue
                n = int(rng.integers(2, 7))
                feat = rng.standard_normal((n, DIMS[sub])).astype(np.float32) + 1.0
                start = 0.1 * np.arange(n) if sub != "V" else (np.sort(rng.integers(1, 90, n)) - 1) / 30
                if sub == "V" and u == NO_FACE:
                    feat, start = np.zeros((1, DIMS["V"])), np.array([-1.0])
                g = h5.create_group(u)
                g["feat"], g["start"] = feat, start
                g["end"] = start + 0.1 if start[0] != -1 else np.array([-1.0])
                expect[u][sub] = None if not feat.any() else feat.mean(0)
    write_targets(root / "target", utts, labels, n_cv)
    return expect


def _check_values(ds, expect: dict) -> None:
    """Every utterance's label and pooled vectors exactly as a correct import gives them."""
    index = {s: i for i, s in enumerate(ds.samples)}
    assert set(index) == set(expect)
    for u, e in expect.items():
        i = index[u]
        assert ds.y[i] == e["label"], u
        for sub, m in (("A", "audio"), ("V", "visual"), ("L", "text")):
            if e[sub] is None:
                assert not ds.present[m][i], f"{u} {m} must be absent, not a zero vector"
            else:
                assert ds.present[m][i], f"{u} {m}"
                np.testing.assert_allclose(ds.features[m][i], e[sub], rtol=1e-5, atol=1e-6, err_msg=f"{u} {m}")


def test_padded_visual_and_text_are_pooled_over_valid_frames_only(tmp_path):
    expect = write_mmin_iemocap(tmp_path / "src")
    ds = import_iemocap_mmin(tmp_path / "src", "ie", tmp_path / "ie")
    _check_values(ds, expect)
    assert ds.manifest.dims == [130, 342, 1024]
    assert all(s.startswith(f"Ses0{f + 1}") for s, f in zip(ds.samples, ds.folds)), "fold = the cv whose tst has it"
    prov = ds.manifest.provenance
    assert prov["modality_sources"] == {"audio": "A/comparE.h5", "visual": "V/denseface.h5", "text": "L/bert_large.h5"}
    assert prov["frames"]["visual"]["utterances_without_frames"] == 1
    assert prov["frames"]["audio"]["all_zero_frames"] == 0


def test_raw_aligned_groups_are_read_and_a_skipped_utterance_is_refused_or_absent(tmp_path):
    src = tmp_path / "aligned"
    skipped = "Ses03F_impro01_F002"
    expect = write_raw_aligned(src, skip_text=skipped)
    names = {"audio": "raw_comparE", "visual": "raw_denseface", "text": "raw_bert"}
    with pytest.raises(DataError, match=f"raw_bert.h5: 1 utterance.*missing: {skipped}.*--allow-missing"):
        import_iemocap_mmin(src, "ie", tmp_path / "ie", **names)
    assert not (tmp_path / "ie").exists()
    ds = import_iemocap_mmin(src, "ie", tmp_path / "ie", allow_missing=True, **names)
    _check_values(ds, expect)
    assert ds.manifest.provenance["frames"]["text"]["utterances_missing"] == 1


def write_word_aligned(root: Path, n_cv: int = 3, per: int = 4, seed: int = 2, skipped: str = "") -> dict:
    """`{feature_root}/aligned/{A,V,L}/aligned_*.h5` as AIM3-RUC/MMIN's
    `preprocess/IEMOCAP/make_aligned.py` (`make_aligned_data`) writes them: one dataset
    (words, D) per utterance, A and V averaged over the frames overlapping each word
    (`calc_word_aligned`), a zero row where no frame overlaps (a word without a face), L one
    row per word; the utterance without an alignment file is skipped in all three."""
    rng = np.random.default_rng(seed)
    utts = _utterances(n_cv, per)
    labels = {u: int(rng.integers(0, 4)) for u in utts}
    expect: dict[str, dict] = {u: {"label": labels[u]} for u in utts}
    names = {"A": "aligned_comparE", "V": "aligned_denseface", "L": "aligned_bert"}
    for sub in ("A", "V", "L"):
        (root / sub).mkdir(parents=True)
        with h5py.File(root / sub / f"{names[sub]}.h5", "w") as h5:
            for u in utts:
                if u == skipped:
                    continue
                words = rng.standard_normal((int(rng.integers(3, 8)), DIMS[sub])).astype(np.float32) + 1.0
                if sub == "V":
                    words[::2] = 0.0  # words no face frame overlaps
                h5[u] = words
                expect[u][sub] = words[words.any(1)].mean(0)
    write_targets(root / "target", utts, labels, n_cv)
    return {u: e for u, e in expect.items() if u != skipped}


def test_word_aligned_datasets_and_an_utterance_missing_everywhere(tmp_path):
    src, skipped = tmp_path / "aligned", "Ses03F_impro01_F002"
    expect = write_word_aligned(src, skipped=skipped)
    names = {"audio": "aligned_comparE", "visual": "aligned_denseface", "text": "aligned_bert"}
    with pytest.raises(DataError, match=f"aligned_comparE.h5: 1 utterance.*missing: {skipped}"):
        import_iemocap_mmin(src, "ie", tmp_path / "ie", **names)
    ds = import_iemocap_mmin(src, "ie", tmp_path / "ie", allow_missing=True, **names)
    _check_values(ds, expect)  # the skipped utterance is left out, and says so
    assert ds.manifest.provenance["dropped_samples"] == [skipped]


def test_targets_folder_elsewhere(tmp_path):
    """MMIN's config keeps feature_root and target_root apart: --targets points at the latter."""
    expect = write_mmin_iemocap(tmp_path / "src", dims={"A": 4, "V": 3, "L": 5})
    (tmp_path / "src/target").rename(tmp_path / "target_root")
    ds = import_iemocap_mmin(tmp_path / "src", "ie", tmp_path / "ie", targets=tmp_path / "target_root")
    _check_values(ds, expect)


def test_group_without_feat_is_refused_naming_the_variant(tmp_path):
    write_mmin_iemocap(tmp_path / "src", dims={"A": 4, "V": 3, "L": 5})
    with h5py.File(tmp_path / "src/V/denseface.h5", "a") as h5:
        del h5["Ses01F_impro01_F000"]
        h5.create_group("Ses01F_impro01_F000")["frames"] = np.ones((2, 3))
    with pytest.raises(DataError, match=r"denseface.h5: 'Ses01F_impro01_F000' is a group holding frames.*\{feat, start, end\}"):
        import_iemocap_mmin(tmp_path / "src", "ie", tmp_path / "ie")
    assert not (tmp_path / "ie").exists()


# ---------------------------------------------------------------- broken files


def _one_line_nothing_written(src: Path, out: Path, match: str, **kw) -> None:
    with pytest.raises(DataError, match=match) as err:
        import_iemocap_mmin(src, "ie", out, **kw)
    assert "\n" not in str(err.value)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "no temporary directory left"


def test_corrupt_and_truncated_h5(tmp_path):
    write_mmin_iemocap(tmp_path / "src", dims={"A": 4, "V": 3, "L": 5})
    path = tmp_path / "src/L/bert_large.h5"
    real = path.read_bytes()
    path.write_bytes(b"not an hdf5 file at all" * 10)
    _one_line_nothing_written(tmp_path / "src", tmp_path / "ie", r"bert_large.h5: not a readable HDF5 file")
    path.write_bytes(real[: len(real) // 2])
    _one_line_nothing_written(tmp_path / "src", tmp_path / "ie", r"bert_large.h5: not a readable HDF5 file")


def test_string_labels_and_string_features(tmp_path):
    write_mmin_iemocap(tmp_path / "src", dims={"A": 4, "V": 3, "L": 5})
    lab = tmp_path / "src/target/2/val_label.npy"
    good = lab.read_bytes()
    np.save(lab, np.array(["ang", "sad"]))
    _one_line_nothing_written(tmp_path / "src", tmp_path / "ie", r"2/val_label.npy: labels of dtype <U3.*numbers")
    np.save(lab, np.array([0.5, 1.0]))
    _one_line_nothing_written(tmp_path / "src", tmp_path / "ie", r"val_label.npy: class indices that are not whole")
    lab.write_bytes(good)
    with h5py.File(tmp_path / "src/A/comparE.h5", "a") as h5:
        del h5["Ses01F_impro01_F001"]
        h5["Ses01F_impro01_F001"] = np.array([b"a", b"b"])
    _one_line_nothing_written(tmp_path / "src", tmp_path / "ie", r"comparE.h5: dataset 'Ses01F_impro01_F001' holds \|S1")


FUZZ = settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _mutate(root: Path, kind: str, pick: int) -> None:
    """One structure or dtype mutation of a valid source."""
    utt = _utterances(3, 4)[pick % 12]
    sub = "AVL"[pick % 3]
    h5path = root / sub / f"{FILES[sub]}.h5"
    cv = root / "target" / str(1 + pick % 3)
    values = {
        "str_feat": np.array([b"x", b"y"]), "complex_feat": np.ones((2, 3), np.complex64),
        "int_feat": np.ones((2, 3), np.int16), "bool_feat": np.ones((2, 3), bool), "scalar_feat": np.float32(1),
        "cube_feat": np.ones((2, 2, 3), np.float32), "empty_feat": np.zeros((0, 3), np.float32),
        "wide_feat": np.ones((2, 9), np.float32), "nan_feat": np.full((2, 3), np.nan, np.float32),
    }
    if kind in values:
        with h5py.File(h5path, "a") as h5:
            del h5[utt]
            h5[utt] = values[kind]
    elif kind == "vlen_str_feat":
        with h5py.File(h5path, "a") as h5:
            del h5[utt]
            h5.create_dataset(utt, data=["ang", "sad"], dtype=h5py.string_dtype())
    elif kind == "group_feat":
        with h5py.File(h5path, "a") as h5:
            del h5[utt]
            h5.create_group(utt)["start"] = np.zeros(2)
    elif kind == "truncate":
        raw = h5path.read_bytes()
        h5path.write_bytes(raw[: pick % len(raw)])
    elif kind == "label_shape":
        np.save(cv / "trn_label.npy", np.zeros((2, 2, 2)))
    elif kind == "label_nan":
        lab = np.load(cv / "tst_label.npy")
        lab[0, 0] = np.nan
        np.save(cv / "tst_label.npy", lab)
    elif kind == "label_object":
        np.save(cv / "val_label.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif kind == "names_scalar":
        np.save(cv / "tst_int2name.npy", np.array(b"Ses01F"))
    elif kind == "names_short":
        names = np.load(cv / "trn_int2name.npy")
        np.save(cv / "trn_int2name.npy", names[:-1])


KINDS = ["str_feat", "vlen_str_feat", "complex_feat", "int_feat", "bool_feat", "scalar_feat", "cube_feat", "empty_feat", "wide_feat",
         "nan_feat", "group_feat", "truncate", "label_shape", "label_nan", "label_object", "names_scalar",
         "names_short"]


@pytest.fixture(scope="module")
def clean_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("iemocap") / "src"
    write_mmin_iemocap(root, dims={"A": 3, "V": 3, "L": 3})
    return root


@FUZZ
@given(kind=st.sampled_from(KINDS), pick=st.integers(0, 10_000))
def test_mutated_sources_import_or_fail_in_one_line(tmp_path_factory, clean_source, kind, pick):
    import shutil

    work = tmp_path_factory.mktemp("mut")
    src = work / "src"
    shutil.copytree(clean_source, src)
    _mutate(src, kind, pick)
    out = work / "ie"
    try:
        ds = import_iemocap_mmin(src, "ie", out)
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc)
        assert not out.exists()
    else:  # accepted mutations must still give finite, correctly shaped data
        assert kind in {"int_feat", "bool_feat", "empty_feat"}, kind  # numbers; no frame = absent
        assert all(np.isfinite(ds.features[m]).all() for m in ds.modalities)
    assert not [p for p in work.iterdir() if p.name.startswith(".ie.")]


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=20),
       sub=st.sampled_from("AVL"))
def test_byte_flipped_h5_imports_or_fails_in_one_line(tmp_path_factory, clean_source, flips, sub):
    """Random bytes overwritten anywhere in one feature file (its superblock, object
    headers, B-trees or data): an import, or one DataError line (a named datatype reached
    through a corrupt link once gave an AttributeError)."""
    import shutil

    work = tmp_path_factory.mktemp("flip")
    src = work / "src"
    shutil.copytree(clean_source, src)
    path = src / sub / f"{FILES[sub]}.h5"
    raw = bytearray(path.read_bytes())
    for at, value in flips:
        raw[at % len(raw)] = value
    path.write_bytes(bytes(raw))
    try:
        import_iemocap_mmin(src, "ie", work / "ie")
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc)
        assert not (work / "ie").exists()
