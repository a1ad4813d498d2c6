"""Systems compared in a run: RAMER, its ablations, and any registered baseline.

A system is named by a string:
    ramer                      RAMER with the experiment's retrieval settings
    w/o retrieval              the same model, missing slots keep h^miss
    ramer(k=5,metric=euclidean)  RAMER with retrieval settings overridden
    carat(lr=0.0003,epochs=60) a model with stage-3 training options overridden (lr, epochs,
                               batch_size, weight_decay, patience); other keys: its Config
    mmin(inner_lr=0.01)+m3s    ... or M3S options (inner_lr, outer_lr, inner_steps, second_order)
    mmin, ae, cra, ...         any registered model, trained by the generic trainer
    mmin+m3s, ramer+orig       ... trained under a span-missing strategy (orig | spl-trn | m3s)
    mmin+m3s@20-40             ... at that training span-rate range (else the experiment's)
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import RamerError
from pipeline.models.registry import list_models
from pipeline.training.config import RetrievalConfig

# Stage-3 training options a system may override, e.g. 'carat(lr=0.0003,epochs=60)' (the
# seed stays derived from the system's name, so it is never an override).
TRAIN_KEYS = {"epochs", "batch_size", "lr", "weight_decay", "patience"}
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


def parse_system(text: str, base: RetrievalConfig) -> System:
    from pipeline.models.registry import model_class
    from pipeline.training.strategies import (
        config_fields,
        split_strategy,
        strategy_overrides,
        train_range_of,
    )

    core, strategy = split_strategy(text)
    if strategy != "none":
        sys_ = parse_system(core, base)
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
