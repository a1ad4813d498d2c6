"""Presets: named, typed layers of settings between the defaults and a config file.

    defaults < preset < TOML file < command-line flags < a system's own options

`paper` sets, per method, what its paper specifies, and where the paper is silent what
its reference code does (docs/paper.md lists every value, its source, and what stays
different). A preset has two parts:
- `experiment`: ExperimentConfig fields (nested like the TOML file): the RAMER paper's
  protocol, which every system shares (stage 1, the DB, the stage-3 defaults);
- `models`: per registry name (or strategy suffix '+m3s'), stage-3 training options
  (`systems.TRAIN_KEYS`), model Config options and M3S options of that method only.
A preset's per-model value yields to the same option set for every system by the TOML
file or a flag (`--epochs 2` also shortens CARAT's 20 paper epochs).

Reports compare each system's resolved settings with the `paper` preset and state the
differences under their tables (`paper_differences`), generated from these tables.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pipeline.errors import RamerError

# The RAMER reference code trains with the MMIN framework's Adam (lr 2e-4, beta1 0.5, no
# weight decay) and clips gradients at 1.0; the paper names no optimiser.
_REFERENCE_ADAM = {"optimizer": "adam", "lr": 2e-4, "beta1": 0.5, "weight_decay": 0.0, "clip": 1.0}
# The paper: 40 epochs per fold, the best validation epoch kept (no early stop), batch 128.
# An epoch is one pass at any data size (TrainConfig.min_epoch_steps), as the paper's.
_RAMER_TRAIN = {"epochs": 40, "patience": 40, "batch_size": 128, "min_epoch_steps": 1, **_REFERENCE_ADAM}

PAPER = {
    "experiment": {
        # the paper: the small DB, top-10, cosine over unimodal hidden features, queried
        # with the available modality's h, fills summed then L2-normalised; the encoders
        # loaded from stage 1 and trained on; two available modalities: the reference's rule
        "retrieval": {"scale": "small", "k": 10, "metric": "cosine", "db_source": "hidden",
                      "query_space": "hidden", "fill_norm": "unit", "two_rule": "kth-score", "fusion": "sum-l2",
                      "finetune_encoders": True, "refresh_every": 1},
        # the reference code's pretrain model: 2 post-norm layers at the input width,
        # 8 heads, feed-forward 2048, dropout 0.5, h of 256, classifier [256, 128]
        "encoder": {"d_model": 0, "layers": 2, "heads": 8, "ff": 2048, "hidden": 256, "dropout": 0.5,
                    "classifier": [256, 128], "norm_first": False},
        "pretrain": dict(_RAMER_TRAIN),
        "train": dict(_RAMER_TRAIN),
        "m3s": {"inner_lr": 2e-4, "outer_lr": 1e-4},  # M3S paper, MMIN: alpha 2e-4, beta 1e-4
    },
    "models": {
        # MMIN's script: Adam 2e-4 (beta1 0.5), clip 1.0, flat then linear decay to 0
        # (niter = niter_decay); epochs: the RAMER paper's 40 for every Table-3 system
        "mmin": {**_REFERENCE_ADAM, "schedule": "linear-decay"},
        "if-mmin": {**_REFERENCE_ADAM, "schedule": "linear-decay", "mse_weight": 1.0},  # its script: 1, not MMIN's 4
        "cif-mmin": {**_REFERENCE_ADAM, "schedule": "linear-decay", "pair_weights": [0.25, 0.25, 0.5]},
        # CARAT: Adam 5e-5, warm-up + linear decay, batch 64, 20 epochs (best validation
        # micro-F1), d 256, queue 8192, eq. 15 as written (no final BCE, nothing detached)
        "carat": {"optimizer": "adam", "lr": 5e-5, "beta1": 0.9, "weight_decay": 0.0, "schedule": "warmup-linear",
                  "batch_size": 64, "epochs": 20, "patience": 20, "d_model": 256, "layers": 4, "text_layers": 6, "queue": 8192,
                  "anchors": 0, "w_final": 0.0, "detach_losses": False},
        # M3S paper, MMIN: batch 256, 60 epochs, Adam (alpha, beta in experiment.m3s)
        "+m3s": {"optimizer": "adam", "batch_size": 256, "epochs": 60, "patience": 60},
    },
}
PRESETS: dict[str, dict] = {"none": {"experiment": {}, "models": {}}, "paper": PAPER}
# Systems whose settings a paper specifies (the report's differences line); the linear
# references and NMER (no preset: its paper is known here from a summary only) have none.
PAPER_METHODS = ("ramer", "ae", "cra", "mmin", "if-mmin", "cif-mmin", "carat")
STAGE1_SECTIONS = ("retrieval", "encoder")  # apply to systems built on stage 1 only
# `pretrain` applies to them and to the MMIN family's teacher phase


def get_preset(name: str) -> dict:
    if name not in PRESETS:
        raise RamerError(f"unknown preset '{name}'; available: {', '.join(PRESETS)}")
    return PRESETS[name]


def model_option_keys(key: str) -> set[str]:
    """What a `models` entry may set: a model's Config fields + training (+ M3S) options;
    for a strategy suffix ('+m3s') the training and M3S options."""
    from pipeline.models.registry import list_models, model_class
    from pipeline.training.strategies import STRATEGIES, config_fields
    from pipeline.training.systems import M3S_KEYS, TRAIN_KEYS

    if key.startswith("+"):
        if key[1:] not in STRATEGIES:
            raise RamerError(f"models: unknown strategy '{key}'; use one of {', '.join('+' + s for s in STRATEGIES)}")
        return TRAIN_KEYS | M3S_KEYS
    if key not in list_models():
        raise RamerError(f"models: unknown model '{key}'; available: {', '.join(list_models())}")
    return config_fields(model_class(key)) | TRAIN_KEYS | M3S_KEYS


def check_models(models: dict[str, dict], where: str) -> None:
    """Every entry names a model (or strategy) and only options it has."""
    for key, entry in models.items():
        if not isinstance(entry, dict):
            raise RamerError(f"{where}: models.{key} must be a table of options")
        known = model_option_keys(key)
        bad = sorted(set(entry) - known)
        if bad:
            raise RamerError(f"{where}: models.{key} has no option(s) {bad}; options: {', '.join(sorted(known))}")


def merge_models(low: dict[str, dict], high: dict[str, dict]) -> dict[str, dict]:
    """Per model, per option: `high` wins."""
    out = {k: dict(v) for k, v in low.items()}
    for key, entry in high.items():
        out[key] = {**out.get(key, {}), **entry}
    return out


def without_keys(models: dict[str, dict], keys: set[str]) -> dict[str, dict]:
    """`models` with the options in `keys` removed (they were set for every system)."""
    return {k: {o: v for o, v in e.items() if o not in keys} for k, e in models.items()}


def per_system_keys(dotted: set[str]) -> set[str]:
    """The models-entry options that experiment-level dotted keys set for every system:
    'train.epochs' -> 'epochs', 'm3s.outer_lr' -> 'outer_lr'."""
    return {k.split(".", 1)[1] for k in dotted if k.startswith(("train.", "m3s."))}


def dotted(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested table flattened to dotted keys: {'train': {'lr': 1}} -> {'train.lr': 1}."""
    out: dict[str, Any] = {}
    for key, val in data.items():
        if isinstance(val, dict) and key != "models":
            out.update(dotted(val, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = val
    return out


# ------------------------------------------------------------------ differences


def system_settings(cfg: Any, system: Any, keys: list[str]) -> dict[str, Any]:
    """The value of each dotted key a system of `cfg` trains with: its own options first,
    then the `models` entries of its strategy and model, then the experiment's."""
    from pipeline.models.registry import model_config

    entries = [cfg.models.get(f"+{system.strategy}", {}), cfg.models.get(system.model, {})]
    out = {}
    for key in keys:
        section, _, leaf = key.partition(".")
        if section == "model":
            own = system.overrides
            if leaf in own:
                out[key] = own[leaf]
            else:
                merged = {k: v for e in reversed(entries) for k, v in e.items()}
                out[key] = merged.get(leaf, getattr(model_config(system.model), leaf))
        elif section in ("train", "m3s"):
            own = system.train if section == "train" else system.m3s
            found = [e[leaf] for e in entries if leaf in e]
            out[key] = own.get(leaf, found[0] if found else getattr(getattr(cfg, section), leaf))
        elif section == "retrieval":
            out[key] = getattr(system.retrieval or cfg.retrieval, leaf)
        else:
            out[key] = getattr(getattr(cfg, section), leaf)
    return out


def _keys_for(system: Any, preset: dict) -> list[str]:
    """The dotted keys the preset sets that bear on this system."""
    from pipeline.models.registry import model_class
    from pipeline.training.systems import M3S_KEYS, TRAIN_KEYS

    cls = model_class(system.model)
    stage1 = cls.uses_stage1_encoders
    sections = {"train", "m3s"} if system.strategy == "m3s" else {"train"}
    sections |= set(STAGE1_SECTIONS) if stage1 else set()
    sections |= {"pretrain"} if stage1 or cls.has_teacher_phase else set()
    keys = [k for k in dotted(preset["experiment"]) if k.split(".")[0] in sections]
    for entry in (preset["models"].get(system.model, {}), preset["models"].get(f"+{system.strategy}", {})):
        for opt in entry:
            sec = "train" if opt in TRAIN_KEYS else "m3s" if opt in M3S_KEYS else "model"
            if f"{sec}.{opt}" not in keys and (sec != "m3s" or system.strategy == "m3s"):
                keys.append(f"{sec}.{opt}")
    return keys


def _same(key: str, a: Any, b: Any) -> bool:
    from pipeline.data.scales import canonical_scale

    if key == "retrieval.scale":
        return canonical_scale(a) == canonical_scale(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return str(v)


def paper_differences(cfg: Any, system: Any, preset: str = "paper") -> list[tuple[str, Any, Any]]:
    """(setting, value here, the paper's value) for every setting of `system` that the
    preset specifies and this run does not use; [] for systems no paper specifies."""
    if system.model not in PAPER_METHODS:
        return []
    from pipeline.training.config import resolve_layers
    from pipeline.training.systems import parse_system

    table = get_preset(preset)
    keys = _keys_for(system, table)
    paper_cfg = resolve_layers(preset=preset)
    bare = parse_system(system.model if system.strategy == "none" else f"{system.model}+{system.strategy}",
                        paper_cfg.retrieval, paper_cfg.models)
    mine, paper = system_settings(cfg, system, keys), system_settings(paper_cfg, bare, keys)
    if mine.get("retrieval.finetune_encoders") is False:  # frozen encoders: lists are never refreshed
        keys = [k for k in keys if k != "retrieval.refresh_every"]
    return [(k, mine[k], paper[k]) for k in keys if not _same(k, mine[k], paper[k])]


def differences_line(labels: str | list[str], diffs: list[tuple[str, Any, Any]]) -> str:
    """'- `ramer`, `w/o retrieval`: differs from the paper in: retrieval.scale turbo (paper small), ...'"""
    labels = [labels] if isinstance(labels, str) else labels
    body = ", ".join(f"{k} {_show(a)} (paper {_show(b)})" for k, a, b in diffs)
    return "- " + ", ".join(f"`{label}`" for label in labels) + f": differs from the paper in: {body}"


def field_paths(obj: Any, prefix: str = "") -> set[str]:
    """Every dotted field of a (nested) dataclass instance: what a preset may set."""
    out = set()
    for f in dataclasses.fields(obj):
        val = getattr(obj, f.name)
        if dataclasses.is_dataclass(val):
            out |= field_paths(val, f"{prefix}{f.name}.")
        else:
            out.add(f"{prefix}{f.name}")
    return out
