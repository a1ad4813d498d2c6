"""Systems compared in a run: RAMER, its ablations, and any registered baseline.

A system is named by a string:
    ramer                      RAMER with the experiment's retrieval settings
    w/o retrieval              the same model, missing slots keep h^miss
    ramer(k=5,metric=euclidean)  RAMER with retrieval settings overridden
    ramer(k=5|10|15)           a selection: every variant trained, one chosen per (fold, run)
                               on that unit's validation split (nested; never another fold's)
    carat(lr=0.0003,epochs=60) a model with stage-3 training options overridden (lr, epochs,
                               batch_size, weight_decay, patience); other keys: its Config
    mmin(inner_lr=0.01)+m3s    ... or M3S options (inner_lr, outer_lr, inner_steps, second_order)
    mmin, ae, cra, ...         any registered model, trained by the generic trainer
    mmin+m3s, ramer+orig       ... trained under a span-missing strategy (orig | spl-trn | m3s)
    mmin+m3s@20-40             ... at that training span-rate range (else the experiment's)
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import RamerError
from pipeline.models.registry import list_models
from pipeline.training.config import RetrievalConfig

# Stage-3 training options a system may override, e.g. 'carat(lr=0.0003,epochs=60)' (the
# seed stays derived from the system's name, so it is never an override).
TRAIN_KEYS = {"epochs", "batch_size", "lr", "weight_decay", "patience", "optimizer", "beta1", "schedule",
              "warmup", "clip"}
M3S_KEYS = {"inner_lr", "outer_lr", "inner_steps", "second_order"}  # with a +m3s strategy only
_CALL = re.compile(r"^(?P<name>[\w\-/ .]+?)\s*(\((?P<args>.*)\))?$")


@dataclass(frozen=True)
class System:
    label: str  # as written by the user; the report's row name
    model: str  # registry name
    retrieval: RetrievalConfig | None = None  # RAMER only
    use_retrieval: bool = True  # False = "w/o retrieval"
    overrides: dict[str, Any] = field(default_factory=dict)  # model Config overrides
    strategy: str = "none"  # none | orig | spl-trn | m3s (pipeline.training.strategies)
    train_range: tuple[float, float] | None = None  # span-rate range of 'base+m3s@20-40'; None = the experiment's
    train: dict[str, Any] = field(default_factory=dict)  # stage-3 TrainConfig overrides: 'carat(lr=0.0003)'
    m3s: dict[str, Any] = field(default_factory=dict)  # M3SConfig overrides: 'mmin(inner_lr=0.01)+m3s'
    # 'ramer(k=5|10|15)': the variants, one chosen per (fold, run) on its own validation split
    candidates: tuple[System, ...] = ()
    leaks: tuple[str, ...] = ()  # DIAGNOSTIC departures from the protocol ('leaky[KIND]:...')

    @property
    def slug(self) -> str:
        return re.sub(r"[^\w.=,-]+", "_", self.label).strip("_")


def _value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def selection_variants(text: str) -> list[str]:
    """'ramer(k=5|10,metric=cosine)+m3s' -> ['ramer(k=5,metric=cosine)+m3s',
    'ramer(k=10,metric=cosine)+m3s'] (every combination, in order); [] without '|'."""
    head, paren, rest = text.partition("(")
    args, close, tail = rest.rpartition(")")
    if not paren or not close or "|" not in args:
        return []
    options = []
    for part in filter(None, (p.strip() for p in args.split(","))):
        key, eq, values = part.partition("=")
        if not eq or not all(v.strip() for v in values.split("|")):
            raise RamerError(f"system '{text}': '{part}' is not key=value or key=a|b|...")
        options.append([f"{key.strip()}={v.strip()}" for v in values.split("|")])
    return [f"{head}({','.join(combo)}){tail}" for combo in itertools.product(*options)]


# RAMER retrieval options whose "auto" value is a selection among these, per (fold, run)
AUTO_CHOICES = {"query_space": ("hidden", "features"), "fill_norm": ("unit", "stored")}


# Diagnostics that reproduce a departure of the published code from the honest protocol,
# to measure what it inflates. Only as 'leaky[KIND]:SYSTEM', so the label says so in
# every table and plot; no option or config file can switch one on under a plain name.
LEAK_KINDS = {
    "db": "val/test rows and the query itself in the DB, 'the first hit' dropped",
    "encoders-test": "stage-1 encoders trained on every labeled row, test included",
    "stage1-test": "the stage-1 epoch chosen on the test rows",
    "stage3-test": "the stage-3 epoch chosen on the test rows",
}
STAGE1_LEAKS = ("encoders-test", "stage1-test")  # these change the encoders (and the DB)
LEAKY = re.compile(r"^leaky\[(?P<kinds>[\w+-]+)\]:(?P<system>.+)$")


def parse_system(text: str, base: RetrievalConfig, models: dict[str, dict] | None = None) -> System:
    """One system from its string; a '|' in an option makes a selection system whose
    variant is chosen per (fold, run) on that unit's own validation split, and so does
    an 'auto' RAMER retrieval option (`AUTO_CHOICES`). `models`: the experiment's
    per-method options (`ExperimentConfig.models`), under the system's own."""
    leaky = LEAKY.match(text.strip())
    if leaky:
        return _leaky(text.strip(), leaky.group("kinds").split("+"), leaky.group("system"), base, models)
    if "leak" in text:
        raise RamerError(f"system '{text}': leaks are diagnostics; write one as "
                         f"'leaky[KIND]:{text.split('(')[0].strip()}' (KIND: {', '.join(LEAK_KINDS)}) "
                         "so every report labels it")
    variants = selection_variants(text)
    if variants:
        parsed = tuple(parse_system(v, base, models) for v in variants)
        return dataclasses.replace(parsed[0], label=text.strip(), candidates=parsed)
    return _resolve_auto(_with_models(_parse_one(text, base), models or {}))


def _with_models(system: System, models: dict[str, dict]) -> System:
    """The system with its method's `models` entries (the strategy's, e.g. '+m3s', over
    the model's) under its own options; M3S options only under the m3s strategy."""
    from pipeline.models.registry import model_class
    from pipeline.training.strategies import config_fields

    entries = [models.get(system.model, {}), models.get(f"+{system.strategy}", {})]
    if not any(entries):
        return system
    own = config_fields(model_class(system.model))
    model, train, m3s = {}, {}, {}
    for entry in entries:  # later wins
        for key, val in entry.items():
            if key in own:
                model[key] = val
            elif key in TRAIN_KEYS:
                train[key] = val
            elif key in M3S_KEYS and system.strategy == "m3s":
                m3s[key] = val
    return dataclasses.replace(system, overrides={**model, **system.overrides}, train={**train, **system.train},
                               m3s={**m3s, **system.m3s})


def _leaky(label: str, kinds: list[str], inner: str, base: RetrievalConfig,
           models: dict[str, dict] | None = None) -> System:
    """A diagnostic system: `inner` with the given leaks, labelled 'leaky[...]:inner'."""
    from pipeline.models.registry import model_class

    unknown = sorted(set(kinds) - set(LEAK_KINDS))
    if unknown:
        raise RamerError(f"system '{label}': unknown leak {unknown}; known: {', '.join(LEAK_KINDS)}")
    system = parse_system(inner, dataclasses.replace(base, leaks=tuple(kinds)), models)
    needs_db = sorted(set(kinds) & {"db", *STAGE1_LEAKS})
    if needs_db and (system.retrieval is None or model_class(system.model).uses_stage1_encoders is False):
        raise RamerError(f"system '{label}': the {needs_db} leak(s) need a system built on stage 1 (ramer)")
    relabel = lambda s: dataclasses.replace(s, label=f"leaky[{'+'.join(kinds)}]:{s.label}", leaks=tuple(kinds),
                                            candidates=tuple(relabel(c) for c in s.candidates))
    return relabel(system)


def _resolve_auto(system: System) -> System:
    """A retrieving RAMER with 'auto' options -> a selection over their values, the
    variants labelled 'ramer [features, stored]'; other systems unchanged."""
    r = system.retrieval
    if r is None or not system.use_retrieval:
        return system
    if system.strategy == "none" and r.db_source == "raw":  # the raw DB is queried in its own space
        r = dataclasses.replace(r, query_space="hidden" if r.query_space == "auto" else r.query_space)
    axes = {k: (v if getattr(r, k) == "auto" else (getattr(r, k),)) for k, v in AUTO_CHOICES.items()}
    combos = list(itertools.product(*axes.values()))
    if len(combos) == 1:
        return dataclasses.replace(system, retrieval=dataclasses.replace(r, **dict(zip(axes, combos[0]))))
    variants = tuple(
        dataclasses.replace(system, label=f"{system.label} [{', '.join(c)}]",
                            retrieval=dataclasses.replace(r, **dict(zip(axes, c))))
        for c in combos
    )
    return dataclasses.replace(system, candidates=variants)


def _parse_one(text: str, base: RetrievalConfig) -> System:
    from pipeline.models.registry import model_class
    from pipeline.training.strategies import (
        config_fields,
        split_strategy,
        strategy_overrides,
        train_range_of,
    )

    core, strategy = split_strategy(text)
    if strategy != "none":
        sys_ = _parse_one(core, base)
        over = strategy_overrides(config_fields(model_class(sys_.model)), sys_.overrides)
        if sys_.m3s and strategy != "m3s":
            raise RamerError(f"system '{text}': {sorted(sys_.m3s)} only apply with the +m3s strategy")
        try:
            train_range = train_range_of(text)
        except ValueError as exc:
            raise RamerError(f"system '{text}': {exc}") from None
        return dataclasses.replace(sys_, label=text.strip(), overrides=over, strategy=strategy, train_range=train_range)
    label = text.strip()
    if label in ("w/o retrieval", "no-retrieval", "ramer(retrieval=false)"):
        return System(label="w/o retrieval", model="ramer", retrieval=base, use_retrieval=False)
    m = _CALL.match(label)
    if not m:
        raise RamerError(f"cannot parse system '{text}' (expected NAME or NAME(key=value,...))")
    name, args = m.group("name").strip(), m.group("args")
    kv = {}
    for part in filter(None, (args or "").split(",")):
        if "=" not in part:
            raise RamerError(f"system '{text}': '{part}' is not key=value")
        k, v = part.split("=", 1)
        kv[k.strip()] = _value(v)
    if name == "ramer":
        known = {f.name for f in dataclasses.fields(RetrievalConfig)}
        retr = {k: v for k, v in kv.items() if k in known}
        model_over = {k: v for k, v in kv.items() if k not in known}
        use = bool(model_over.pop("retrieval", True))
        train = {k: model_over.pop(k) for k in TRAIN_KEYS & set(model_over)}
        m3s = {k: model_over.pop(k) for k in M3S_KEYS & set(model_over)}
        return System(label, "ramer", dataclasses.replace(base, **retr), use, model_over, train=train, m3s=m3s)
    if name not in list_models():
        raise RamerError(f"unknown system '{name}'; use ramer, 'w/o retrieval' or one of {list_models()}")
    own = config_fields(model_class(name))
    train = {k: kv.pop(k) for k in TRAIN_KEYS & set(kv) if k not in own}
    m3s = {k: kv.pop(k) for k in M3S_KEYS & set(kv) if k not in own}
    return System(label, name, None, True, kv, train=train, m3s=m3s)
