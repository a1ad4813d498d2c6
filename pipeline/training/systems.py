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

In a TOML config the same systems are tables, `[[systems]]` with `model = "ramer"`, the
options as keys, and optional `strategy`, `train_range` and `label`; a table and its
string parse into the same `SystemSpec` (`system_text`). Seeds and checkpoint names
come from the spec's canonical key (`canonical`): the order options are written in, and
spaces, do not matter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import RamerError
from pipeline.models.registry import list_models
from pipeline.training.config import ExperimentConfig, RetrievalConfig

# Stage-3 training options a system may override, e.g. 'carat(lr=0.0003,epochs=60)' (the
# seed stays derived from the system's name, so it is never an override).
TRAIN_KEYS = {"epochs", "batch_size", "lr", "weight_decay", "patience", "optimizer", "beta1", "schedule",
              "warmup", "clip", "min_epoch_steps"}
M3S_KEYS = {"inner_lr", "outer_lr", "inner_steps", "second_order"}  # with a +m3s strategy only
SLUG_MAX = 120  # leaves room for suffixes such as '_features,_stored.fit.json'
_CALL = re.compile(r"^(?P<name>[\w\-/ .]+?)\s*(\((?P<args>.*)\))?$")


@dataclass(frozen=True)
class SystemSpec:
    """One system of an experiment, parsed once from its string or TOML table."""

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
    candidates: tuple[SystemSpec, ...] = ()
    leaks: tuple[str, ...] = ()  # DIAGNOSTIC departures from the protocol ('leaky[KIND]:...')
    key: str = ""  # canonical form (`canonical`): seeds and checkpoint names; "" = the label

    @property
    def slug(self) -> str:
        """File-name form of the canonical key: <slug>.pt, the 'init-<slug>' seed, ...
        A long key keeps its first characters and a hash of the whole, so every file
        name stays within the file system's 255 bytes."""
        key = self.key or self.label
        slug = re.sub(r"[^\w.=,-]+", "_", key).strip("_")
        if len(slug) <= SLUG_MAX:
            return slug
        return f"{slug[:SLUG_MAX - 17]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    @property
    def base(self) -> str:
        """The label without its strategy suffix: 'mmin' for 'mmin+m3s@20-40'."""
        return split_label(self.label)[0] if self.strategy != "none" else self.label

    @property
    def range_tag(self) -> str:
        """'20-40' for a system trained at its own span-rate range, else ''."""
        from pipeline.data.spans import range_tag

        return "" if self.train_range is None else range_tag(self.train_range)

    def columns(self) -> dict[str, str]:
        """What metrics.parquet records of this system besides its label."""
        return {"model": self.model, "strategy": self.strategy, "train_range": self.range_tag, "base": self.base}



def split_label(text: str) -> tuple[str, str]:
    """'mmin(embd=64)+m3s@20-40' -> ('mmin(embd=64)', '+m3s@20-40'); no strategy -> (text, '')."""
    from pipeline.training.strategies import split_strategy

    core, strategy = split_strategy(text)
    return (core, text.strip()[len(core):].strip()) if strategy != "none" else (text.strip(), "")


_NO_RETRIEVAL = ("w/o retrieval", "no-retrieval", "ramer(retrieval=false)")


def canonical(text: str) -> str:
    """The order-free form of a system string: options sorted by key, values as parsed
    ('5', '0.0001', 'true'), no spaces around them. 'ramer(metric=euclidean, k=5)+m3s'
    and 'ramer(k=5,metric=euclidean)+m3s' are one system: one seed, one checkpoint."""
    text = text.strip()
    leaky = LEAKY.match(text)
    if leaky:
        return f"leaky[{'+'.join(sorted(leaky.group('kinds').split('+')))}]:{canonical(leaky.group('system'))}"
    core, suffix = split_label(text)
    suffix = suffix.replace(" ", "").lower()
    if core.lower() in _NO_RETRIEVAL:
        return "w/o retrieval" + suffix
    m = _CALL.match(core)
    if not m or not m.group("args"):
        return (m.group("name").strip() if m else core) + suffix
    parts = []
    for part in filter(None, (p.strip() for p in m.group("args").split(","))):
        key, eq, values = part.partition("=")
        if not eq:
            return text  # not key=value: the parser reports it
        parts.append(f"{key.strip()}={'|'.join(option_text(_value(v)) for v in values.split('|'))}")
    return f"{m.group('name').strip()}({','.join(sorted(parts))}){suffix}"


def option_text(value: Any) -> str:
    """The string form `_value` reads back: 'true', '5', '256;128', '128;', '()'."""
    if isinstance(value, (tuple, list)):
        return "()" if not value else ";".join(option_text(v) for v in value) + (";" if len(value) == 1 else "")
    return str(value).lower() if isinstance(value, bool) else str(value)


def system_text(table: dict[str, Any], where: str = "config") -> str:
    """A TOML `[[systems]]` table as the system string it stands for:
    {model = "ramer", k = 5, strategy = "m3s", train_range = "20-40"} -> 'ramer(k=5)+m3s@20-40'.
    A list is a tuple option ('classifier = [256, 128]' -> 'classifier=256;128'); a
    selection is written as in the string ('k = "5|10"'). `label` is not supported (the
    string is the row name, so a report never shows two names for one system)."""
    table = dict(table)
    model = table.pop("model", None)
    if not isinstance(model, str) or not model.strip():
        raise RamerError(f"{where}: a [[systems]] table needs model = \"NAME\" (got {sorted(table) or 'nothing'})")
    strategy, train_range = table.pop("strategy", None), table.pop("train_range", None)
    if "label" in table:
        raise RamerError(f"{where}: [[systems]] model = {model!r}: 'label' is not an option; the report names a "
                         "system by its canonical string")
    options = []
    for key, val in sorted(table.items()):
        if isinstance(val, dict) or (isinstance(val, list) and any(isinstance(v, (dict, list)) for v in val)):
            raise RamerError(f"{where}: [[systems]] model = {model!r}: option {key} = {val!r} is not a value "
                             "or a list of values")
        options.append(f"{key}={option_text(val)}")
    text = f"{model}({','.join(options)})" if options else model
    if strategy is not None:
        text += f"+{strategy}" + (f"@{train_range}" if train_range is not None else "")
    elif train_range is not None:
        raise RamerError(f"{where}: [[systems]] model = {model!r}: train_range needs a strategy")
    return text


def _value(text: str) -> Any:
    """One option value: bool, int, float, a tuple ('256;128', '128;' for one element,
    '()' for none: tuple options such as a classifier's layer sizes) or the text."""
    text = text.strip()
    if text == "()":
        return ()
    if ";" in text:
        return tuple(_value(v) for v in text.split(";") if v.strip())
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


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


def parse_system(text: str, base: RetrievalConfig, models: dict[str, dict] | None = None) -> SystemSpec:
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
        return dataclasses.replace(parsed[0], label=text.strip(), key=canonical(text), candidates=parsed)
    parsed = dataclasses.replace(_parse_one(text, base), key=canonical(text))
    return _resolve_auto(_with_models(parsed, models or {}))


def _with_models(system: SystemSpec, models: dict[str, dict]) -> SystemSpec:
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
           models: dict[str, dict] | None = None) -> SystemSpec:
    """A diagnostic system: `inner` with the given leaks, labelled 'leaky[...]:inner'."""
    from pipeline.models.registry import model_class

    unknown = sorted(set(kinds) - set(LEAK_KINDS))
    if unknown:
        raise RamerError(f"system '{label}': unknown leak {unknown}; known: {', '.join(LEAK_KINDS)}")
    system = parse_system(inner, dataclasses.replace(base, leaks=tuple(kinds)), models)
    needs_db = sorted(set(kinds) & {"db", *STAGE1_LEAKS})
    if needs_db and (system.retrieval is None or model_class(system.model).uses_stage1_encoders is False):
        raise RamerError(f"system '{label}': the {needs_db} leak(s) need a system built on stage 1 (ramer)")
    prefix = f"leaky[{'+'.join(kinds)}]:"
    key_prefix = f"leaky[{'+'.join(sorted(kinds))}]:"
    relabel = lambda s: dataclasses.replace(s, label=prefix + s.label, key=key_prefix + s.key, leaks=tuple(kinds),
                                            candidates=tuple(relabel(c) for c in s.candidates))
    return relabel(system)


def _resolve_auto(system: SystemSpec) -> SystemSpec:
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
        dataclasses.replace(system, label=f"{system.label} [{', '.join(c)}]", key=f"{system.key} [{', '.join(c)}]",
                            retrieval=dataclasses.replace(r, **dict(zip(axes, c))))
        for c in combos
    )
    return dataclasses.replace(system, candidates=variants)


def _parse_one(text: str, base: RetrievalConfig) -> SystemSpec:
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
    if label.lower() in _NO_RETRIEVAL:
        return SystemSpec(label="w/o retrieval", model="ramer", retrieval=base, use_retrieval=False)
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
        use = model_over.pop("retrieval", True)
        if not isinstance(use, bool):
            raise RamerError(f"system '{text.strip()}': retrieval = {use!r}: must be true or false")
        train = {k: model_over.pop(k) for k in TRAIN_KEYS & set(model_over)}
        m3s = {k: model_over.pop(k) for k in M3S_KEYS & set(model_over)}
        return SystemSpec(label, "ramer", dataclasses.replace(base, **retr), use, model_over, train=train, m3s=m3s)
    if name not in list_models():
        raise RamerError(f"unknown system '{name}'; use ramer, 'w/o retrieval' or one of {list_models()}")
    own = config_fields(model_class(name))
    train = {k: kv.pop(k) for k in TRAIN_KEYS & set(kv) if k not in own}
    m3s = {k: kv.pop(k) for k in M3S_KEYS & set(kv) if k not in own}
    return SystemSpec(label, name, None, True, kv, train=train, m3s=m3s)


def experiment_systems(cfg: ExperimentConfig) -> list[SystemSpec]:
    """The experiment's systems, parsed once: its `systems` x its span strategies
    ('mmin' -> 'mmin+orig', 'mmin+m3s', ...; see strategies.py)."""
    systems = [parse_system(s, cfg.retrieval, cfg.models) for s in _expand_strategies(cfg)]
    stray = [s.label for s in systems if s.m3s and s.strategy != "m3s"]
    if stray:
        raise RamerError(f"systems {stray}: M3S options (inner_lr, ...) need --strategy m3s")
    return systems


def _expand_strategies(cfg: ExperimentConfig) -> list[str]:
    from pipeline.data.spans import parse_ranges
    from pipeline.training.strategies import expand_systems, split_strategy

    try:
        train_ranges = parse_ranges(cfg.missing_rate)
        if cfg.test_missing_rate is not None:
            parse_ranges(cfg.test_missing_rate)
    except ValueError as exc:
        raise RamerError(f"missing-rate ranges: {exc}") from None
    try:
        names = expand_systems(cfg.systems, cfg.strategy, train_ranges)
    except ValueError as exc:
        raise RamerError(f"--strategy: {exc}") from None
    if cfg.strategy == "none" and any(split_strategy(s)[1] != "none" for s in names):
        raise RamerError("systems with a +strategy suffix need --strategy (span-missing training and testing)")
    return names
