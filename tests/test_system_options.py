"""Every option of every registered system, set through the CLI string and through a TOML
`[[systems]]` table: both parse into the same `SystemSpec`, the order options are written
in changes neither its seed nor its checkpoint, and every such system trains one tiny
epoch and is scored. Generated from the registry, so a new model is covered by adding it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.config import Settings
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.errors import RamerError
from pipeline.experiment import protocol
from pipeline.experiment.results import write_results
from pipeline.models.registry import list_models, model_class, model_config
from pipeline.training.config import RetrievalConfig, load_experiment
from pipeline.training.strategies import M3SConfig
from pipeline.training.systems import (
    M3S_KEYS,
    TRAIN_KEYS,
    canonical,
    experiment_systems,
    option_text,
    parse_system,
)
from pipeline.training.trainer import TrainConfig

NOT_OPTIONS = {"leaks"}  # diagnostics, only as 'leaky[KIND]:ramer' (tests/test_leakage.py)
TINY = {"epochs": 1, "batch_size": 32}  # the one tiny epoch


def every_option(name: str) -> dict:
    """name's model options, stage-3 training options and (RAMER) retrieval options, each
    at its default (a value the model must accept), training cut to one epoch."""
    opts = {f.name: getattr(model_class(name).Config(), f.name) for f in dataclasses.fields(model_class(name).Config)}
    train = {k: getattr(TrainConfig(), k) for k in TRAIN_KEYS if k not in opts}
    if name == "ramer":
        opts = {**opts, **{f.name: getattr(RetrievalConfig(), f.name) for f in dataclasses.fields(RetrievalConfig)
                           if f.name not in NOT_OPTIONS}}
    return {**opts, **train, **TINY}


def cli_string(name: str, opts: dict, suffix: str = "") -> str:
    return f"{name}({','.join(f'{k}={option_text(v)}' for k, v in opts.items())}){suffix}"


def toml_table(name: str, opts: dict, strategy: str | None = None) -> str:
    def value(v):
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (tuple, list)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return f'"{v}"' if isinstance(v, str) else repr(v)

    lines = ["[[systems]]", f'model = "{name}"', *(f"{k} = {value(v)}" for k, v in opts.items())]
    return "\n".join(lines + ([f'strategy = "{strategy}"'] if strategy else [])) + "\n"


def same_system(a, b) -> bool:
    """Equal specs apart from the row name the user wrote."""
    strip = lambda s: dataclasses.replace(s, label="", candidates=tuple(strip(c) for c in s.candidates))
    return strip(a) == strip(b)


@pytest.mark.parametrize("name", list_models())
def test_every_option_parses_the_same_from_the_string_and_toml(name, tmp_path):
    opts = every_option(name)
    text = cli_string(name, opts)
    spec = parse_system(text, RetrievalConfig())
    backwards = parse_system(cli_string(name, dict(reversed(list(opts.items())))), RetrievalConfig())
    assert same_system(spec, backwards) and spec.key == backwards.key == canonical(text)
    assert spec.slug == backwards.slug  # one seed ('init-<slug>') and one checkpoint
    path = tmp_path / "s.toml"
    path.write_text(toml_table(name, opts))
    (from_toml,) = experiment_systems(load_experiment(path, dataset="x"))
    assert same_system(from_toml, spec) and from_toml.key == spec.key
    model_opts = {f.name for f in dataclasses.fields(model_class(name).Config)}
    given = {**spec.overrides, "retrieval": spec.use_retrieval} if name == "ramer" else spec.overrides
    assert model_config(name, **{k: v for k, v in given.items() if k in model_opts}) == model_class(name).Config()
    assert {k: spec.train[k] for k in spec.train} == {k: opts[k] for k in spec.train}
    assert set(spec.train) == TRAIN_KEYS - model_opts


@pytest.mark.parametrize("name", [n for n in list_models() if model_class(n).fit_direct is None])
def test_every_m3s_option_parses_under_the_strategy(name):
    m3s = {f.name: getattr(M3SConfig(), f.name) for f in dataclasses.fields(M3SConfig) if f.name in M3S_KEYS}
    m3s["outer_lr"] = 1e-4  # None is not a value a string can carry
    spec = parse_system(cli_string(name, m3s, "+m3s"), RetrievalConfig())
    assert spec.strategy == "m3s" and spec.m3s == m3s


def test_option_order_and_spaces_do_not_change_the_key():
    a = parse_system("ramer(k=5,metric=euclidean)+m3s", RetrievalConfig())
    b = parse_system("ramer(metric=euclidean, k=5) + m3s", RetrievalConfig())
    assert a.key == b.key and a.slug == b.slug and same_system(a, b)
    assert parse_system("ramer", RetrievalConfig()).slug == "ramer"  # plain names keep their files


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("opts")
    ds = write_synthetic(tmp / "d", SynthConfig(labeled=120, unlabeled=60, dims={"audio": 8, "visual": 6, "text": 7},
                                                 seed=3))
    path = tmp / "every.toml"
    path.write_text("".join(toml_table(n, every_option(n)) for n in list_models()))
    cfg = load_experiment(path, dataset=str(ds.root), experiment="every", folds=[0], runs=1, ingest=False,
                          **{"pretrain.epochs": 1})
    st = Settings(data_dir=tmp, results_dir=tmp / "results", runs_dir=tmp / "runs")
    write_results(protocol.run_experiment(cfg, st), cfg, st)
    return tmp / "results" / "every"


def test_every_system_with_every_option_trains_one_tiny_epoch(tiny_experiment):
    table = pq.read_table(tiny_experiment / "metrics.parquet")
    models = set(table.column("model").to_pylist())
    assert models == set(list_models())
    assert np.isfinite(np.array(table.column("value").to_pylist())).all()


def test_metrics_carry_what_the_system_is(tiny_experiment):
    table = pq.read_table(tiny_experiment / "metrics.parquet")
    assert {"model", "strategy", "train_range", "base", "missing"} <= set(table.column_names)
    rows = table.to_pylist()
    assert {r["strategy"] for r in rows} == {"none"}
    assert {r["condition"] for r in rows if not r["missing"]} == {"avl"}



def test_a_long_key_makes_a_short_file_name():
    a = parse_system(cli_string("carat", every_option("carat")), RetrievalConfig())
    b = parse_system(cli_string("carat", {**every_option("carat"), "lr": 0.002}), RetrievalConfig())
    assert len(a.slug) <= 120 and a.slug != b.slug


def test_report_refuses_metrics_without_the_columns_and_writes_nothing(tiny_experiment, tmp_path):
    """A metrics.parquet lacking columns reports read is refused with one error naming the
    file and the columns; the folder's report stays as it was."""
    import shutil

    from pipeline.experiment.results import report_folder

    old = tmp_path / "every"
    shutil.copytree(tiny_experiment, old)
    full = pq.read_table(old / "metrics.parquet")
    pq.write_table(full.drop_columns(["model", "missing"]), old / "metrics.parquet")
    before = (old / "report.md").read_bytes()
    with pytest.raises(RamerError, match=r"every/metrics\.parquet: no model, missing column\(s\).*rerun"):
        report_folder(old)
    assert (old / "report.md").read_bytes() == before
