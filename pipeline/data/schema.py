"""The dataset manifest: what a dataset directory promises about its table."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from pipeline.data.bounds import MAX_CLASSES, MAX_DIM, MAX_FOLDS
from pipeline.errors import DataError

Task = Literal["single_label", "multi_label", "regression"]
MANIFEST = "manifest.json"
FEATURES = "features.parquet"

# Letters used by the papers' missing conditions ("a", "v", "l", "av", ...).
_LETTERS = {"audio": "a", "visual": "v", "video": "v", "text": "l", "language": "l"}


class ModalitySpec(BaseModel):
    name: str
    dim: int = Field(gt=0, le=MAX_DIM)

    @property
    def letter(self) -> str:
        return _LETTERS.get(self.name, self.name[0])


class Manifest(BaseModel):
    """`manifest.json`. Extra keys are rejected so typos do not pass silently."""

    model_config = {"extra": "forbid"}

    name: str
    task: Task = "single_label"
    # Bounded: readers size tables by these (the fold column is int8).
    classes: list[str] = Field(default_factory=list, max_length=MAX_CLASSES)
    modalities: list[ModalitySpec]
    folds: int = Field(5, ge=2, le=MAX_FOLDS)
    seed: int = 0
    provenance: dict = Field(default_factory=dict)
    # Frame sequences kept in sequences/ (see pipeline.data.sequences): modality -> T_m.
    sequences: dict[str, int] | None = None
    # The column whose groups (speakers) never straddle folds; None: folds ignore groups.
    group_by: str | None = None

    @field_validator("modalities")
    @classmethod
    def _unique_modalities(cls, mods: list[ModalitySpec]) -> list[ModalitySpec]:
        names = [m.name for m in mods]
        if not mods or len(set(names)) != len(names):
            raise ValueError(f"modalities must be a non-empty list of unique names, got {names}")
        letters = [m.letter for m in mods]
        if len(set(letters)) != len(letters):
            raise ValueError(f"modality names must start with distinct letters, got {names}")
        return mods

    @model_validator(mode="after")
    def _sequences_known(self) -> Manifest:
        for m, t in (self.sequences or {}).items():
            if m not in self.modality_names:
                raise ValueError(f"sequences: '{m}' is not one of the modalities {self.modality_names}")
            if t < 1:
                raise ValueError(f"sequences: '{m}' needs at least 1 frame, got {t}")
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", m) or m.startswith("."):
                raise ValueError(f"sequences: modality name '{m}' cannot be a file name (letters, digits, _ . -)")
        return self

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    @property
    def dims(self) -> list[int]:
        return [m.dim for m in self.modalities]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def save(self, path: Path) -> None:
        data = self.model_dump()
        for key in ("sequences", "group_by"):  # unset: the manifest stays as before they existed
            if data[key] is None:
                del data[key]
        path.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        if not path.is_file():
            raise DataError(f"{path}: manifest not found (a dataset directory needs {MANIFEST})")
        try:
            return cls.model_validate_json(path.read_text())
        except ValidationError as exc:
            first = exc.errors()[0]
            if first["type"] == "json_invalid":
                raise DataError(f"{path}: not valid JSON ({first['msg']})") from None
            where = ".".join(str(p) for p in first["loc"])
            if not where:  # a rule across fields
                raise DataError(f"{path}: invalid manifest: {first['msg']}") from None
            raise DataError(f"{path}: invalid manifest field '{where}': {first['msg']}") from None
        except ValueError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from None
