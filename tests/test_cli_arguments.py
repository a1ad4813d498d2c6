"""Every CLI command, one bad value per argument: one line on stderr that names the
problem (and the valid choices where there is a list), a non-zero exit code, no
traceback, and nothing written.

The commands and their parameters come from the Typer app, so a new command or option
fails `test_every_parameter_has_a_bad_value` until it gets a case here (or a reason why
every value is valid). Commands run in this process through `pipeline.cli.main`, against
a small world built once: a dataset, an ingested collection, a finished-looking
experiment and a source for every importer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from test_import_m3ed import write_m3ed_pickle
from test_importers import (
    write_carat_pt,
    write_iemocap,
    write_mer2024,
    write_mmsa,
)

from pipeline.cli import _register, app, main
from pipeline.data.fingerprint import dataset_fingerprint
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.training.config import ExperimentConfig

RUN = ["--dataset", "{ds}", "-e", "walk"]  # the good part of every experiment command
STAGES = ("run", "sweep", "pretrain", "index", "train", "evaluate")
RUN_CASES = {
    "config": (["{under_file}.toml", *RUN], ["config file not found"]),
    "dataset": (["--dataset", "{root}/nope", "-e", "walk"], ["dataset directory not found"]),
    "experiment": (["--dataset", "{ds}", "-e", "../up"], ["--experiment '../up'", "letters, digits"]),
    "systems": ([*RUN, "--systems", "nosuch"], ["unknown system 'nosuch'", "mmin"]),
    "folds": ([*RUN, "--folds", "7"], ["--folds [7]", "folds 0..2"]),
    "runs": ([*RUN, "--runs", "0"], ["--runs 0", ">= 1"]),
    "jobs": ([*RUN, "--jobs", "0"], ["--jobs", "greater than or equal to 1"]),
    "epochs": ([*RUN, "--epochs", "0"], ["--epochs 0", ">= 1"]),
    "pretrain_epochs": ([*RUN, "--pretrain-epochs", "0"], ["--pretrain-epochs 0", ">= 1"]),
    "k": ([*RUN, "--k", "0"], ["k 0", ">= 1"]),
    "scale": ([*RUN, "--scale", "huge"], ["scale 'huge'", "small, medium, large, turbo"]),
    "seed": ([*RUN, "--seed", "abc"], ["'--seed'", "valid integer"]),
    "device": ([*RUN, "--device", "tpu"], ["--device 'tpu'", "auto, cpu, cuda"]),
    "strategy": ([*RUN, "--strategy", "zzz"], ["zzz", "orig"]),
    "missing_rate": ([*RUN, "--strategy", "m3s", "--missing-rate", "abc"], ["'abc'", "LO-HI"]),
    "test_missing_rate": ([*RUN, "--strategy", "m3s", "--test-missing-rate", "6-2"], ["lo <= hi"]),
    "ablations": ([*RUN, "--ablations", "zzz"], ["zzz", "retrieval"]),
    "preset": ([*RUN, "--preset", "papr"], ["unknown preset 'papr'", "none, paper"]),
    "noise": ([*RUN, "--noise", "smell:20"], ["smell", "gaussian"]),
    "noise_schedule": ([*RUN, "--noise", "gaussian:20", "--noise-schedule", "zzz"], ["'zzz'", "linear"]),
}
STORE = {  # the options that reach the store, bad each way
    "qdrant_url": (["--qdrant-url", "http://127.0.0.1:9"], ["cannot reach Qdrant at http://127.0.0.1:9"]),
    "store": (["--store", "{file}"], ["{file}"]),
    "engine": (["--engine", "zzz"], ["'zzz'", "edge", "local"]),
}
SPEC = (["--spec", "{root}/nope.json"], ["nope.json", "spec not found"])
COLLECTION = (["nosuch"], ["collection 'nosuch' not found", "tiny__raw__f0"])
SYNTH = {
    "out": (["--out", "{under_file}"], ["{file} is a file"]),
    "labeled": (["--labeled", "-5"], ["-5"]),
    "unlabeled": (["--unlabeled", "-5"], ["unlabeled", "-5"]),
    "dims": (["--dims", "audio"], ["'audio'", "NAME=DIM"]),
    "seed": (["--seed", "abc"], ["'--seed'", "valid integer"]),
    "folds": (["--folds", "1"], ["--folds 1", "2..127"]),
    "name": (["--name", "a/b"], ["--name 'a/b'", "letters, digits"]),
}
IMPORT = {  # shared by every importer; {src} is its good source
    "name": (["--name", "a/b"], ["--name 'a/b'", "letters, digits"]),
    "out": (["--out", "{under_file}"], ["{file} is a file"]),
    "folds": (["--folds", "1"], ["--folds 1", "2..127"]),
    "seed": (["--seed", "abc"], ["'--seed'", "valid integer"]),
    "data_dir": (["--data-dir", "{file}"], ["{file} is a file"]),
    "duplicate_threshold": (["--duplicate-threshold", "1.5"], ["1.5", "(0, 1]"]),
}
GROUP_BY = (["--group-by", "nosuch"], ["--group-by column 'nosuch' not found", "--group-by none"])


def _import(command: str, src: str, *extra: tuple, without: tuple[str, ...] = (), good: tuple[str, ...] = ()) -> dict:
    """The shared importer cases for `data import COMMAND SRC [GOOD...]`, + its own."""
    base = ["data", "import", command, src, *good]
    cases = {p: ([*base, *(() if p == "name" else ("--name", "x")), *args], frags)
             for p, (args, frags) in IMPORT.items() if p not in without}
    return {**cases, **dict(extra)}


def _run_cases(stage: str) -> dict:
    skip = {"run": {"noise", "noise_schedule"}, "sweep": {"noise", "noise_schedule"},
            "evaluate": {"ablations"}}.get(stage, {"noise", "noise_schedule", "ablations"})
    return {p: ([stage, *args], frags) for p, (args, frags) in RUN_CASES.items() if p not in skip}


def _store_cases(*base: str) -> dict:
    return {p: ([*base, *args], frags) for p, (args, frags) in STORE.items()}


SEARCH = ["collections", "search", "tiny__raw__f0", "--sample", "{sample}", "--modality", "audio"]
INGEST = ["collections", "ingest", "{ds}", "--dim", "8"]
PREDICT = ["predict", "-e", "done", "-i", "{input}"]
MIGRATE = ["collections", "migrate", "--to", "http://127.0.0.1:9"]
EXPLORE = ["collections", "explore", "tiny__raw__f0", "-o", "{root}/v.html"]

# command -> parameter -> (argv, fragments of the one error line)
CASES: dict[str, dict[str, tuple[list[str], list[str]]]] = {
    **{stage: _run_cases(stage) for stage in STAGES},
    "demo": {
        "out": (["demo", "--out", "{under_file}"], ["{file} is a file"]),
        "labeled": (["demo", "--labeled", "3"], ["--labeled", ">= 50"]),
        "unlabeled": (["demo", "--unlabeled", "-1"], ["--unlabeled", ">= 0"]),
        "folds": (["demo", "--folds", "9"], ["--folds", "0..4"]),
        "runs": (["demo", "--runs", "0"], ["--runs", ">= 1"]),
        "epochs": (["demo", "--epochs", "0"], ["--epochs", ">= 1"]),
        "experiment": (["demo", "--experiment", "../up"], ["--experiment '../up'"]),
        "preset": (["demo", "--preset", "papr"], ["unknown preset 'papr'", "none, paper"]),
    },
    "report": {
        "results": (["report", "{root}/results/nope"], ["no metrics.parquet", "done"]),
        "merge": (["report", "{root}/results/merged", "--merge", "{root}/results/nope"], ["nope", "no metrics.parquet"]),
    },
    "predict": {
        "experiment": (["predict", "-e", "nosuch", "-i", "{input}"], ["--experiment 'nosuch'", "experiments: done"]),
        "input": (["predict", "-e", "done", "-i", "{root}/nope.parquet"], ["nope.parquet", "input file not found"]),
        "out": ([*PREDICT, "-o", "{under_file}/p.parquet"], ["--out", "does not exist"]),
        "fold": ([*PREDICT, "--fold", "7"], ["--fold 7", "trained fold(s) 0"]),
        "system": ([*PREDICT, "--system", "nosuch"], ["--system 'nosuch'", "trained in", ": ramer"]),
    },
    "data synth": {p: (["data", "synth", *(() if p == "out" else ("--out", "{root}/s")), *a], f)
                   for p, (a, f) in {**SYNTH, "missing_rate": (["--missing-rate", "1.5"], ["1.5", "[0, 1)"])}.items()},
    "data synth-regression": {p: (["data", "synth-regression", *(() if p == "out" else ("--out", "{root}/s")), *a], f)
                              for p, (a, f) in SYNTH.items()},
    "data synth-multilabel": {p: (["data", "synth-multilabel", *(() if p == "out" else ("--out", "{root}/s")), *a], f)
                              for p, (a, f) in SYNTH.items()},
    "data validate": {"directory": (["data", "validate", "{root}/nope"], ["dataset directory not found"])},
    "data info": {"directory": (["data", "info", "{root}/nope"], ["dataset directory not found"])},
    "data import parquet": _import(
        "parquet", "{pq}",
        ("file", (["data", "import", "parquet", "{root}/nope.parquet", "--name", "x"], ["input file not found"])),
        ("classes", (["data", "import", "parquet", "{pq}", "--name", "x", "--classes", "a"],
                     ["out of range 0..0", "classes ['a']"])),
        ("modalities", (["data", "import", "parquet", "{pq}", "--name", "x", "--modalities", "smell"],
                        ["['audio']", "unknown modality"])),
        ("group_by", (["data", "import", "parquet", "{pq}", "--name", "x", *GROUP_BY[0]], GROUP_BY[1])),
    ),
    "data import mer2024": _import(
        "mer2024", "{mer}",
        ("root", (["data", "import", "mer2024", "{root}/nope", "--name", "x", "--audio", "a"], ["not found"])),
        ("audio", (["data", "import", "mer2024", "{mer}", "--name", "x", "--audio", "nosuch"],
                   ["nosuch-UTT", "chinese-hubert-large"])),
        ("visual", (["data", "import", "mer2024", "{mer}", "--name", "x", "--visual", "nosuch"], ["nosuch-UTT"])),
        ("text", (["data", "import", "mer2024", "{mer}", "--name", "x", "--text", "nosuch"], ["nosuch-UTT"])),
        ("features", (["data", "import", "mer2024", "{mer}", "--name", "x", "--audio", "chinese-hubert-large",
                       "--features", "{root}/nope"], ["not found"])),
        ("labels", (["data", "import", "mer2024", "{mer}", "--name", "x", "--audio", "chinese-hubert-large",
                     "--labels", "{root}/nope.npz"], ["nope.npz", "not found"])),
        ("labeled_corpora", (["data", "import", "mer2024", "{mer}", "--name", "x", "--audio", "chinese-hubert-large",
                              "--labeled-corpora", "nosuch"], ["['nosuch']", "train_corpus"])),
        ("group_by", (["data", "import", "mer2024", "{mer}", "--name", "x", "--audio", "chinese-hubert-large",
                       *GROUP_BY[0]], GROUP_BY[1])),
        good=("--audio", "chinese-hubert-large"),
    ),
    "data import mmsa": _import(
        "mmsa", "{mmsa}",
        ("file", (["data", "import", "mmsa", "{root}/nope.pkl", "--name", "x"], ["not found"])),
        ("task", (["data", "import", "mmsa", "{mmsa}", "--name", "x", "--task", "zzz"], ["zzz", "regression"])),
        ("classes", (["data", "import", "mmsa", "{mmsa}", "--name", "x", "--task", "single_label", "--classes", "a"],
                     ["--classes lists 1"])),
        ("group_by", (["data", "import", "mmsa", "{mmsa}", "--name", "x", *GROUP_BY[0]], GROUP_BY[1])),
        ("padding_location", (["data", "import", "mmsa", "{mmsa}", "--name", "x", "--padding-location", "middle"],
                              ["--padding-location", "middle"])),
    ),
    "data import carat-mosei": _import(
        "carat-mosei", "{carat}",
        ("file", (["data", "import", "carat-mosei", "{root}/nope.pt", "--name", "x"], ["not found"])),
        ("unaligned", (["data", "import", "carat-mosei", "{carat}", "--name", "x", "--unaligned", "{root}/nope.pkl"],
                       ["nope.pkl", "not found"])),
    ),
    "data import iemocap-mmin": _import(
        "iemocap-mmin", "{iemocap}",
        ("root", (["data", "import", "iemocap-mmin", "{root}/nope", "--name", "x"], ["not found"])),
        ("audio", (["data", "import", "iemocap-mmin", "{iemocap}", "--name", "x", "--audio", "nosuch"],
                   ["nosuch.h5", "comparE"])),
        ("visual", (["data", "import", "iemocap-mmin", "{iemocap}", "--name", "x", "--visual", "nosuch"],
                    ["nosuch.h5", "denseface"])),
        ("text", (["data", "import", "iemocap-mmin", "{iemocap}", "--name", "x", "--text", "nosuch"],
                  ["nosuch.h5", "bert_large"])),
        ("classes", (["data", "import", "iemocap-mmin", "{iemocap}", "--name", "x", "--classes", "a,b"],
                     ["expected 2"])),
        ("targets", (["data", "import", "iemocap-mmin", "{iemocap}", "--name", "x", "--targets", "{root}/nope"],
                     ["nope: target/ folder", "not found"])),
        without=("folds",),  # MMIN's cross-validation folders are the folds
    ),
    "data import m3ed": _import(
        "m3ed", "{m3ed}",
        ("file", (["data", "import", "m3ed", "{root}/nope.pkl", "--name", "x"], ["not found"])),
    ),
    "collections apply": {
        "dataset_dir": (["collections", "apply", "{root}/nope"], ["manifest not found"]),
        "experiment": (["collections", "apply", "{ds}", "-e", "../up"], ["--experiment '../up'"]),
        "fold": (["collections", "apply", "{ds}", "--fold", "9"], ["--fold 9", "folds 0..2"]),
        "dim": (["collections", "apply", "{ds}", "--dim", "0"], ["'--dim'", "greater than or equal to 1"]),
        "distance": (["collections", "apply", "{ds}", "--distance", "zzz"], ["'zzz'", "Cosine, Euclid, Dot"]),
        "spec": (["collections", "apply", "{ds}", *SPEC[0]], SPEC[1]),
        **_store_cases("collections", "apply", "{ds}"),
    },
    "collections list": _store_cases("collections", "list"),
    "collections info": {"collection": (["collections", "info", *COLLECTION[0]], COLLECTION[1]),
                         **_store_cases("collections", "info", "tiny__raw__f0")},
    "collections drop": {"collection": (["collections", "drop", *COLLECTION[0], "--yes"], COLLECTION[1]),
                         **_store_cases("collections", "drop", "nosuch", "--yes")},
    "collections search": {
        "collection": (["collections", "search", "nosuch", "--sample", "{sample}", "--modality", "audio"],
                       COLLECTION[1]),
        "sample": (["collections", "search", "tiny__raw__f0", "--sample", "nosuch", "--modality", "audio"],
                   ["sample 'nosuch' not found"]),
        "modality": ([*SEARCH[:5], "--modality", "smell", "-k", "3"], ["no vector 'smell'", "audio, text, visual"]),
        "k": ([*SEARCH, "-k", "0"], ["'-k'", "greater than or equal to 1"]),
        "scale": ([*SEARCH, "--scale", "huge"], ["--scale 'huge'", "small, medium, large, turbo"]),
        **_store_cases(*SEARCH),
    },
    "collections ingest": {
        "dataset_dir": (["collections", "ingest", "{root}/nope"], ["dataset directory not found"]),
        "experiment": ([*INGEST, "-e", "../up"], ["--experiment '../up'"]),
        "fold": ([*INGEST, "--fold", "9"], ["--fold 9", "folds 0..2"]),
        "run": ([*INGEST, "--run", "-1"], ["'--run'", "greater than or equal to 0"]),
        "scale": ([*INGEST, "--scale", "huge"], ["--scale 'huge'", "turbo"]),
        "dim": (["collections", "ingest", "{ds}", "--dim", "0"], ["'--dim'", "greater than or equal to 1"]),
        "seed": ([*INGEST, "--seed", "abc"], ["'--seed'", "valid integer"]),
        "batch_size": ([*INGEST, "--batch-size", "0"], ["'--batch-size'", "greater than or equal to 1"]),
        "spec": ([*INGEST, *SPEC[0]], SPEC[1]),
        **_store_cases(*INGEST),
    },
    "collections explore": {
        "collection": (["collections", "explore", "nosuch", "-o", "{root}/v.html"], COLLECTION[1]),
        "modality": ([*EXPLORE, "--modality", "smell"], ["modality smell", "audio, visual, text"]),
        "color": ([*EXPLORE, "--color", "zzz"], ["--color 'zzz'", "label_name, split, fold"]),
        "max_points": ([*EXPLORE, "--max-points", "0"], ["--max-points (0)", "at least 1"]),
        "projection": ([*EXPLORE, "--projection", "zzz"], ["--projection 'zzz'", "pca, tsne, umap"]),
        "k": ([*EXPLORE, "-k", "0"], ["-k (0)", "at least 1"]),
        "scale": ([*EXPLORE, "--scale", "huge"], ["--scale 'huge'", "turbo"]),
        "seed": ([*EXPLORE, "--seed", "abc"], ["'--seed'", "valid integer"]),
        "out": (["collections", "explore", "tiny__raw__f0", "-o", "{under_file}.html"], ["{file} is a file"]),
        **_store_cases(*EXPLORE),
    },
    "collections migrate": {
        "to": (MIGRATE, ["cannot reach Qdrant at http://127.0.0.1:9"]),
        "collection": (["collections", "migrate", "--to", "LOCAL", "--collection", "nosuch"],
                       ["['nosuch'] not found", "tiny__raw__f0"]),
        "batch_size": ([*MIGRATE, "--batch-size", "0"], ["'--batch-size'", "greater than or equal to 1"]),
        "check": ([*MIGRATE, "--check", "-1"], ["'--check'", "greater than or equal to 0"]),
        "shards": ([*MIGRATE, "--shards", "0"], ["'--shards'", "greater than or equal to 1"]),
        "replicas": ([*MIGRATE, "--replicas", "0"], ["'--replicas'", "greater than or equal to 1"]),
        "spec": ([*MIGRATE, *SPEC[0]], SPEC[1]),
        "store": ([*MIGRATE, "--store", "{file}"], ["{file}"]),
        "engine": ([*MIGRATE, "--engine", "zzz"], ["'zzz'", "edge", "local"]),
    },
}

# Parameters for which every value is valid, and why (bool flags are skipped by type).
ANY_VALUE = {
    ("collections migrate", "api_key"): "sent to the destination server as is; a wrong key is the server's answer",
}
# Commands whose options belong to a script's own argparse (`ramer bench NAME ...`).
PASS_THROUGH = {"bench retrieval", "bench ingest", "bench training", "bench turbo"}


def _commands() -> dict[str, typer.core.TyperCommand]:
    _register()
    out = {}

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            out[" ".join(path)] = cmd

    walk(typer.main.get_command(app), [])
    return out


def _parameters(cmd) -> list[str]:
    return [p.name for p in cmd.params if p.name != "help" and not getattr(p, "is_flag", False)]


def test_every_parameter_has_a_bad_value() -> None:
    missing, stale = [], []
    for name, cmd in _commands().items():
        if name in PASS_THROUGH:
            continue
        params = set(_parameters(cmd))
        have = set(CASES.get(name, {})) | {p for (c, p) in ANY_VALUE if c == name}
        missing += [f"{name} {p}" for p in sorted(params - have)]
        stale += [f"{name} {p}" for p in sorted(have - params)]
    assert not missing, f"add a bad value (or an ANY_VALUE reason) for: {missing}"
    assert not stale, f"cases for parameters that do not exist: {stale}"
    assert set(CASES) <= set(_commands()), sorted(set(CASES) - set(_commands()))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Everything the good halves of the cases refer to, built once."""
    root = tmp_path_factory.mktemp("walk")
    mp = pytest.MonkeyPatch()
    for key, sub in (("RAMER_DATA_DIR", "data"), ("RAMER_RUNS_DIR", "runs"), ("RAMER_RESULTS_DIR", "results"),
                     ("RAMER_QDRANT_PATH", "qdrant")):
        mp.setenv(key, str(root / sub))
    mp.setenv("RAMER_QDRANT_ENGINE", "edge")
    for key in ("QDRANT_URL", "RAMER_QDRANT_URL", "QDRANT_API_KEY", "RAMER_DEVICE"):
        mp.delenv(key, raising=False)
    ds = write_synthetic(root / "data" / "tiny", SynthConfig(labeled=60, unlabeled=20, folds=3,
                                                             dims={"audio": 4, "visual": 3, "text": 5}))
    with pytest.raises(SystemExit) as done:
        main(["collections", "ingest", str(ds.root), "--dim", "8"])
    assert done.value.code == 0
    exp = root / "runs" / "done"
    (exp / "f0_r0").mkdir(parents=True)
    saved = ExperimentConfig(experiment="done", dataset=str(ds.root), folds=[0], runs=1).to_dict()
    (exp / "config.json").write_text(json.dumps({**saved, "data_fingerprint": dataset_fingerprint(ds.root)},
                                                default=str))
    (exp / "f0_r0" / "ramer.pt").write_bytes(b"")  # its name is all the argument checks read
    (root / "results" / "done").mkdir(parents=True)
    (root / "results" / "done" / "metrics.parquet").write_bytes(b"")
    rows = [ds.features["audio"][i].tolist() for i in range(4)]
    pq.write_table(pa.table({"sample": [f"n{i}" for i in range(4)], "audio": pa.array(rows, pa.list_(pa.float32()))}),
                   root / "input.parquet")
    pq.write_table(pa.table({"sample": [f"u{i}" for i in range(12)], "label": pa.array([i % 3 for i in range(12)]),
                             "audio": pa.array(np.ones((12, 2)).tolist(), pa.list_(pa.float32()))}), root / "in.parquet")
    (root / "afile").write_text("a regular file")
    for sub in ("mer", "iemocap"):
        (root / sub).mkdir()
    write_mer2024(root / "mer")
    write_iemocap(root / "iemocap")
    write_mmsa(root / "mmsa.pkl")
    write_carat_pt(root / "carat.pt", sizes=(12, 4, 4), t=4)
    write_m3ed_pickle(root / "m3ed.pkl")
    import pipeline.cli.collections as collections_cli
    from pipeline.config import load_settings
    from pipeline.store import HiddenFeatureStore

    # `--to LOCAL`: the destination is a second embedded store, as in test_migrate.py
    HiddenFeatureStore.open(load_settings(qdrant_path=root / "dest")).close()  # its folder exists before
    real = collections_cli._open_destination
    mp.setattr(collections_cli, "_open_destination", lambda url, key, spec: HiddenFeatureStore.open(
        load_settings(qdrant_path=root / "dest")) if url == "LOCAL" else real(url, key, spec))
    yield {"root": str(root), "ds": str(ds.root), "sample": str(ds.samples[0]), "file": str(root / "afile"),
           "under_file": str(root / "afile" / "x"), "input": str(root / "input.parquet"), "pq": str(root / "in.parquet"),
           "mer": str(root / "mer"), "iemocap": str(root / "iemocap"), "mmsa": str(root / "mmsa.pkl"),
           "carat": str(root / "carat.pt"), "m3ed": str(root / "m3ed.pkl")}
    mp.undo()


def _tree(root: Path) -> set[str]:
    """Every path under `root`; inside an embedded store only its collections (the engine
    rewrites its own segment files when it opens one)."""
    paths = (p.relative_to(root).parts for p in root.rglob("*"))
    return {"/".join(parts if parts[0] not in ("qdrant", "dest") else parts[:2]) for parts in paths}


ALL = sorted((c, p) for c, params in CASES.items() for p in params)


@pytest.mark.parametrize(("command", "param"), ALL, ids=[f"{c}:{p}" for c, p in ALL])
def test_bad_value_gives_one_line(world: dict[str, str], capsys: pytest.CaptureFixture, command: str,
                                  param: str) -> None:
    argv, fragments = CASES[command][param]
    argv = [a.format(**world) for a in argv]
    before = _tree(Path(world["root"]))
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert exit_.value.code not in (0, None), (argv, err)
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error:"), (argv, err)
    for f in fragments:
        assert f.format(**world) in lines[0], (f, lines[0])
    assert _tree(Path(world["root"])) == before, f"{argv} wrote files"
