"""Type and range validation of the config dataclasses (and of any model's `Config`),
by pydantic, from their own annotations: nothing is checked by hand per field.

Each dataclass is turned into a pydantic model whose leaves are strict (`lr = "fast"`,
`seed = "5"`, `epochs = 2.5`, `ingest = "no"` and bools for numbers are refused, never
coerced; an int is a valid float; no NaN or infinity), and a field whose name appears
in `RANGES` carries that range (on the items of a tuple or list field, on the value of
an optional one). A field added to a dataclass is type-checked with no change here;
its name in `RANGES` gives it a range. The first violation is one RamerError line:
`<where>: <dotted key> = <value>: <rule>`.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Annotated, Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Strict,
    TypeAdapter,
    ValidationError,
    create_model,
)

from pipeline.errors import RamerError

POSITIVE_INT = (Ge(1),)
NON_NEGATIVE = (Ge(0),)
POSITIVE = (Gt(0),)
SHARE = (Ge(0), Le(1))  # a probability or share of something
OPEN_SHARE = (Ge(0), Lt(1))  # dropout, Adam's beta1: 1 would mean nothing is learned

# Field name -> its range, wherever that name is a field (configs and models' Configs).
RANGES: dict[str, tuple] = {
    # counts and sizes
    **dict.fromkeys(("epochs", "batch_size", "runs", "patience", "hidden", "layers", "heads", "ff", "max_params",
                     "inner_steps", "k", "precision_ks", "embd", "enc_hidden", "latent", "n_blocks", "tokens",
                     "max_frames", "queue", "vae_hidden", "t_max", "max_iter", "inv",
                     "cmd_moments", "classifier", "encoder_classifier", "ae_layers"), POSITIVE_INT),
    **dict.fromkeys(("d_model", "seed", "refresh_every", "folds", "text_layers", "anchors"), NON_NEGATIVE),  # d_model 0: the input width
    # rates and weights
    **dict.fromkeys(("lr", "inner_lr", "outer_lr", "temperature", "clip", "strengths"), POSITIVE),
    **dict.fromkeys(("weight_decay", "recon_weight", "mse_weight", "cycle_weight", "nce_weight", "inv_weight",
                     "cmd_weight", "kl_weight", "w_o", "w_alpha", "w_beta", "w_shuffle", "w_contrastive",
                     "w_recon", "w_agg", "w_final", "pair_weights"), NON_NEGATIVE),
    **dict.fromkeys(("full_prob", "warmup", "noise_prob", "proto_m", "missing_rate", "test_missing_rate",
                     "modality_missing_rate"), SHARE),
    **dict.fromkeys(("dropout", "ae_dropout", "beta1"), OPEN_SHARE),
}

_STRICT = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)


def _leaf(tp: Any, rule: tuple) -> Any:
    """A scalar type made strict, with `rule` (and no NaN / infinity for floats)."""
    extra = (AllowInfNan(False),) if tp is float else ()
    return Annotated[(tp, Strict(), *extra, *(rule if tp in (int, float) else ()))]


def _strict(tp: Any, rule: tuple = ()) -> Any:
    """`tp` with strict leaves carrying `rule`; dataclasses become pydantic models."""
    if dataclasses.is_dataclass(tp):
        return dataclass_model(tp)
    if tp in (int, float, str, bool):
        return _leaf(tp, rule)
    if tp is list:
        return list[_strict(Any, rule)]
    if tp is Any:  # an untyped list's items (missing_rate: [lo, hi] or [[lo, hi], ...])
        return typing.Union[_leaf(float, rule), list[_leaf(float, rule)]] if rule else Any  # noqa: UP007
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_strict(a, rule) for a in args)]  # noqa: UP007 (built from a tuple)
    if origin is list:
        return list[_strict(args[0] if args else Any, rule)]
    if origin is tuple:  # a TOML array (a list) is a tuple option's value: the container is lax
        inner = tuple[_strict(args[0], rule), ...] if len(args) == 2 and args[1] is Ellipsis else tp
        return Annotated[inner, Strict(False)]
    if origin is dict:
        return dict[_strict(args[0]), _strict(args[1], rule)] if args else dict
    return tp


@functools.cache
def dataclass_model(cls: type) -> type[BaseModel]:
    """The strict pydantic model of dataclass `cls` (built once per class)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: (_strict(hints[f.name], RANGES.get(f.name, ())), ...) for f in dataclasses.fields(cls)}
    return create_model(f"Strict{cls.__name__}", __config__=_STRICT, **fields)


_TAGS = {"none", "int", "float", "str", "bool", "list", "tuple", "dict"}  # a union branch's name in a loc


def _key(loc: tuple) -> str:
    """('train', 'lr') -> 'train.lr'; ('systems', 0) -> 'systems[0]'; the names pydantic
    gives union branches ('constrained-float', 'list[...]') left out."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).isidentifier() and str(part) not in _TAGS:
            out += f".{part}" if out else str(part)
    return out


_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
           "less_than": ("<", "lt")}
_KINDS = {"int_type": "must be an integer", "int_from_float": "must be an integer", "float_type": "must be a number",
          "string_type": "must be text (a quoted string)", "bool_type": "must be true or false",
          "list_type": "must be a list", "tuple_type": "must be a list", "finite_number": "must be a finite number",
          "model_type": "must be a table of options", "model_attributes_type": "must be a table of options",
          "dict_type": "must be a table of options"}


def _rule(err: dict) -> str:
    """pydantic's error as this project's rule text: 'must be >= 1', 'must be an integer'."""
    kind = err["type"]
    if kind in _BOUNDS:
        op, name = _BOUNDS[kind]
        return f"must be {op} {err.get('ctx', {}).get(name)}"
    if kind in _KINDS:
        return _KINDS[kind]
    msg = err["msg"]
    return msg[0].lower() + msg[1:] if msg else kind


def violation(exc: ValidationError) -> tuple[str, Any, str]:
    """The most telling error of a validation: (dotted key, the value given, the rule
    broken). Of a union's branches, the one that got deepest into the value."""
    errors = exc.errors()
    err = max(errors, key=lambda e: sum(isinstance(p, int) for p in e["loc"]))
    return _key(err["loc"]), err.get("input"), _rule(err)


def check_dataclass(cls: type, values: dict[str, Any], where: str | typing.Callable[[str, Any], str]) -> None:
    """`values` (every field of `cls`, as `dataclasses.asdict` gives them) against the
    types and ranges of `cls`. `where`: the source to name, or a function of the dotted
    key and the value that names them as their layer (file, flag, preset) set them."""
    try:
        TypeAdapter(dataclass_model(cls)).validate_python(values)
    except ValidationError as exc:
        key, value, rule = violation(exc)
        head = where(key, value) if callable(where) else f"{where}: {key} = {value!r}"
        raise RamerError(f"{head}: {rule}") from None


def check_options(cls: type, given: dict[str, Any], where: str) -> None:
    """Options that override some fields of `cls` (a system's 'lr=...', a model Config's
    'dropout=...'): each checked against that field's type and range (unknown names are
    the caller's to report)."""
    known = {f.name for f in dataclasses.fields(cls)}
    check_dataclass(cls, {**dataclasses.asdict(cls()), **{k: v for k, v in given.items() if k in known}}, where)
