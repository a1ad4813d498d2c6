"""The experiment commands' shared options and the terminal summary's numbers."""

from __future__ import annotations

import inspect

import pyarrow as pa
import pytest

from pipeline.cli import experiment
from pipeline.cli.options import ExperimentOptions, build_config
from pipeline.evaluation.summary import display_scale, summarise_experiment


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        ExperimentOptions(None, "data/x")  # type: ignore[misc]
    with pytest.raises(TypeError):
        build_config(None, "data/x")  # type: ignore[call-arg]


def test_every_experiment_command_parameter_is_an_option_field() -> None:
    fields = set(ExperimentOptions.__dataclass_fields__)
    for command in (experiment.run, experiment.sweep, experiment.pretrain, experiment.index,
                    experiment.train, experiment.evaluate):
        assert set(inspect.signature(command).parameters) <= fields, command.__name__


def test_summary_averages_the_missing_conditions_only() -> None:
    rows = [  # (system, fold, condition, metric, value); 'av' is the full condition
        ("ramer", 0, "a", "WA", 0.6), ("ramer", 1, "a", "WA", 0.8), ("ramer", 0, "v", "WA", 0.4),
        ("ramer", 0, "av", "WA", 0.9), ("ramer", 0, "a", "UA", 0.5), ("ramer", 0, "v", "UA", 0.3),
        ("mmin", 0, "a", "WA", 0.5), ("mmin", 0, "a", "UA", 0.2),
    ]
    cols = dict(zip(("system", "fold", "condition", "metric", "value"), map(list, zip(*rows))))
    missing = [c != "av" for c in cols["condition"]]
    summ = summarise_experiment(pa.table({**cols, "run": [0] * len(rows), "missing": missing}))
    assert summ.metrics == ("WA", "UA") and summ.conditions == ["a", "v", "av"] and summ.averaged == ["a", "v"]
    ramer, mmin = summ.rows
    assert (ramer.system, mmin.system) == ("ramer", "mmin")
    assert ramer.by_condition == pytest.approx({"a": 0.7, "v": 0.4, "av": 0.9})
    assert ramer.averages == pytest.approx({"WA": 0.55, "UA": 0.4})
    assert mmin.by_condition == pytest.approx({"a": 0.5}) and mmin.averages == pytest.approx({"WA": 0.5, "UA": 0.2})
    assert (display_scale("WA"), display_scale("MAE")) == (100, 1)
