"""MER2024 in MERTools' layout: fixtures built to what MERTools' own writers produce,
checked by VALUE (each extractor's vectors in its modality's column, labels exact, the
test corpus unlabeled); a corpus of placeholder labels refused; `{name}_UTT` folders; and
every broken source (a .npy of strings, mutated structure or dtype) one DataError line
with nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.data.importers import import_mer2024
from pipeline.errors import DataError

EMOS = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
# extractor -> (folder name MERTools writes, dim)
FOLDERS = {
    "chinese-hubert-large": ("chinese-hubert-large-UTT", 1024),  # extract_audio_huggingface: f'{model}-{level[:3]}'
    "manet": ("manet_UTT", 1024),  # extract_manet_embedding: f'manet_{level[:3]}'
    "Baichuan-13B-Base": ("Baichuan-13B-Base-UTT", 5120),  # extract_text_huggingface: f'{model}-{level[:3]}'
}
EXTRACTORS = {"audio": "chinese-hubert-large", "visual": "manet", "text": "Baichuan-13B-Base"}


def write_mertools_mer2024(root: Path, n_train: int = 24, n_test: int = 10, seed: int = 0,
                           dims: dict[str, int] | None = None) -> dict[str, dict]:
    """A MER2024 root as zeroQiaoba/MERTools writes it:
    - label-6way.npz by `MER2024/toolkit/preprocess/mer2024.py` (`normalize_dataset_format`):
      `np.savez_compressed(train_corpus=..., test1_corpus=...)`, each a dict name ->
      {'emo': label}; every test1 entry gets the placeholder 'emo': 'neutral'
      (`read_test_label`: `['neutral'] * len(video_names)`);
    - features/{folder}/{name}.npy by `MER2024/feature_extraction/*` at UTTERANCE level:
      one (D,) float32 vector per file (the mean over frames); the folder is
      f'{model}-UTT' for the huggingface extractors and f'{name}_UTT' ('%s_%s') for manet,
      vggish, emonet, the handcrafted sets and the other face models.
    Returns name -> {'emo': train label or None, extractor: vector}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    train = {f"sample_{i:08d}": {"emo": EMOS[i % 6]} for i in range(n_train)}
    test1 = {f"sample_{10**7 + i:08d}": {"emo": "neutral"} for i in range(n_test)}
    np.savez_compressed(root / "label-6way.npz", train_corpus=train, test1_corpus=test1)
    expect = {n: {"emo": r["emo"]} for n, r in train.items()} | {n: {"emo": None} for n in test1}
    for ext, (folder, dim) in FOLDERS.items():
        d = (dims or {}).get(ext, dim)
        (root / "features" / folder).mkdir(parents=True)
        for n in expect:
            frames = rng.standard_normal((int(rng.integers(2, 5)), d)).astype(np.float32)
            vec = frames.mean(0)  # MERTools: np.mean(embeddings, axis=0) at UTTERANCE level
            np.save(root / "features" / folder / f"{n}.npy", vec)
            expect[n][ext] = vec
    return expect


def _check_values(ds, expect: dict, extractors: dict[str, str] = EXTRACTORS) -> None:
    index = {s: i for i, s in enumerate(ds.samples)}
    assert set(index) == set(expect)
    for n, e in expect.items():
        i = index[n]
        if e["emo"] is None:
            assert not ds.labeled[i] and ds.y[i] == -1, n
        else:
            assert ds.labeled[i] and EMOS[ds.y[i]] == e["emo"], n
        for m, ext in extractors.items():
            np.testing.assert_array_equal(ds.features[m][i], e[ext], err_msg=f"{n} {m}")


def test_underscore_utt_folders_values_and_test_corpus_unlabeled(tmp_path):
    expect = write_mertools_mer2024(tmp_path / "src")
    ds = import_mer2024(tmp_path / "src", "mer", tmp_path / "mer", EXTRACTORS, folds=2)
    _check_values(ds, expect)
    assert ds.manifest.provenance["modality_sources"] == {
        "audio": "chinese-hubert-large-UTT", "visual": "manet_UTT", "text": "Baichuan-13B-Base-UTT"}


def test_the_folder_name_itself_may_be_given(tmp_path):
    expect = write_mertools_mer2024(tmp_path / "src", dims={"Baichuan-13B-Base": 16, "chinese-hubert-large": 8})
    given_names = {"audio": "chinese-hubert-large-UTT", "visual": "manet_UTT", "text": "Baichuan-13B-Base-UTT"}
    ds = import_mer2024(tmp_path / "src", "mer", tmp_path / "mer", given_names, folds=2)
    _check_values(ds, expect)


def test_placeholder_label_corpus_is_refused(tmp_path):
    write_mertools_mer2024(tmp_path / "src", dims={"Baichuan-13B-Base": 16})
    with pytest.raises(DataError, match=r"corpus 'test1_corpus' gives all 10 entries the one label 'neutral'"):
        import_mer2024(tmp_path / "src", "mer", tmp_path / "mer",  # '-UTT' folders only: any version reads them
                       {"audio": "chinese-hubert-large", "text": "Baichuan-13B-Base"},
                       labeled_corpora=("train_corpus", "test1_corpus"), folds=2)
    assert not (tmp_path / "mer").exists()


def test_help_says_placeholder_corpora_are_refused():
    from pipeline.cli.data import app

    res = CliRunner().invoke(app, ["import", "mer2024", "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0
    assert "placeholder" in res.output and "_UTT" in res.output


def test_both_spellings_frame_level_and_missing_folders(tmp_path):
    write_mertools_mer2024(tmp_path / "src", n_train=12, n_test=2, dims={"Baichuan-13B-Base": 16})
    feats = tmp_path / "src/features"
    shutil.copytree(feats / "manet_UTT", feats / "manet-UTT")
    with pytest.raises(DataError, match="both manet-UTT and manet_UTT exist for visual"):
        import_mer2024(tmp_path / "src", "mer", tmp_path / "mer", EXTRACTORS, folds=2)
    (feats / "vggish_FRA").mkdir()
    with pytest.raises(DataError, match=r"vggish_FRA: only frame-level features for audio"):
        import_mer2024(tmp_path / "src", "mer", tmp_path / "mer", {"audio": "vggish"}, folds=2)
    with pytest.raises(DataError, match=r"vggish_FRA: frame-level features"):
        import_mer2024(tmp_path / "src", "mer", tmp_path / "mer", {"audio": "vggish_FRA"}, folds=2)
    with pytest.raises(DataError, match=r"nosuch-UTT: feature folder for audio not found"):
        import_mer2024(tmp_path / "src", "mer", tmp_path / "mer", {"audio": "nosuch"}, folds=2)
    assert not (tmp_path / "mer").exists()


def test_npy_of_strings_is_one_line(tmp_path):
    write_mertools_mer2024(tmp_path / "src", n_train=12, n_test=2, dims={"Baichuan-13B-Base": 16})
    bad = tmp_path / "src/features/manet_UTT/sample_00000003.npy"
    np.save(bad, np.array(["0.1", "0.2"]))
    with pytest.raises(DataError, match=r"sample_00000003.npy: holds <U3 values") as err:
        import_mer2024(tmp_path / "src", "mer", tmp_path / "mer", EXTRACTORS, folds=2)
    assert "\n" not in str(err.value) and not (tmp_path / "mer").exists()


# ---------------------------------------------------------------- structure / dtype mutations

FUZZ = settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
SMALL = {"chinese-hubert-large": 4, "manet": 3, "Baichuan-13B-Base": 5}
VALUES = {
    "strings": np.array(["a", "b", "c"]), "bytes": np.array([b"a", b"b", b"c"]), "complex": np.ones(3, np.complex64),
    "scalar": np.float32(1.0), "frames": np.ones((4, 3), np.float32), "cube": np.ones((2, 2, 3), np.float32),
    "empty": np.zeros(0, np.float32), "wide": np.ones(7, np.float32), "nan": np.full(3, np.nan, np.float32),
    "ints": np.ones(3, np.int64), "bools": np.ones(3, bool), "column": np.ones((3, 1), np.float32),
}
LABELS = {
    "no_train": lambda: {"test1_corpus": {"sample_00000000": {"emo": "happy"}}},
    "corpus_list": lambda: {"train_corpus": np.array([1, 2, 3])},
    "emo_int": lambda: {"train_corpus": {f"sample_{i:08d}": {"emo": i % 6} for i in range(12)}},
    "emo_unknown": lambda: {"train_corpus": {f"sample_{i:08d}": {"emo": "bored"} for i in range(12)}},
    "one_class": lambda: {"train_corpus": {f"sample_{i:08d}": {"emo": "sad"} for i in range(12)}},
    "entry_str": lambda: {"train_corpus": {f"sample_{i:08d}": EMOS[i % 6] for i in range(12)}},
}


@pytest.fixture(scope="module")
def clean_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mer") / "src"
    write_mertools_mer2024(root, n_train=12, n_test=2, dims=SMALL)
    return root


@FUZZ
@given(kind=st.sampled_from(sorted(VALUES) + sorted(LABELS)), pick=st.integers(0, 13))
def test_mutated_sources_import_or_fail_in_one_line(tmp_path_factory, clean_source, kind, pick):
    work = tmp_path_factory.mktemp("mut")
    src = work / "src"
    shutil.copytree(clean_source, src)
    if kind in VALUES:
        folder = src / "features" / FOLDERS[list(FOLDERS)[pick % 3]][0]
        np.save(sorted(folder.iterdir())[pick], VALUES[kind])
    else:
        np.savez(src / "label-6way.npz", **LABELS[kind]())
    out = work / "mer"
    try:
        ds = import_mer2024(src, "mer", out, EXTRACTORS, folds=2)
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc)
        assert not out.exists()
    else:  # accepted mutations must still be numbers of the right shape
        assert kind in {"ints", "bools", "column", "entry_str"}, kind
        assert all(np.isfinite(ds.features[m]).all() for m in ds.modalities)
    assert not [p for p in work.iterdir() if p.name.startswith(".mer.")]
