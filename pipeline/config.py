"""Settings (environment / .env) for where things live and how the store is reached.

Layering, lowest to highest: defaults < `.env` < environment < CLI flags. Experiment
hyper-parameters live in `pipeline.training.config` (typed dataclasses), not here.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Dataset and experiment names become folder names and parts of collection names.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_name(option: str, value: str) -> None:
    """One RamerError line for a name that cannot be a folder / collection name part."""
    from pipeline.errors import RamerError

    if not NAME.fullmatch(value or ""):
        raise RamerError(f"{option} '{value}': use letters, digits and _ . - (it names folders and collections)")


def check_output_file(option: str, path: Path) -> None:
    """One RamerError line for an output file that cannot be written: a folder in its
    place, or a file where one of its folders should be."""
    from pipeline.errors import RamerError

    if path.is_dir():
        raise RamerError(f"{option} {path}: is a folder, not a file")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RamerError(f"{option} {path}: cannot be created, {parent} is a file and not a folder")


class Settings(BaseSettings):
    """Machine-level settings. Every field is documented in `.env.example`."""

    model_config = SettingsConfigDict(
        env_prefix="RAMER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(Path("data"), description="Datasets and the embedded store live here.")
    results_dir: Path = Field(Path("results"), description="Reports, metrics, plots.")
    runs_dir: Path = Field(Path("runs"), description="Checkpoints and caches (resumable).")
    qdrant_url: str | None = Field(
        None,
        validation_alias=AliasChoices("QDRANT_URL", "RAMER_QDRANT_URL"),
        description="Qdrant server URL; unset = embedded store under qdrant_path.",
    )
    qdrant_api_key: str | None = Field(
        None, validation_alias=AliasChoices("QDRANT_API_KEY", "RAMER_QDRANT_API_KEY")
    )
    qdrant_path: Path | None = Field(
        None, description="Embedded store folder; default <data_dir>/qdrant."
    )
    qdrant_engine: str = Field(
        "edge", description="Embedded engine: 'edge' (qdrant-edge-py) or 'local' (qdrant-client)."
    )
    device: str = Field("auto", description="torch device: auto | cpu | cuda | cuda:N.")
    # 1 by default: RAMER's models are small, and on a loaded 2-core machine a second
    # OpenMP thread spin-waits (measured: 134 ms vs 1,590 ms per encoder step).
    threads: int = Field(1, ge=1, description="torch / FAISS CPU threads.")
    seed: int = Field(0, ge=0, description="Base seed; every result records the seeds it used.")

    @property
    def store_path(self) -> Path:
        return self.qdrant_path if self.qdrant_path is not None else self.data_dir / "qdrant"


def load_settings(**overrides: object) -> Settings:
    """Settings from env/.env with CLI overrides applied (None = not given on the CLI)."""
    from pydantic import ValidationError

    from pipeline.errors import RamerError

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:  # RAMER_THREADS=0, a seed that is not a number, ...
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise RamerError(f"setting {key} (env RAMER_{key.upper()} or .env) = {err.get('input')!r}: "
                         f"{err['msg'][0].lower()}{err['msg'][1:]}") from None


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
