"""What the experiment commands do, one function each: the CLI's only calls into the
protocol, the sweep, the noise evaluation and prediction, each with its console output.
Statistics come from pipeline.evaluation; this module only draws them.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.table import Table

from pipeline.cli.options import ExperimentOptions, check_noise
from pipeline.cli.progress import console, progress_display
from pipeline.config import Settings, load_settings
from pipeline.experiment import protocol
from pipeline.experiment.results import RunOutputs, write_results
from pipeline.training.config import ExperimentConfig


def _run_protocol(cfg: ExperimentConfig, resume: bool, fresh: bool, stop_after: str | None,
                  jobs: int) -> tuple[RunOutputs, Settings, float]:
    """Stages 1-4 (or up to `stop_after`) for every fold x run, with a progress display;
    -> (its outputs, the settings, when it started)."""
    from pipeline.errors import RamerError
    from pipeline.extras import load_faiss

    if not cfg.dataset:
        raise RamerError("no dataset given: pass --dataset DIR or set `dataset` in the config file")
    load_faiss()  # every stage needs the fast path: say so before any work
    settings = load_settings()
    bar, hooks = progress_display()
    t0 = time.perf_counter()
    with bar:
        out = protocol.run_experiment(cfg, settings, protocol.Progress(**hooks._asdict()), resume=resume,
                                      fresh=fresh, stop_after=stop_after, jobs=jobs)
    return out, settings, t0


def _held(cfg: ExperimentConfig):
    """The experiment's lock for a whole command (protocol, results, noise report): a
    second process on the same experiment is refused in one line naming the holder."""
    from pipeline.config import check_name
    from pipeline.experiment.lock import experiment_lock

    check_name("--experiment", cfg.experiment)  # it names the lock file
    return experiment_lock(load_settings().runs_dir, cfg.experiment)


def execute(cfg: ExperimentConfig, resume: bool, fresh: bool, stop_after: str | None = None,
            jobs: int = 1) -> Path | None:
    """Run the protocol with a progress bar; write results unless stopping early."""
    with _held(cfg):
        out, settings, t0 = _run_protocol(cfg, resume, fresh, stop_after, jobs)
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
    from pipeline.experiment.sweep import summarise, write_validation

    with _held(cfg):
        out, _, t0 = _run_protocol(cfg, resume, fresh, "sweep", jobs)
        task = load_dataset(cfg.dataset, validate=False).manifest.task
        path = write_validation(out.records, out.results_dir, f"{cfg.experiment}: {Path(cfg.dataset).name}", task,
                                dataset_fingerprint(cfg.dataset))
    console.print(validation_table(summarise(out.records)))
    console.print(f"\n[bold green]done[/] in {time.perf_counter() - t0:.0f} s · {path}")
    return path


def run_stage(stage: str, opts: ExperimentOptions) -> None:
    """`ramer pretrain | index | train | evaluate`: resume up to and including `stage`."""
    cfg = opts.to_config()
    if opts.noise:  # checked before the stages run, not after
        check_noise(opts.noise, opts.noise_schedule)
    with _held(cfg):
        execute(cfg, resume=True, fresh=opts.fresh, stop_after=None if stage == "evaluate" else stage,
                jobs=opts.jobs)
        if opts.noise and stage == "evaluate":
            evaluate_noise_cli(cfg, opts.noise, opts.noise_schedule)


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


def predict(experiment: str, input: Path, out: Path | None, fold: int, system: str, explain: bool,
            overwrite: bool = False) -> Path:
    """`ramer predict`: one experiment's model on new samples -> a parquet of predictions."""
    from pipeline.experiment.predict import predict_file

    path, n = predict_file(load_settings(), experiment, input, out, fold, system, explain, overwrite)
    console.print(f"{n} predictions -> {path}")
    return path


def render(results: Path, merge: list[Path] | None = None) -> Path:
    """`ramer report`: report.md (+ the strategy and noise sections) from saved metrics."""
    from pipeline.experiment.results import report_folder

    path = report_folder(results, merge)
    console.print(summary_table(results))
    console.print(f"report: {path}")
    return path


def demo(out: Path, labeled: int, unlabeled: int, opts: ExperimentOptions) -> Path | None:
    """`ramer demo`: synthetic data, then every stage on it, then where its views are."""
    from pipeline.data.synth import SynthConfig, write_synthetic
    from pipeline.extras import load_faiss

    load_faiss()  # before the demo data is written
    t0 = time.perf_counter()
    dims = {"audio": 256, "visual": 192, "text": 256}
    with console.status(f"generating {labeled} labeled + {unlabeled} unlabeled synthetic samples"):
        ds = write_synthetic(out, SynthConfig(labeled=labeled, unlabeled=unlabeled, dims=dims, seed=0))
    console.print(f"dataset: {out} ({len(ds)} samples, {time.perf_counter() - t0:.0f} s)")
    report = execute(opts.to_config(), resume=False, fresh=True)
    views = sorted((report.parent / "views").glob("*.html")) if report else []
    if views:  # the collections, browsable without a server
        console.print(f"collection views (open in a browser, offline): {', '.join(map(str, views))}\n"
                      f"make one yourself: ramer collections explore {views[0].stem} --out view.html",
                      soft_wrap=True)  # unwrapped: the paths stay copyable
    return report


def summary_table(results_dir: Path) -> Table:
    """Compact terminal view: systems x conditions with the task's first headline metric
    (WA, Acc or MAE) in %, plus its two headline metrics averaged over missing conditions."""
    from pipeline.evaluation.summary import display_scale, load_summary

    summ = load_summary(results_dir)
    first = summ.metrics[0]
    table = Table(title=f"test {first}, mean over folds x runs (all metrics in the report)", title_justify="left")
    table.add_column("system", style="bold", no_wrap=True)
    for c in summ.conditions:
        table.add_column(c, justify="right")
    for m in summ.metrics:
        table.add_column(f"avg {m}", justify="right", style="bold" if m == first else None)
    for row in summ.rows:
        cells = [f"{display_scale(first) * row.by_condition[c]:.1f}" if c in row.by_condition else "-"
                 for c in summ.conditions]
        for m in summ.metrics:
            k = display_scale(m)
            cells.append(f"{k * row.averages[m]:.{3 if k == 1 else 1}f}" if m in row.averages else "-")
        table.add_row(row.system, *cells)
    return table


def validation_table(rows: list[dict]) -> Table:
    """`ramer sweep`'s view of pipeline.experiment.sweep.summarise: one row per system x variant."""
    table = Table(title="validation score, mean over folds x runs (test never scored)", title_justify="left")
    for c in ("system", "variant", "mean", "std", "units", "chosen in"):
        table.add_column(c, justify="left" if c in ("system", "variant") else "right")
    for r in rows:
        table.add_row(r["system"], r["variant"], f"{r['mean']:.4f}", f"{r['std']:.4f}", str(r["units"]),
                      f"{r['chosen_in']}/{r['units']}")
    return table
