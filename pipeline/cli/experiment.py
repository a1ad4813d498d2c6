"""`ramer run | sweep | pretrain | index | train | evaluate | demo | predict | report`.

Thin: options -> typed ExperimentConfig -> pipeline.experiment.protocol -> files.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from typing_extensions import Self

from pipeline.config import load_settings
from pipeline.experiment import protocol
from pipeline.experiment.results import write_results
from pipeline.training.config import ExperimentConfig, load_experiment

console = Console()

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


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def build_config(
    config: Path | None, dataset: Path | None, experiment: str | None, systems: str | None,
    folds: str | None, runs: int | None, epochs: int | None, pretrain_epochs: int | None,
    k: int | None, scale: str | None, finetune: bool | None, seed: int | None, device: str | None,
    no_ingest: bool = False, strategy: str | None = None, missing_rate: str | None = None,
    test_missing_rate: str | None = None, preset: str | None = None,
) -> ExperimentConfig:
    from pipeline.data.spans import parse_ranges

    def rate(text: str | None) -> list | None:  # '40-60' -> [0.4, 0.6]; '20-40,40-60' -> [[...], [...]]
        if text is None:
            return None
        try:
            ranges = [list(r) for r in parse_ranges(text)]
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        return ranges[0] if len(ranges) == 1 else ranges
    fold_list = _csv(folds)
    if fold_list is not None and not all(f.isdigit() for f in fold_list):
        raise typer.BadParameter(f"'{folds}' is not a comma list of fold numbers (0, 1, ...)", param_hint="--folds")
    return load_experiment(
        config, preset,
        dataset=None if dataset is None else str(dataset),
        experiment=experiment,
        systems=_split_systems(systems),
        folds=None if fold_list is None else [int(f) for f in fold_list],
        runs=runs, seed=seed, device=device, strategy=strategy,
        missing_rate=rate(missing_rate), test_missing_rate=rate(test_missing_rate),
        **{"train.epochs": epochs, "pretrain.epochs": pretrain_epochs, "retrieval.k": k,
           "retrieval.scale": scale, "retrieval.finetune_encoders": finetune,
           "ingest": False if no_ingest else None},
    )


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


def rich_progress() -> tuple[Progress, protocol.Progress]:
    bar = Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console, transient=False,
    )
    state: dict = {}

    def start(total: int) -> None:
        state["task"] = bar.add_task("starting", total=total)

    def stage(text: str) -> None:
        state["stage"] = text
        bar.update(state["task"], description=text)

    def epoch(text: str, e: int, rec: dict) -> None:
        bar.update(state["task"], description=f"{text} · epoch {e + 1} · val {rec['val']:.3f}")

    hooks = protocol.Progress(
        on_start=start, on_stage=stage, on_epoch=epoch,
        on_advance=lambda n: bar.advance(state["task"], n),
    )
    return bar, hooks


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class LogProgress:
    """Progress as plain log lines, for a stdout that is not a terminal (CI, nohup, a log
    file), where a live bar prints nothing for minutes or one truncated line: a line per
    stage of every fold x run, and a line per epoch at most every `epoch_every` seconds,
    each with the work units done, elapsed time and ETA."""

    def __init__(self, emit=None, clock=time.monotonic, epoch_every: float = 30.0) -> None:
        self.emit = emit or (lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True))
        self.clock, self.epoch_every = clock, epoch_every
        self.total, self.done, self.t0, self.last = 0, 0, clock(), float("-inf")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _line(self, text: str) -> None:
        now = self.clock()
        elapsed = now - self.t0
        eta = _clock(elapsed / self.done * (self.total - self.done)) if self.done else "-"
        self.emit(f"{text} | {self.done}/{self.total} units, elapsed {_clock(elapsed)}, ETA {eta}")
        self.last = now

    def start(self, total: int) -> None:
        self.total, self.t0 = total, self.clock()

    def stage(self, text: str) -> None:
        self._line(text)

    def epoch(self, text: str, e: int, rec: dict) -> None:
        if self.clock() - self.last >= self.epoch_every:
            self._line(f"{text} · epoch {e + 1} · val {rec['val']:.3f}")

    def advance(self, n: int) -> None:
        self.done += n

    def hooks(self) -> protocol.Progress:
        return protocol.Progress(on_start=self.start, on_stage=self.stage, on_epoch=self.epoch,
                                 on_advance=self.advance)


def progress_display() -> tuple[Progress | LogProgress, protocol.Progress]:
    """A live rich bar on a terminal, plain log lines anywhere else."""
    if console.is_terminal:
        return rich_progress()
    plain = LogProgress()
    return plain, plain.hooks()


def execute(cfg: ExperimentConfig, resume: bool, fresh: bool, stop_after: str | None = None,
            jobs: int = 1) -> Path | None:
    """Run the protocol with a progress bar; write results unless stopping early."""
    from pipeline.errors import RamerError
    from pipeline.extras import load_faiss

    if not cfg.dataset:
        raise RamerError("no dataset given: pass --dataset DIR or set `dataset` in the config file")
    load_faiss()  # every stage needs the fast path: say so before any work
    settings = load_settings()
    bar, hooks = progress_display()
    t0 = time.perf_counter()
    with bar:
        out = protocol.run_experiment(cfg, settings, hooks, resume=resume, fresh=fresh, stop_after=stop_after,
                                      jobs=jobs)
    if stop_after is not None:
        console.print(f"stage '{stop_after}' done for every fold x run in {time.perf_counter() - t0:.0f} s "
                      f"(checkpoints: {settings.runs_dir / cfg.experiment})")
        return None
    report = write_results(out, cfg, settings)
    console.print(summary_table(report.parent))
    console.print(f"\n[bold green]done[/] in {time.perf_counter() - t0:.0f} s · report: {report}")
    return report


def execute_sweep(cfg: ExperimentConfig, resume: bool, fresh: bool, jobs: int = 1) -> Path:
    """`ramer sweep`: stages 1-3, then validation.md / validation.parquet; never test."""
    from pipeline.data.dataset import load_dataset
    from pipeline.data.fingerprint import dataset_fingerprint
    from pipeline.errors import RamerError
    from pipeline.experiment.sweep import summarise, write_validation
    from pipeline.extras import load_faiss

    if not cfg.dataset:
        raise RamerError("no dataset given: pass --dataset DIR or set `dataset` in the config file")
    load_faiss()
    settings = load_settings()
    bar, hooks = progress_display()
    t0 = time.perf_counter()
    with bar:
        out = protocol.run_experiment(cfg, settings, hooks, resume=resume, fresh=fresh, stop_after="sweep", jobs=jobs)
    task = load_dataset(cfg.dataset, validate=False).manifest.task
    path = write_validation(out.records, out.results_dir, f"{cfg.experiment}: {Path(cfg.dataset).name}", task,
                            dataset_fingerprint(cfg.dataset))
    table = Table(title="validation score, mean over folds x runs (test never scored)", title_justify="left")
    for c in ("system", "variant", "mean", "std", "units", "chosen in"):
        table.add_column(c, justify="left" if c in ("system", "variant") else "right")
    for r in summarise(out.records):
        table.add_row(r["system"], r["variant"], f"{r['mean']:.4f}", f"{r['std']:.4f}", str(r["units"]),
                      f"{r['chosen_in']}/{r['units']}")
    console.print(table)
    console.print(f"\n[bold green]done[/] in {time.perf_counter() - t0:.0f} s · {path}")
    return path


def evaluate_noise_cli(cfg: ExperimentConfig, specs: list[str], schedule: str) -> Path:
    """`ramer evaluate --noise ...`: the trained models under noise -> noise_report.md."""
    from pipeline.data.noise import parse_noise
    from pipeline.errors import RamerError
    from pipeline.experiment.noise import evaluate_noise

    try:
        noises = [parse_noise(s) for s in specs]
    except ValueError as exc:
        raise RamerError(str(exc)) from None
    t0 = time.perf_counter()
    with console.status("evaluating under noise") as status:
        path = evaluate_noise(cfg, load_settings(), noises, schedule, on_stage=lambda t: status.update(t))
    console.print(f"noise report: {path} ({time.perf_counter() - t0:.0f} s)")
    return path


def _check_noise(specs: list[str], schedule: str) -> None:
    from pipeline.data.noise import SCHEDULES, parse_noise

    for spec in specs:
        try:
            parse_noise(spec)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--noise") from None
    if schedule not in SCHEDULES:
        raise typer.BadParameter(f"'{schedule}': choose one of {', '.join(SCHEDULES)}", param_hint="--noise-schedule")


def _check_demo(out: Path, labeled: int, unlabeled: int, folds: str, runs: int, epochs: int, experiment: str,
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


def summary_table(results_dir: Path) -> Table:
    """Compact terminal view: systems x conditions with the task's first headline metric
    (WA, Acc or MAE) in %, plus its two headline metrics averaged over missing conditions."""
    import pyarrow.parquet as pq

    from pipeline.evaluation.report import headline_metrics
    from pipeline.evaluation.tables import ordered_unique, summarise

    metrics = pq.read_table(results_dir / "metrics.parquet")
    first, *rest = headline_metrics(metrics)
    scale = 1 if first == "MAE" else 100  # MAE is in label units, the rest are shares
    summ = summarise(metrics, ["system", "condition", "metric"])
    conds = ordered_unique(metrics.column("condition").to_pylist())
    missing = [c for c in conds if len(c) < max(map(len, conds))] or conds
    table = Table(title=f"test {first}, mean over folds x runs (all metrics in the report)", title_justify="left")
    table.add_column("system", style="bold", no_wrap=True)
    for c in conds:
        table.add_column(c, justify="right")
    for m in (first, *rest):
        table.add_column(f"avg {m}", justify="right", style="bold" if m == first else None)
    for s in ordered_unique(metrics.column("system").to_pylist()):
        cells = [f"{scale * summ[(s, c, first)][0]:.1f}" if (s, c, first) in summ else "-" for c in conds]
        for m in (first, *rest):
            vals = [summ[(s, c, m)][0] for c in missing if (s, c, m) in summ]
            k = 1 if m == "MAE" else 100
            cells.append(f"{k * sum(vals) / len(vals):.{3 if k == 1 else 1}f}" if vals else "-")
        table.add_row(s, *cells)
    return table


def with_ablations(cfg: ExperimentConfig, ablations: str | None) -> ExperimentConfig:
    """`cfg` plus the systems of the `--ablations` groups (none for None)."""
    if not ablations:
        return cfg
    from dataclasses import replace

    from pipeline.training.ablations import ablation_systems

    extra = ablation_systems(_csv(ablations) or [], cfg.retrieval.scale, cfg.retrieval.k)
    return replace(cfg, systems=cfg.systems + [s for s in extra if s not in cfg.systems])


def register(app: typer.Typer) -> None:
    @app.command()
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
        cfg = build_config(config, dataset, experiment, systems, folds, runs, epochs, pretrain_epochs,
                           k, scale, finetune, seed, device, no_ingest, strategy, missing_rate, test_missing_rate,
                           preset)
        cfg = with_ablations(cfg, ablations)
        execute(cfg, resume, fresh, jobs=jobs)

    @app.command()
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
        cfg = build_config(config, dataset, experiment, systems, folds, runs, epochs, pretrain_epochs,
                           k, scale, finetune, seed, device, no_ingest, strategy, missing_rate, test_missing_rate,
                           preset)
        # (a sweep writes nothing to Qdrant; --no-ingest only keeps the config equal to a later `ramer run`'s)
        cfg = with_ablations(cfg, ablations)
        execute_sweep(cfg, resume, fresh, jobs=jobs)

    def _stage_command(stage: str, doc: str):
        def command(
            config: ConfigArg = None, dataset: DatasetOpt = None, experiment: ExperimentOpt = None,
            systems: SystemsOpt = None, folds: FoldsOpt = None, runs: RunsOpt = None,
            epochs: EpochsOpt = None, pretrain_epochs: PreEpochsOpt = None, k: KOpt = None,
            scale: ScaleOpt = None, finetune: FinetuneOpt = None, seed: SeedOpt = None,
            device: DeviceOpt = None, fresh: FreshOpt = False, no_ingest: NoIngestOpt = False,
            strategy: StrategyOpt = None, missing_rate: MissingRateOpt = None,
            test_missing_rate: TestMissingRateOpt = None, preset: PresetOpt = None,
            noise: NoiseOpt = None, noise_schedule: NoiseScheduleOpt = "linear", jobs: JobsOpt = 1,
        ) -> None:
            cfg = build_config(config, dataset, experiment, systems, folds, runs, epochs, pretrain_epochs,
                               k, scale, finetune, seed, device, no_ingest, strategy, missing_rate, test_missing_rate,
                               preset)
            if noise:  # checked before the stages run, not after
                _check_noise(noise, noise_schedule)
            execute(cfg, resume=True, fresh=fresh, stop_after=None if stage == "evaluate" else stage, jobs=jobs)
            if noise and stage == "evaluate":
                evaluate_noise_cli(cfg, noise, noise_schedule)

        command.__doc__ = doc
        if stage != "evaluate":  # --noise belongs to `ramer evaluate` only
            # eval_str: with `from __future__ import annotations` they are strings, and typer
            # would then see bare types without their Annotated help, short flags and kinds
            sig = inspect.signature(command, eval_str=True)
            command.__signature__ = sig.replace(
                parameters=[p for n, p in sig.parameters.items() if n not in ("noise", "noise_schedule")]
            )
        app.command(name=stage)(command)

    _stage_command("pretrain", "Stage 1: train one encoder per modality per fold x run (val-selected).")
    _stage_command("index", "Stage 2: encode every row, store hidden features in Qdrant, build the FAISS fast path.")
    _stage_command("train", "Stage 3: missing-modality training of every system (reuses stages 1-2).")
    _stage_command("evaluate", "Stage 4: evaluate on the test folds under every condition and write the report "
                   "(--noise: also under Gaussian / impulse noise, noise_report.md).")

    @app.command()
    def demo(
        out: Annotated[Path, typer.Option(help="Where the demo dataset goes.")] = Path("data/demo"),
        labeled: Annotated[int, typer.Option(help="Labeled samples.")] = 1200,
        unlabeled: Annotated[int, typer.Option(help="Unlabeled pool.")] = 3000,
        folds: Annotated[str, typer.Option(help="Folds to run.")] = "0,1",
        runs: Annotated[int, typer.Option(help="Runs per fold.")] = 1,
        epochs: Annotated[int, typer.Option(help="Epochs (pretrain and train).")] = 15,
        experiment: Annotated[str, typer.Option(help="Experiment name.")] = "demo",
        preset: PresetOpt = None,
    ) -> None:
        """Synthetic MER2024-like data -> Qdrant collections -> all four stages -> report (a few minutes on 2 cores)."""
        from pipeline.data.synth import SynthConfig, write_synthetic
        from pipeline.extras import load_faiss

        _check_demo(out, labeled, unlabeled, folds, runs, epochs, experiment, preset)
        load_faiss()  # before the demo data is written
        t0 = time.perf_counter()
        dims = {"audio": 256, "visual": 192, "text": 256}
        with console.status(f"generating {labeled} labeled + {unlabeled} unlabeled synthetic samples"):
            ds = write_synthetic(out, SynthConfig(labeled=labeled, unlabeled=unlabeled, dims=dims, seed=0))
        console.print(f"dataset: {out} ({len(ds)} samples, {time.perf_counter() - t0:.0f} s)")
        cfg = build_config(None, out, experiment, None, folds, runs, epochs, epochs, None, None, None, None, None,
                           preset=preset)
        report = execute(cfg, resume=False, fresh=True)
        views = sorted((report.parent / "views").glob("*.html")) if report else []
        if views:  # issue 18: the collections, browsable without a server
            console.print(f"collection views (open in a browser, offline): {', '.join(map(str, views))}\n"
                          f"make one yourself: ramer collections explore {views[0].stem} --out view.html",
                          soft_wrap=True)  # unwrapped: the paths stay copyable

    @app.command()
    def report(
        results: Annotated[Path, typer.Argument(help="A results/<experiment> folder (the output folder with --merge).")],
        merge: Annotated[list[Path] | None, typer.Option("--merge", help="Results folders of the same protocol to combine into RESULTS (repeatable).")] = None,
    ) -> None:
        """Re-render report.md and plots from saved metrics, without training.

        With --merge, first combine several experiments on the same dataset, seed, folds and
        runs (e.g. RAMER and a baselines run made in parallel) into RESULTS.
        """
        from pipeline.experiment.results import report_folder

        path = report_folder(results, list(merge) if merge else None)
        console.print(summary_table(results))
        console.print(f"report: {path}")

    @app.command()
    def predict(
        experiment: Annotated[str, typer.Option("--experiment", "-e", help="A finished experiment.")],
        input: Annotated[Path, typer.Option("--input", "-i", help="Parquet with `sample` and modality columns (null = missing).")],
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Output parquet (default: <input>.preds.parquet).")] = None,
        fold: Annotated[int, typer.Option(help="Which fold's model and collection to use.")] = 0,
        system: Annotated[str, typer.Option(help="System to predict with.")] = "ramer",
        explain: Annotated[bool, typer.Option("--explain", help="Add, per filled modality, the neighbours that filled it: fill_<m> (sample names) and fill_<m>_score.")] = False,
    ) -> None:
        """Predict for samples with any subset of modalities; missing ones are filled by retrieval from the fold's train + unlabeled samples (never val/test, never the sample itself)."""
        from pipeline.experiment.predict import predict_file

        settings = load_settings()
        path, n = predict_file(settings, experiment, input, out, fold, system, explain)
        console.print(f"{n} predictions -> {path}")
