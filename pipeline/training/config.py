"""The experiment config: typed, layered (defaults < preset < TOML file < CLI flags), saved
with results (the preset's name included)."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import RamerError
from pipeline.models.encoders import EncoderConfig
from pipeline.training.schema import check_dataclass
from pipeline.training.strategies import M3SConfig
from pipeline.training.trainer import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class RetrievalConfig:
    k: int = 10  # neighbours fused per missing modality (paper: 10)
    metric: str = "cosine"  # cosine | euclidean
    db_source: str = "hidden"  # hidden (unimodal h_s) | raw (projected F_s) | multimodal (fused-pretrained h_s)
    scale: str = "turbo"  # small | medium | large | turbo (see pipeline.data.scales)
    two_rule: str = "kth-score"  # kth-score | both: which neighbours fill when 2 modalities remain
    finetune_encoders: bool = False  # False: frozen stage-1 encoders, cached retrieval
    # Fine-tuned encoders only: a training row's neighbour list, searched with its current
    # h, is reused for this many epochs (1 = searched afresh in every batch, the paper's
    # live retrieval and `--preset paper`'s; 0 = never searched again once it exists).
    # Validation and test always search with the current encoders. 0 halves the search
    # and scored as well or better on validation (synthetic and mfeat, docs/performance.md).
    refresh_every: int = 0
    # What the available modality queries its DB with: its hidden h (the paper) or its
    # stage-0 scaled input features ("features"); the fills are hidden vectors either way.
    query_space: str = "auto"  # hidden | features | auto
    # The length of a fill: "unit" (the paper: sum, then L2-normalise) or "stored" (that
    # direction at the mean length of the modality's stored candidate vectors, so a filled
    # slot is on the scale of a real one: real h's are far from unit length).
    fill_norm: str = "auto"  # unit | stored | auto
    # How the K neighbours' vectors make one fill: "sum-l2" (the paper: summed, then
    # L2-normalised) or "weighted" (each weighted by its similarity, standardised within
    # the row, before the same sum: `pipeline.retrieval.fill.weighted_weights`).
    fusion: str = "sum-l2"  # sum-l2 | weighted
    # "auto": every value is trained and the one with the best validation score of each
    # (fold, run) is used there (nested selection, `FoldRun.chosen`): which is better
    # depends on the data (features + stored on UCI mfeat, hidden + unit on synthetic).
    # DIAGNOSTIC ONLY - departures of the published code from the honest protocol, to
    # measure what they inflate (systems.LEAK_KINDS). Set only by a 'leaky[KIND]:ramer'
    # system, never by a config file or flag.
    leaks: tuple[str, ...] = ()


@dataclass
class ExperimentConfig:
    experiment: str = "default"  # results/<experiment>, runs/<experiment>, collection names
    dataset: str = ""  # dataset directory
    folds: list[int] | None = None  # None = every fold of the dataset
    runs: int = 3  # runs per fold (paper: 5-fold CV x 3)
    seed: int = 0  # base seed; per-(fold, run, stage) seeds derive from it
    # the linear references lr / lr-knn are in every default run: a deep system must beat them
    systems: list[str] = field(default_factory=lambda: ["ramer", "w/o retrieval", "lr", "lr-knn"])
    precision_ks: list[int] = field(default_factory=lambda: [1, 5, 10, 15])
    ingest: bool = True  # write hidden features to the Qdrant store of record
    # stage 0 (pipeline.data.preprocess): per-modality scaling fitted per (fold, run) on
    # train rows + the unlabeled pool; standard | robust | none
    preprocess: str = "standard"
    device: str = "auto"
    pretrain: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, patience=8))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, patience=10))
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    # Partial (span) missing data, M3S (pipeline.training.strategies). "none" = the papers'
    # whole-modality conditions; else a comma list of orig, spl-trn, m3s: every system is
    # trained once per strategy ('mmin+m3s') and tested on span-missing inputs.
    strategy: str = "none"
    # A range [lo, hi] or several [[lo, hi], ...]: several training ranges train every
    # system once per range ('mmin+m3s@20-40'); several test ranges score each model on all.
    missing_rate: list = field(default_factory=lambda: [0.4, 0.6])  # training span-rate range(s)
    test_missing_rate: list | None = None  # test range(s); None = the training range(s)
    modality_missing_rate: dict[str, list[float]] = field(default_factory=dict)  # per-modality training ranges
    # Where a span falls: "auto" = over the frames of a modality the dataset keeps them for
    # (`--keep-sequences`; the M3S paper), else over its utterance vector's dims | "dims"
    span_over: str = "auto"
    m3s: M3SConfig = field(default_factory=M3SConfig)
    # A named layer of settings under the TOML file (pipeline.training.presets): none | paper
    preset: str = "none"
    # Per registry name (or strategy suffix '+m3s'): stage-3 training, model and M3S
    # options of that method's systems, e.g. [models.carat] lr = 5e-5; a system's own
    # options ('carat(lr=...)') beat them
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")


def _merge(obj: Any, values: dict[str, Any], where: str) -> Any:
    """Return a copy of dataclass `obj` updated from a nested dict; unknown keys are errors."""
    fields = {f.name: f for f in dataclasses.fields(obj)}
    updates = {}
    for key, val in values.items():
        if key not in fields:
            raise RamerError(f"{where}: unknown option '{key}' (known: {', '.join(sorted(fields))})")
        cur = getattr(obj, key)
        if dataclasses.is_dataclass(cur) and isinstance(val, dict):
            updates[key] = _merge(cur, val, f"{where} [{key}]" if " [" not in where else f"{where[:-1]}.{key}]")
        elif isinstance(cur, tuple) and isinstance(val, list):
            updates[key] = tuple(val)
        else:
            updates[key] = val
    return dataclasses.replace(obj, **updates)


def _read_toml(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise RamerError(f"{p}: config file not found")
    try:
        text = p.read_bytes().decode("utf-8-sig")  # a UTF-8 byte-order mark is fine
    except UnicodeDecodeError as exc:
        raise RamerError(f"{p}: not UTF-8 text (byte {exc.start}); save the config file as UTF-8") from None
    except OSError as exc:
        raise RamerError(f"{p}: cannot read the config file ({exc.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RamerError(f"{p}: invalid TOML ({exc})") from None


def _nest(overrides: dict[str, Any]) -> dict[str, Any]:
    """Non-None dotted overrides ('train.epochs': 3) as a nested table."""
    nested: dict[str, Any] = {}
    for key, val in overrides.items():
        if val is None:
            continue
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = val
    return nested


def resolve_layers(path: str | Path | None = None, preset: str | None = None, **overrides: Any) -> ExperimentConfig:
    """Defaults < preset < TOML file < non-None overrides (flags; dotted keys allowed:
    'train.epochs'). The preset is the flag's, else the file's `preset`, else none. A
    preset's per-model option yields to the same option set for every system above it."""
    from pipeline.training.presets import (
        check_models,
        dotted,
        get_preset,
        merge_models,
        per_system_keys,
        without_keys,
    )

    where = str(path) if path is not None else "config"
    data = _read_toml(path)
    if isinstance(data.get("systems"), list):  # [[systems]] tables -> the strings they stand for
        from pipeline.training.systems import system_text

        data["systems"] = [system_text(t, f"{where} [[systems]] #{i + 1}") if isinstance(t, dict) else t
                           for i, t in enumerate(data["systems"])]
    flags = _nest(overrides)
    name = preset if preset is not None else data.get("preset", "none")
    if not isinstance(name, str):
        raise RamerError(f"{where}: preset must be a name, not {name!r}")
    table = get_preset(name)
    file_models, flag_models = data.pop("models", {}), flags.pop("models", {})
    if not isinstance(file_models, dict) or not all(isinstance(v, dict) for v in file_models.values()):
        raise RamerError(f"{where}: models must be tables of options per model ([models.NAME])")
    cfg = _merge(ExperimentConfig(), table["experiment"], f"preset '{name}'")
    cfg = _merge(cfg, {k: v for k, v in data.items() if k != "preset"}, where)
    cfg = _merge(cfg, flags, "command line")
    file_keys, flag_keys = per_system_keys(set(dotted(data))), per_system_keys(set(dotted(flags)))
    models = without_keys(table["models"], file_keys | flag_keys)
    models = merge_models(models, without_keys(file_models, flag_keys))
    models = merge_models(models, flag_models)
    check_models(models, where)
    cfg = dataclasses.replace(cfg, preset=name, models=models)
    check_dataclass(ExperimentConfig, dataclasses.asdict(cfg),
                    _layer_of({"command line": set(dotted(flags)), where: set(dotted(data))}, f"preset '{name}'"))
    return cfg


# The flags that set a config key (pipeline.cli.options); any other key: --<key with dashes>
FLAGS = {"train.epochs": "--epochs", "pretrain.epochs": "--pretrain-epochs", "retrieval.k": "--k",
         "retrieval.scale": "--scale", "retrieval.finetune_encoders": "--finetune", "ingest": "--no-ingest"}


def _layer_of(layers: dict[str, set[str]], rest: str):
    """(dotted key, value) -> 'SOURCE: key = value' naming the first layer that set the
    key (or a part of it), else `rest`; a flag is named as typed: '--epochs 0'."""
    def name(key: str, value: Any) -> str:
        for layer, keys in layers.items():
            if any(key == k or key.startswith((f"{k}.", f"{k}[")) or k.startswith(f"{key}.") for k in keys):
                if layer == "command line":
                    top = key.split("[")[0]
                    return f"{FLAGS.get(top, '--' + top.replace('_', '-'))} {value}"
                return f"{layer}: {key} = {value!r}"
        return f"{rest}: {key} = {value!r}"

    return name


def load_experiment(path: str | Path | None = None, preset: str | None = None, **overrides: Any) -> ExperimentConfig:
    """The config of a new experiment (`resolve_layers`), checked for diagnostics-only options."""
    cfg = resolve_layers(path, preset, **overrides)
    if cfg.retrieval.leaks:
        raise RamerError("retrieval.leaks are diagnostics: add a 'leaky[KIND]:SYSTEM' system instead, "
                         "so every report labels the leaky row as such")
    return cfg


def experiment_from_dict(data: dict[str, Any], where: str = "saved config") -> ExperimentConfig:
    """Rebuild a config saved with `ExperimentConfig.save` (e.g. runs/<experiment>/config.json)."""
    try:
        cfg = _merge(ExperimentConfig(), data, where)
        check_dataclass(ExperimentConfig, dataclasses.asdict(cfg), where)
    except RamerError as exc:
        raise RamerError(f"{exc} (a damaged saved config: start the experiment over with --fresh)") from None
    return cfg
