"""The declarative hidden-feature collection spec (`collections/hidden_features.json`).

The spec is data, not code, so a user can read what a collection holds and pass their own
with `--spec FILE`. The canonical copy ships inside the package (`pipeline/store/`) so a
non-editable install finds it; the top-level `collections/` copy is the user-facing one and
a test keeps the two identical.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from pipeline.errors import StoreError

SPEC_FILE = "hidden_features.json"
DISTANCES = {"cosine": "Cosine", "euclid": "Euclid", "euclidean": "Euclid", "dot": "Dot"}
# The retrieval filter and the DB-scale ablations rely on these being indexed.
REQUIRED_INDEXES = ("split", "label", "scale")
REQUIRED_FIELDS = ("sample", "split", "fold", "label", "label_name", "dataset", "scale", "modalities")


class VectorTemplate(BaseModel):
    """Per-modality named-vector template; one copy per modality of the dataset."""

    model_config = {"extra": "forbid"}
    size: int = Field(256, gt=0)
    distance: str = "Cosine"

    @field_validator("distance")
    @classmethod
    def _known_distance(cls, value: str) -> str:
        return normalise_distance(value)


class PayloadField(BaseModel):
    model_config = {"extra": "forbid"}
    type: Literal["keyword", "integer", "float", "bool"]
    index: bool = False
    list: bool = False  # the value is a list of `type` (scale, modalities)


class ServerOptions(BaseModel):
    """Options only a Qdrant server understands; ignored by the embedded engines."""

    model_config = {"extra": "forbid"}
    shard_number: int | None = Field(None, ge=1)
    replication_factor: int | None = Field(None, ge=1)


class CollectionSpec(BaseModel):
    model_config = {"extra": "forbid"}
    name: str = "hidden_features"
    description: str = ""
    vectors: VectorTemplate = Field(default_factory=VectorTemplate)
    payload: dict[str, PayloadField]
    server: ServerOptions = Field(default_factory=ServerOptions)

    @field_validator("payload")
    @classmethod
    def _contract_fields(cls, payload: dict[str, PayloadField]) -> dict[str, PayloadField]:
        missing = [f for f in REQUIRED_FIELDS if f not in payload]
        if missing:
            raise ValueError(f"payload lacks field(s) {missing} required by the data contract")
        unindexed = [f for f in REQUIRED_INDEXES if not payload[f].index]
        if unindexed:
            raise ValueError(f"payload field(s) {unindexed} must have \"index\": true")
        return payload

    @property
    def indexes(self) -> dict[str, str]:
        """field -> schema type for every indexed payload field, in spec order."""
        return {name: f.type for name, f in self.payload.items() if f.index}


def normalise_distance(value: str) -> str:
    """'cosine' / 'Cosine' / 'euclidean' -> Qdrant's spelling ('Cosine', 'Euclid', 'Dot')."""
    key = value.strip().lower()
    if key not in DISTANCES:
        raise ValueError(f"unknown distance '{value}' (use one of Cosine, Euclid, Dot)")
    return DISTANCES[key]


def packaged_spec_path() -> Path:
    """The spec shipped with the package (works after a non-editable install)."""
    return Path(str(resources.files("pipeline.store").joinpath(SPEC_FILE)))


def load_spec(path: str | Path | None = None) -> CollectionSpec:
    """Load and validate a spec; `None` = the packaged default. Bad specs raise StoreError."""
    where = Path(path) if path is not None else packaged_spec_path()
    if not where.is_file():
        raise StoreError(f"{where}: collection spec not found")
    try:
        return CollectionSpec.model_validate(json.loads(where.read_text()))
    except json.JSONDecodeError as exc:
        raise StoreError(f"{where}: not valid JSON ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise StoreError(f"{where}: invalid collection spec at '{loc}': {first['msg']}") from None
