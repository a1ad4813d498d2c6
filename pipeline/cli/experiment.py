"""`ramer run | sweep | pretrain | index | train | evaluate | demo | predict | report`.

Thin: each command takes the shared options (pipeline.cli.options), puts them in one
`ExperimentOptions` and hands it to pipeline.cli.runner, which calls the library and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli import runner
from pipeline.cli.options import (
    AblationsOpt,
    ConfigArg,
    DatasetOpt,
    DeviceOpt,
    EpochsOpt,
    ExperimentOpt,
    ExperimentOptions,
    FinetuneOpt,
    FoldsOpt,
    FreshOpt,
    JobsOpt,
    KOpt,
    MissingRateOpt,
    NoIngestOpt,
    NoiseOpt,
    NoiseScheduleOpt,
    PreEpochsOpt,
    PresetOpt,
    ResumeOpt,
    RunsOpt,
    ScaleOpt,
    SeedOpt,
    StrategyOpt,
    SystemsOpt,
    TestMissingRateOpt,
    check_demo,
)


def run(
    config: ConfigArg = None, dataset: DatasetOpt = None, experiment: ExperimentOpt = None,
    systems: SystemsOpt = None, folds: FoldsOpt = None, runs: RunsOpt = None, epochs: EpochsOpt = None,
    pretrain_epochs: PreEpochsOpt = None, k: KOpt = None, scale: ScaleOpt = None,
    finetune: FinetuneOpt = None, seed: SeedOpt = None, device: DeviceOpt = None,
    resume: ResumeOpt = False, fresh: FreshOpt = False, no_ingest: NoIngestOpt = False,
    strategy: StrategyOpt = None, missing_rate: MissingRateOpt = None, test_missing_rate: TestMissingRateOpt = None,
    ablations: AblationsOpt = None, preset: PresetOpt = None, jobs: JobsOpt = 1,
) -> None:
    """The whole RAMER protocol: pretrain -> index -> train -> evaluate, every fold x run.

    Writes results/<experiment>/ (config.json, metrics.parquet, report.md, plots);
    checkpoints go to runs/<experiment>/ so --resume continues an interrupted run.
    """
    opts = ExperimentOptions(**locals())
    runner.execute(opts.to_config(), opts.resume, opts.fresh, jobs=opts.jobs)


def sweep(
    config: ConfigArg = None, dataset: DatasetOpt = None, experiment: ExperimentOpt = None,
    systems: SystemsOpt = None, folds: FoldsOpt = None, runs: RunsOpt = None, epochs: EpochsOpt = None,
    pretrain_epochs: PreEpochsOpt = None, k: KOpt = None, scale: ScaleOpt = None,
    finetune: FinetuneOpt = None, seed: SeedOpt = None, device: DeviceOpt = None,
    resume: ResumeOpt = False, fresh: FreshOpt = False, no_ingest: NoIngestOpt = False,
    strategy: StrategyOpt = None, missing_rate: MissingRateOpt = None, test_missing_rate: TestMissingRateOpt = None,
    ablations: AblationsOpt = None, preset: PresetOpt = None, jobs: JobsOpt = 1,
) -> None:
    """Compare settings on validation only: stages 1-3 for every system and every 'a|b' variant,
    then results/<experiment>/validation.md and validation.parquet. The test split is never scored.

    A later `ramer run` of the same experiment reuses these checkpoints and tests the nested
    selections (each fold x run keeps the variant its own validation split chose).
    """
    # (a sweep writes nothing to Qdrant; --no-ingest only keeps the config equal to a later `ramer run`'s)
    opts = ExperimentOptions(**locals())
    runner.execute_sweep(opts.to_config(), opts.resume, opts.fresh, jobs=opts.jobs)


# The stage commands: `run`'s options without --resume (always on) and --ablations.
def pretrain(
    config: ConfigArg = None, dataset: DatasetOpt = None, experiment: ExperimentOpt = None,
    systems: SystemsOpt = None, folds: FoldsOpt = None, runs: RunsOpt = None,
    epochs: EpochsOpt = None, pretrain_epochs: PreEpochsOpt = None, k: KOpt = None,
    scale: ScaleOpt = None, finetune: FinetuneOpt = None, seed: SeedOpt = None,
    device: DeviceOpt = None, fresh: FreshOpt = False, no_ingest: NoIngestOpt = False,
    strategy: StrategyOpt = None, missing_rate: MissingRateOpt = None,
    test_missing_rate: TestMissingRateOpt = None, preset: PresetOpt = None, jobs: JobsOpt = 1,
) -> None:
    """Stage 1: train one encoder per modality per fold x run (val-selected)."""
    runner.run_stage("pretrain", ExperimentOptions(**locals()))


def index(
    config: ConfigArg = None, dataset: DatasetOpt = None, experiment: ExperimentOpt = None,
    systems: SystemsOpt = None, folds: FoldsOpt = None, runs: RunsOpt = None,
    epochs: EpochsOpt = None, pretrain_epochs: PreEpochsOpt = None, k: KOpt = None,
    scale: ScaleOpt = None, finetune: FinetuneOpt = None, seed: SeedOpt = None,
    device: DeviceOpt = None, fresh: FreshOpt = False, no_ingest: NoIngestOpt = False,
    strategy: StrategyOpt = None, missing_rate: MissingRateOpt = None,
    test_missing_rate: TestMissingRateOpt = None, preset: PresetOpt = None, jobs: JobsOpt = 1,
) -> None:
    """Stage 2: encode every row, store hidden features in Qdrant, build the FAISS fast path."""
    runner.run_stage("index", ExperimentOptions(**locals()))


def train(
    config: ConfigArg = None, dataset: DatasetOpt = None, experiment: ExperimentOpt = None,
    systems: SystemsOpt = None, folds: FoldsOpt = None, runs: RunsOpt = None,
    epochs: EpochsOpt = None, pretrain_epochs: PreEpochsOpt = None, k: KOpt = None,
    scale: ScaleOpt = None, finetune: FinetuneOpt = None, seed: SeedOpt = None,
    device: DeviceOpt = None, fresh: FreshOpt = False, no_ingest: NoIngestOpt = False,
    strategy: StrategyOpt = None, missing_rate: MissingRateOpt = None,
    test_missing_rate: TestMissingRateOpt = None, preset: PresetOpt = None, jobs: JobsOpt = 1,
) -> None:
    """Stage 3: missing-modality training of every system (reuses stages 1-2)."""
    runner.run_stage("train", ExperimentOptions(**locals()))


def evaluate(
    config: ConfigArg = None, dataset: DatasetOpt = None, experiment: ExperimentOpt = None,
    systems: SystemsOpt = None, folds: FoldsOpt = None, runs: RunsOpt = None,
    epochs: EpochsOpt = None, pretrain_epochs: PreEpochsOpt = None, k: KOpt = None,
    scale: ScaleOpt = None, finetune: FinetuneOpt = None, seed: SeedOpt = None,
    device: DeviceOpt = None, fresh: FreshOpt = False, no_ingest: NoIngestOpt = False,
    strategy: StrategyOpt = None, missing_rate: MissingRateOpt = None,
    test_missing_rate: TestMissingRateOpt = None, preset: PresetOpt = None,
    noise: NoiseOpt = None, noise_schedule: NoiseScheduleOpt = "linear", jobs: JobsOpt = 1,
) -> None:
    """Stage 4: evaluate on the test folds under every condition and write the report (--noise: also under Gaussian / impulse noise, noise_report.md)."""
    runner.run_stage("evaluate", ExperimentOptions(**locals()))


def demo(
    out: Annotated[Path, typer.Option(help="Where the demo dataset goes.")] = Path("data/demo"),
    # MER2024's shape: few labels (4 % of its clips), a large unlabeled pool (RAMER's DB)
    labeled: Annotated[int, typer.Option(help="Labeled samples.")] = 300,
    unlabeled: Annotated[int, typer.Option(help="Unlabeled pool.")] = 6000,
    folds: Annotated[str, typer.Option(help="Folds to run.")] = "0,1",
    runs: Annotated[int, typer.Option(help="Runs per fold.")] = 1,
    epochs: Annotated[int, typer.Option(help="Epochs (pretrain and train).")] = 15,
    experiment: Annotated[str, typer.Option(help="Experiment name.")] = "demo",
    preset: PresetOpt = None,
) -> None:
    """Synthetic MER2024-like data (few labels, a large pool) -> Qdrant collections -> all four stages -> report (a few minutes on 2 cores)."""
    check_demo(out, labeled, unlabeled, folds, runs, epochs, experiment, preset)
    opts = ExperimentOptions(dataset=out, experiment=experiment, folds=folds, runs=runs, epochs=epochs,
                             pretrain_epochs=epochs, preset=preset)
    runner.demo(out, labeled, unlabeled, opts)


def report(
    results: Annotated[Path, typer.Argument(help="A results/<experiment> folder (the output folder with --merge).")],
    merge: Annotated[list[Path] | None, typer.Option("--merge", help="Results folders of the same protocol to combine into RESULTS (repeatable).")] = None,
) -> None:
    """Re-render report.md and plots from saved metrics, without training.

    With --merge, first combine several experiments on the same dataset, seed, folds and
    runs (e.g. RAMER and a baselines run made in parallel) into RESULTS.
    """
    runner.render(results, merge)


def predict(
    experiment: Annotated[str, typer.Option("--experiment", "-e", help="A finished experiment.")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Parquet with `sample` and modality columns (null = missing).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output parquet (default: <input>.preds.parquet).")] = None,
    fold: Annotated[int, typer.Option(help="Which fold's model and collection to use.")] = 0,
    system: Annotated[str, typer.Option(help="System to predict with.")] = "ramer",
    explain: Annotated[bool, typer.Option("--explain", help="Add, per filled modality, the neighbours that filled it: fill_<m> (sample names) and fill_<m>_score.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file (never the input).")] = False,
) -> None:
    """Predict for samples with any subset of modalities; missing ones are filled by retrieval from the fold's train + unlabeled samples (never val/test, never the sample itself)."""
    runner.predict(experiment, input, out, fold, system, explain, overwrite)


COMMANDS = (run, sweep, pretrain, index, train, evaluate, demo, report, predict)  # --help lists them so


def register(app: typer.Typer) -> None:
    for command in COMMANDS:
        app.command()(command)
