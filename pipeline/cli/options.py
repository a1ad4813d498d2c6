"""The options the experiment commands share, declared once.

Each option is an `Annotated` alias that every command's signature reuses (so `--help`
reads the same everywhere), and the values a command received are one `ExperimentOptions`,
which turns into the typed `ExperimentConfig` with `to_config()`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.training.config import ExperimentConfig, load_experiment

ConfigArg = Annotated[Path | None, typer.Argument(help="TOML experiment config (optional; flags override it).")]
DatasetOpt = Annotated[Path | None, typer.Option("--dataset", "-d", help="Dataset directory (manifest.json + features.parquet).")]
ExperimentOpt = Annotated[str | None, typer.Option("--experiment", "-e", help="Experiment name: results/<name>, runs/<name>, collection names.")]
SystemsOpt = Annotated[str | None, typer.Option("--systems", help="Comma list: ramer, 'w/o retrieval', ramer(k=5,metric=euclidean), mmin, carat(lr=0.0003,epochs=60), mmin(inner_lr=0.01)+m3s, ... (NAME(key=value): retrieval, model Config, training or M3S options for that system)")]
AblationsOpt = Annotated[str | None, typer.Option("--ablations", help="Add the paper's Table-4 ablations as systems: 'all' or a comma list of retrieval, db-source, metric, top1, scale-k, encoders, two-rule.")]
FoldsOpt = Annotated[str | None, typer.Option("--folds", help="Comma list of folds to run (default: all).")]
RunsOpt = Annotated[int | None, typer.Option("--runs", help="Runs per fold (paper: 3).")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Stage-3 epochs (paper: 40).")]
PreEpochsOpt = Annotated[int | None, typer.Option("--pretrain-epochs", help="Stage-1 epochs per encoder.")]
KOpt = Annotated[int | None, typer.Option("--k", help="Neighbours fused per missing modality (paper: 10).")]
ScaleOpt = Annotated[str | None, typer.Option("--scale", help="DB scale: small | medium | large | turbo.")]
FinetuneOpt = Annotated[bool | None, typer.Option("--finetune/--frozen", help="Fine-tune the stage-1 encoders in stage 3 (live retrieval) or keep them frozen (cached retrieval).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Base seed (env RAMER_SEED).", envvar="RAMER_SEED")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N (env RAMER_DEVICE).", envvar="RAMER_DEVICE")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted experiment from its checkpoints.")]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="Delete this experiment's checkpoints and start over.")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", min=1, envvar="RAMER_JOBS", help="(fold, run) units run at once, each in its own process; threads per job = cores / jobs unless RAMER_THREADS is set. Same numbers as --jobs 1 (env RAMER_JOBS).")]
NoIngestOpt = Annotated[bool, typer.Option("--no-ingest", help="Skip writing hidden features to Qdrant (FAISS still serves training).")]
# span-missing strategies (M3S) and noise robustness (NMER): pipeline.training.strategies, pipeline.evaluation.robustness
StrategyOpt = Annotated[str | None, typer.Option("--strategy", help="Span-missing training: none, or a comma list of orig, spl-trn, m3s (each system once per strategy, e.g. mmin+m3s).")]
MissingRateOpt = Annotated[str | None, typer.Option("--missing-rate", help="Training span missing-rate range LO-HI, e.g. 0.4-0.6 or 40-60 (with --strategy); a comma list trains every system once per range (mmin+m3s@20-40).")]
TestMissingRateOpt = Annotated[str | None, typer.Option("--test-missing-rate", help="Test span missing-rate range(s), comma list allowed: every model is scored on each (default: the training ranges).")]
NoiseOpt = Annotated[list[str] | None, typer.Option("--noise", help="Also evaluate the trained models under noise: KIND:T1,T2,... (gaussian | impulse, t in 0..100); repeatable.")]
PresetOpt = Annotated[str | None, typer.Option("--preset", help="Settings layer under the config file and flags: none | paper (each method as its paper and reference code specify; docs/paper.md).")]
NoiseScheduleOpt = Annotated[str, typer.Option("--noise-schedule", help="Beta schedule of the noise: linear | scaled-linear | cosine.")]


@dataclass(frozen=True, kw_only=True)
class ExperimentOptions:
    """What `run`, `sweep`, `demo` and the stage commands were given; None = not given (the
    config file, the preset or the defaults decide). Field names are the commands' parameter
    names, so a command builds it with `ExperimentOptions(**locals())`."""

    config: Path | None = None
    dataset: Path | None = None
    experiment: str | None = None
    systems: str | None = None
    folds: str | None = None
    runs: int | None = None
    epochs: int | None = None
    pretrain_epochs: int | None = None
    k: int | None = None
    scale: str | None = None
    finetune: bool | None = None
    seed: int | None = None
    device: str | None = None
    no_ingest: bool = False
    strategy: str | None = None
    missing_rate: str | None = None
    test_missing_rate: str | None = None
    preset: str | None = None
    ablations: str | None = None
    # how to run, not what: never part of the ExperimentConfig
    resume: bool = False
    fresh: bool = False
    jobs: int = 1
    noise: list[str] | None = None
    noise_schedule: str = "linear"

    def to_config(self) -> ExperimentConfig:
        """The config file, under the preset, under these flags (+ the --ablations systems)."""
        if self.resume and self.fresh:
            raise typer.BadParameter("--resume continues the checkpoints and --fresh deletes them: pass one",
                                     param_hint="--resume / --fresh")
        fold_list = _csv(self.folds)
        if fold_list is not None and not all(f.isdigit() for f in fold_list):
            raise typer.BadParameter(f"'{self.folds}' is not a comma list of fold numbers (0, 1, ...)",
                                     param_hint="--folds")
        cfg = load_experiment(
            self.config, self.preset,
            dataset=None if self.dataset is None else str(self.dataset),
            experiment=self.experiment,
            systems=_split_systems(self.systems),
            folds=None if fold_list is None else [int(f) for f in fold_list],
            runs=self.runs, seed=self.seed, device=self.device, strategy=self.strategy,
            missing_rate=_rate(self.missing_rate), test_missing_rate=_rate(self.test_missing_rate),
            **{"train.epochs": self.epochs, "pretrain.epochs": self.pretrain_epochs, "retrieval.k": self.k,
               "retrieval.scale": self.scale, "retrieval.finetune_encoders": self.finetune,
               "ingest": False if self.no_ingest else None},
        )
        return with_ablations(cfg, self.ablations)


def build_config(**options: Any) -> ExperimentConfig:
    """`ExperimentOptions(**options).to_config()`: keyword arguments only."""
    return ExperimentOptions(**options).to_config()


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _rate(text: str | None) -> list | None:
    """'40-60' -> [0.4, 0.6]; '20-40,40-60' -> [[...], [...]]."""
    from pipeline.data.spans import parse_ranges

    if text is None:
        return None
    try:
        ranges = [list(r) for r in parse_ranges(text)]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return ranges[0] if len(ranges) == 1 else ranges


def _split_systems(text: str | None) -> list[str] | None:
    """Split on commas outside parentheses: 'ramer(k=5,metric=euclidean),mmin'."""
    if text is None:
        return None
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def with_ablations(cfg: ExperimentConfig, ablations: str | None) -> ExperimentConfig:
    """`cfg` plus the systems of the `--ablations` groups (none for None)."""
    if not ablations:
        return cfg
    from pipeline.training.ablations import ablation_systems

    extra = ablation_systems(_csv(ablations) or [], cfg.retrieval.scale, cfg.retrieval.k)
    return replace(cfg, systems=cfg.systems + [s for s in extra if s not in cfg.systems])


def check_noise(specs: list[str], schedule: str) -> None:
    """`--noise` and `--noise-schedule`, before any stage runs."""
    from pipeline.data.noise import SCHEDULES, parse_noise

    for spec in specs:
        try:
            parse_noise(spec)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--noise") from None
    if schedule not in SCHEDULES:
        raise typer.BadParameter(f"'{schedule}': choose one of {', '.join(SCHEDULES)}", param_hint="--noise-schedule")


def check_demo(out: Path, labeled: int, unlabeled: int, folds: str, runs: int, epochs: int, experiment: str,
               preset: str | None = None) -> None:
    """The demo's options, before its dataset is generated."""
    from pipeline.config import check_name
    from pipeline.data.dataset import check_output_dir
    from pipeline.data.synth import SynthConfig
    from pipeline.training.presets import get_preset

    if preset is not None:
        get_preset(preset)  # one line listing the presets

    check_name("--experiment", experiment)
    check_output_dir(out)
    n_folds = SynthConfig().folds
    fold_list = _csv(folds) or []
    if not fold_list or not all(f.isdigit() and int(f) < n_folds for f in fold_list):
        raise typer.BadParameter(f"'{folds}': a comma list of folds 0..{n_folds - 1}", param_hint="--folds")
    for name, value, low in (("--labeled", labeled, 10 * n_folds), ("--unlabeled", unlabeled, 0),
                             ("--runs", runs, 1), ("--epochs", epochs, 1)):
        if value < low:
            raise typer.BadParameter(f"{value}: must be >= {low}", param_hint=name)
