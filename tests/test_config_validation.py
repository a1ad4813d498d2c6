"""Every config value checked by type and range before anything is written.

Property tests: hypothesis draws, for every field of the config dataclasses (the
experiment's and its nested train / pretrain / encoder / retrieval / m3s sections) and
for every option of every registered model, a wrongly typed or out-of-range value; the
command must end with one error line naming the key, a non-zero exit, and no file or
folder written. The CI profile (tests/conftest.py) is derandomised, so every run tries the
same examples; each field is also tried once by name (parametrised), so none is skipped
by chance.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from annotated_types import Ge, Gt, Le, Lt
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.errors import RamerError
from pipeline.models.registry import list_models, model_class
from pipeline.training.config import ExperimentConfig, load_experiment
from pipeline.training.schema import RANGES

WORDS = st.text(alphabet="abcxyz_", min_size=1, max_size=6)


def _leaves(cls: type, prefix: str = "") -> dict[str, Any]:
    """dotted key -> type, every field of `cls` and of the dataclasses it nests."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        out[f"{prefix}{f.name}"] = tp
        if dataclasses.is_dataclass(tp):
            out.update(_leaves(tp, f"{prefix}{f.name}."))
    return out


FIELDS = _leaves(ExperimentConfig)


def _base(tp: Any) -> Any:
    """Optional[X] -> X."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType) else tp


def wrong_type(tp: Any) -> st.SearchStrategy:
    """Values of another type than `tp` accepts (TOML can hold each)."""
    tp = _base(tp)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) or origin is dict:
        return st.one_of(st.integers(), WORDS, st.lists(st.integers(), max_size=2))
    if tp is bool:
        return st.one_of(st.integers(), WORDS, st.floats(allow_nan=False, allow_infinity=False))
    if tp is int:
        return st.one_of(WORDS, st.booleans(), st.floats(allow_nan=False, allow_infinity=False).filter(
            lambda x: x != int(x)), st.lists(st.integers(), min_size=1, max_size=2))
    if tp is float:
        return st.one_of(WORDS, st.booleans(), st.lists(st.floats(0, 1), min_size=1, max_size=2))
    if tp is str:
        return st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
                         st.lists(WORDS, min_size=1, max_size=2))
    if tp is list or origin in (list, tuple):
        item = (typing.get_args(tp) or [Any])[0]
        inner = WORDS if item in (int, float, Any) else st.integers()
        return st.one_of(WORDS, st.integers(), st.booleans(), st.lists(inner, min_size=1, max_size=2))
    raise AssertionError(f"no wrong values for {tp}")


def out_of_range(tp: Any, rule: tuple) -> st.SearchStrategy:
    """Values of the right type that break `rule` (in a one-item list for a list field)."""
    tp = _base(tp)
    item = (typing.get_args(tp) or [float])[0] if typing.get_origin(tp) in (list, tuple) or tp is list else tp
    item = float if item is Any else item
    bad = []
    for r in rule:
        if isinstance(r, Ge):
            bad.append(st.integers(max_value=r.ge - 1) if item is int else st.floats(max_value=r.ge, exclude_max=True))
        if isinstance(r, Gt):
            bad.append(st.integers(max_value=r.gt) if item is int else st.floats(max_value=r.gt))
        if isinstance(r, Le):
            bad.append(st.floats(min_value=r.le, exclude_min=True, max_value=1e9))
        if isinstance(r, Lt):
            bad.append(st.floats(min_value=r.lt, max_value=1e9))
    values = st.one_of(*bad).filter(lambda x: not (isinstance(x, float) and math.isnan(x)))
    return values.map(lambda v: [v]) if item is not tp else values


RANGED = {k: tp for k, tp in FIELDS.items() if k.split(".")[-1] in RANGES and not dataclasses.is_dataclass(tp)}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "inf" if value == math.inf else "-inf" if value == -math.inf else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def _write_config(path: Path, key: str, value: Any) -> Path:
    """A config file setting only `key` ('train.lr' in its [train] table)."""
    *section, leaf = key.split(".")
    head = f"[{'.'.join(section)}]\n" if section else ""
    path.write_text(f"{head}{leaf} = {_toml(value)}\n", encoding="utf-8")
    return path


def _refused(argv: list[str], root: Path, capsys, names: str) -> None:
    before = sorted(p.name for p in root.rglob("*"))
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert done.value.code not in (0, None), (argv, err)
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, (argv, err)
    assert names in lines[0], (names, lines[0])
    assert sorted(p.name for p in root.rglob("*")) == before, f"{argv} wrote files"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfgval")
    write_synthetic(path / "tiny", SynthConfig(labeled=100, unlabeled=20, dims={"audio": 4, "text": 6}, seed=2))
    return path


@pytest.fixture(autouse=True)
def _settings(root, monkeypatch):
    for key, sub in (("RAMER_RUNS_DIR", "runs"), ("RAMER_RESULTS_DIR", "results"), ("RAMER_DATA_DIR", "store")):
        monkeypatch.setenv(key, str(root / sub))
    monkeypatch.chdir(root)


def _key_named(key: str) -> str:
    """What the line must contain: the key itself, or its section for a section's type."""
    return key.split(".")[-1]


# ---------------------------------------------------------------- the config file's fields

@settings(max_examples=40)
@given(data=st.data())
def test_a_wrongly_typed_config_value_is_one_line_and_writes_nothing(root, capsys, data):
    key = data.draw(st.sampled_from(sorted(FIELDS)))
    value = data.draw(wrong_type(FIELDS[key]))
    _refused(["run", str(_write_config(root / "c.toml", key, value))], root, capsys, _key_named(key))


@settings(max_examples=40)
@given(data=st.data())
def test_an_out_of_range_config_value_is_one_line_and_writes_nothing(root, capsys, data):
    key = data.draw(st.sampled_from(sorted(RANGED)))
    value = data.draw(out_of_range(RANGED[key], RANGES[key.split(".")[-1]]))
    _refused(["run", str(_write_config(root / "c.toml", key, value))], root, capsys, _key_named(key))


@pytest.mark.parametrize("key", sorted(FIELDS))
def test_every_config_field_is_type_checked(root, key):
    """Each field once, through the library (the CLI's own cost, ~0.3 s a call, is paid by
    the property tests above)."""
    path = _write_config(root / "c.toml", key, _first_wrong(FIELDS[key]))
    with pytest.raises(RamerError, match=re.escape(_key_named(key))) as exc:
        load_experiment(path)
    assert "\n" not in str(exc.value)


def _first_wrong(tp: Any) -> Any:
    """One deterministic wrong value per type (the parametrised pass over every field)."""
    tp = _base(tp)
    if tp in (int, float) or dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict:
        return "fast"
    if tp is bool:
        return "no"
    if tp is str:
        return 5
    return 7  # a list or tuple field


# ---------------------------------------------------------------- every model's options

def _model_options() -> list[tuple[str, str, Any]]:
    out = []
    for name in list_models():
        cfg = model_class(name).Config
        for f in dataclasses.fields(cfg):
            out.append((name, f.name, typing.get_type_hints(cfg)[f.name]))
    return out


MODEL_OPTIONS = _model_options()


def _option_text(value: Any) -> str:
    """A value as a system option string writes it ('ramer(classifier=1;2)')."""
    if isinstance(value, list):
        return ";".join(map(str, value)) + (";" if len(value) == 1 else "")
    return str(value)


@settings(max_examples=30)  # each example is a whole CLI call (~0.3 s)
@given(data=st.data())
def test_a_bad_system_option_is_one_line_and_writes_nothing(root, capsys, data):
    name, option, tp = data.draw(st.sampled_from(MODEL_OPTIONS))
    rule = RANGES.get(option, ())
    bad = [wrong_type(tp).filter(lambda v: not isinstance(v, (list, float)))]  # the option grammar's types
    if rule and typing.get_origin(_base(tp)) is None:
        bad.append(out_of_range(tp, rule))
    value = data.draw(st.one_of(*bad))
    text = _option_text(value)
    if "," in text or "(" in text or ")" in text or "|" in text:  # the option grammar's separators
        return
    system = f"{name}({option}={text})"
    _refused(["run", "--dataset", str(root / "tiny"), "-e", "opt", "--systems", system], root, capsys, option)


@pytest.mark.parametrize(("name", "option", "tp"), MODEL_OPTIONS, ids=[f"{n}.{o}" for n, o, _ in MODEL_OPTIONS])
def test_every_model_option_is_type_checked(name, option, tp):
    """Each option of each model once, through the library (as above)."""
    from pipeline.training.config import RetrievalConfig
    from pipeline.training.systems import parse_system
    from pipeline.training.validate import check_system

    value = "abc" if _base(tp) is not str else "5"
    with pytest.raises(RamerError, match=re.escape(option)) as exc:
        check_system(parse_system(f"{name}({option}={value})", RetrievalConfig(), {}))
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------- the cases the issue lists

ISSUE_CASES = {
    "train = 5": ("train", "train = 5\n"),
    "lr = -1": ("lr", "[train]\nlr = -1\n"),
    "lr = fast": ("lr", '[train]\nlr = "fast"\n'),
    "preprocess bogus": ("preprocess", 'preprocess = "bogus"\ndataset = "tiny"\n'),
    "seed abc": ("seed", 'seed = "abc"\n'),
    "seed -5": ("seed", "seed = -5\n"),
    "systems [5]": ("systems", "systems = [5]\n"),
    "experiment 5": ("experiment", "experiment = 5\n"),
    "dataset 5": ("dataset", "dataset = 5\n"),
    "k 100000": ("k = 100000", 'dataset = "tiny"\nsystems = ["ramer"]\n[retrieval]\nk = 100000\n'),
    "ingest no": ("ingest", 'ingest = "no"\n'),
    "patience -1": ("patience", "[train]\npatience = -1\n"),
    "ramer,ramer": ("listed twice", 'dataset = "tiny"\nsystems = ["lr", "lr"]\n'),
    "pretrain typo": ("[pretrain]", "[pretrain]\nepochz = 3\n"),
}


@pytest.mark.parametrize("case", sorted(ISSUE_CASES))
def test_the_issues_config_cases(root, capsys, case):
    names, text = ISSUE_CASES[case]
    path = root / "c.toml"
    path.write_text(text, encoding="utf-8")
    _refused(["run", str(path)], root, capsys, names)


@pytest.mark.parametrize("system", ["ramer(lr=-1)", "ramer(lr=abc)", "ramer(d_model=10,heads=3)", "ramer(k=1000)"])
def test_the_issues_system_cases(root, capsys, system):
    _refused(["run", "--dataset", str(root / "tiny"), "-e", "opt", "--systems", system], root, capsys, system)


def test_encodings_a_bom_is_fine_latin1_is_one_line(root, capsys):
    path = root / "c.toml"
    path.write_bytes("\ufeffseed = -1\n".encode())  # read past the BOM: the value is what is refused
    _refused(["run", str(path)], root, capsys, "seed = -1")
    path.write_bytes('experiment = "caf\xe9"\n'.encode("latin-1"))
    _refused(["run", str(path)], root, capsys, "not UTF-8")


def test_threads_zero_and_resume_with_fresh_are_refused(root, capsys, monkeypatch):
    _refused(["run", "--dataset", str(root / "tiny"), "--resume", "--fresh"], root, capsys, "--fresh")
    monkeypatch.setenv("RAMER_THREADS", "0")
    _refused(["run", "--dataset", str(root / "tiny"), "-e", "t0", "--systems", "lr"], root, capsys, "threads")
