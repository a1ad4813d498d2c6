"""An experiment's options checked against what exists, before any work is done or any
folder written: one RamerError naming the option, the value and the valid choices.

Without these checks a bad value surfaced minutes later, deep in a stage, as a
traceback (`--scale huge` inside the scale mask, `--runs 0` as an IndexError) after
`runs/<experiment>/` had been created.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence

from pipeline.config import check_name
from pipeline.data.preprocess import MODES as PREPROCESS_MODES
from pipeline.data.scales import SCALES
from pipeline.data.spans import SPAN_OVER
from pipeline.errors import RamerError
from pipeline.retrieval.faiss_index import METRICS
from pipeline.retrieval.fill import RULES
from pipeline.training.config import ExperimentConfig, RetrievalConfig
from pipeline.training.schema import check_dataclass, check_options
from pipeline.training.systems import AUTO_CHOICES, SystemSpec

DB_SOURCES = ("hidden", "raw", "multimodal")
DEVICES = "auto, cpu, cuda or cuda:N"


def _choice(option: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise RamerError(f"{option} '{value}': choose one of {', '.join(choices)}")


def _at_least(option: str, value: int, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise RamerError(f"{option} {value!r}: must be an integer >= {low}")


def check_device(device: str) -> None:
    """auto | cpu | cuda | cuda:N, and a CUDA device only where torch sees one."""
    import torch

    dev = device.strip().lower()
    if dev in ("auto", "cpu"):
        return
    if not re.fullmatch(r"cuda(:\d+)?", dev):
        raise RamerError(f"--device '{device}': choose one of {DEVICES}")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(dev.split(":")[1]) if ":" in dev else 0
    if index >= n:
        seen = f"GPUs 0..{n - 1}" if n else "no GPU"
        raise RamerError(f"--device '{device}': torch sees {seen} (use --device auto or cpu)")


def check_retrieval(where: str, r: RetrievalConfig) -> None:
    _at_least(f"{where} k", r.k, 1)
    _at_least(f"{where} refresh_every", r.refresh_every, 0)
    _choice(f"{where} scale", r.scale, SCALES)
    _choice(f"{where} metric", r.metric, METRICS)
    _choice(f"{where} two_rule", r.two_rule, RULES)
    _choice(f"{where} db_source", r.db_source, DB_SOURCES)
    for key, values in AUTO_CHOICES.items():
        _choice(f"{where} {key}", getattr(r, key), (*values, "auto"))


def check_system(system: SystemSpec) -> None:
    """A system's own overrides: retrieval options, model Config fields, training and
    M3S options, each by the type and range of its field (of every variant of a
    selection system such as 'ramer(k=5|10)')."""
    from pipeline.models.registry import model_class, model_config
    from pipeline.training.strategies import M3SConfig
    from pipeline.training.trainer import TrainConfig

    for variant in system.candidates:
        check_system(variant)
    where = f"system '{system.label}'"
    if system.retrieval is not None:
        check_dataclass(RetrievalConfig, dataclasses.asdict(system.retrieval), where)
        check_retrieval(f"{where}:", system.retrieval)
    model_config(system.model, **system.overrides)  # unknown option -> one line listing them
    check_options(model_class(system.model).Config, system.overrides, where)
    check_heads(where, {**dataclasses.asdict(model_class(system.model).Config()), **system.overrides})
    check_options(TrainConfig, system.train, where)
    check_options(M3SConfig, system.m3s, where)
    for key in ("epochs", "batch_size", "patience"):
        if key in system.train:
            _at_least(f"system '{system.label}': {key}", system.train[key], 1)
    check_optimiser(f"system '{system.label}':", system.train)


def check_heads(where: str, options: dict) -> None:
    """A Transformer's width splits evenly over its heads (d_model 0: the input width,
    which `encoder_width` checks against the data)."""
    d_model, heads = options.get("d_model"), options.get("heads")
    if isinstance(d_model, int) and isinstance(heads, int) and d_model > 0 and heads > 0 and d_model % heads:
        raise RamerError(f"{where}: d_model = {d_model} is not divisible by heads = {heads}")


def check_neighbours(systems: Sequence[SystemSpec], fewest: Callable[[str], int]) -> None:
    """Every K (RAMER's retrieval k, lr-knn's k) within the candidates its DB scale has on
    the smallest fold (`fewest(scale)`): a larger K would allocate for neighbours that do
    not exist ([retrieval] k = 100000 asked for 19 GiB)."""
    for system in systems:
        check_neighbours(system.candidates, fewest)
        if system.retrieval is not None and system.retrieval.k > (n := fewest(system.retrieval.scale)):
            raise RamerError(f"system '{system.label}': k = {system.retrieval.k} is more than the {n} candidates "
                             f"of DB scale '{system.retrieval.scale}' on the smallest fold")
        k = system.overrides.get("k")
        if isinstance(k, int) and k > (n := fewest("turbo")):
            raise RamerError(f"system '{system.label}': k = {k} is more than the {n} candidates on the smallest fold")


def check_optimiser(where: str, train: dict) -> None:
    """The optimiser and schedule names of a TrainConfig (or a system's overrides of one)."""
    from pipeline.training.trainer import OPTIMIZERS, SCHEDULES

    if "optimizer" in train:
        _choice(f"{where} optimizer", train["optimizer"], OPTIMIZERS)
    if "schedule" in train:
        _choice(f"{where} schedule", train["schedule"], SCHEDULES)


def validate_experiment(cfg: ExperimentConfig, n_folds: int, modalities: Sequence[str],
                        systems: Sequence[SystemSpec], device: str) -> None:
    """Every option of `cfg` (its parsed systems, the device it resolves to) against the
    dataset it runs on."""
    check_name("--experiment", cfg.experiment)
    _at_least("--runs", cfg.runs, 1)
    _at_least("--epochs", cfg.train.epochs, 1)
    _at_least("--pretrain-epochs", cfg.pretrain.epochs, 1)
    _at_least("train.batch_size", cfg.train.batch_size, 1)
    _at_least("pretrain.batch_size", cfg.pretrain.batch_size, 1)
    check_device(device)
    for stage in ("pretrain", "train"):
        t = getattr(cfg, stage)
        check_optimiser(stage, {"optimizer": t.optimizer, "schedule": t.schedule})
    check_retrieval("retrieval", cfg.retrieval)
    _choice("span_over", cfg.span_over, SPAN_OVER)
    _choice("preprocess", cfg.preprocess, PREPROCESS_MODES)
    check_heads("encoder", dataclasses.asdict(cfg.encoder))
    if not cfg.precision_ks or not all(isinstance(k, int) and k >= 1 for k in cfg.precision_ks):
        raise RamerError(f"precision_ks {cfg.precision_ks}: give integers >= 1")
    unknown = sorted(set(cfg.modality_missing_rate) - set(modalities))
    if unknown:
        raise RamerError(f"modality_missing_rate: {unknown} are not modalities of the dataset ({', '.join(modalities)})")
    folds = cfg.folds if cfg.folds is not None else list(range(n_folds))
    bad = [f for f in folds if not (isinstance(f, int) and 0 <= f < n_folds)]
    if bad or not folds:
        raise RamerError(f"--folds {bad or folds}: {cfg.dataset} has folds 0..{n_folds - 1}")
    if not systems:
        raise RamerError("--systems: give at least one system")
    check_distinct(systems)
    for s in systems:
        check_system(s)


def check_distinct(systems: Sequence[SystemSpec]) -> None:
    """Two strings of one system ('ramer(k=5,metric=cosine)', 'ramer(metric=cosine, k=5)'),
    or one listed twice ('ramer,ramer'), would share a seed and a checkpoint: refused."""
    seen: dict[str, str] = {}
    for s in systems:
        key = s.key or s.label
        if key in seen:
            same = f"'{s.label}' is listed twice" if seen[key] == s.label else \
                f"'{seen[key]}' and '{s.label}' are one system ({key})"
            raise RamerError(f"--systems: {same}; list it once")
        seen[key] = s.label
