"""Robustness of trained models under noise (NMER's evaluation): `ramer evaluate --noise`.

For every (fold, run) and system of a finished experiment, the saved model
(runs/<experiment>/f{f}_r{r}/<system>.pt) is rebuilt through `FoldRun.build_model` (so
RAMER gets its retrieval filler back; the loop is `pipeline.experiment.noise`) and
evaluated here on the fold's test split with every
modality present and noisy (`pipeline.data.noise`) at each requested type and intensity.
Noise is seeded per (fold, run, type, intensity) only: every system sees the very same
noisy inputs and a rerun reproduces them. Its scale (feature std, max |x| per modality)
comes from the fold's training rows. Intensity 0 (clean) is always evaluated too.
Kept frame sequences (a CARAT trained on frames reads only them) get the same noise as
they are read, at the scale of the training rows' frames.

RAMER here encodes the noisy inputs (its stored clean hidden vectors are not used), and
where a sample really lacks a modality its retrieval queries with the encoding of the
noisy available ones, never with neighbour lists cached from the clean features.
Outputs in results/<experiment>/: noise.parquet (long format: system, fold, run, noise,
intensity, metric, value), noise_report.md, noise_wa.png.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from pipeline.data.bank import FeatureBank
from pipeline.data.noise import NoiseScheduler, NoiseStats
from pipeline.evaluation.figures import noise_figure, save_figure
from pipeline.evaluation.metrics import task_metrics
from pipeline.evaluation.tables import markdown_table, ordered_unique, summarise
from pipeline.models.inference import predict

log = logging.getLogger(__name__)
NOISE_COLUMNS = ["system", "fold", "run", "noise", "intensity", "metric", "value"]


def train_stats(bank: FeatureBank, rows: np.ndarray) -> NoiseStats:
    """Per-modality std and max |x| over the present values of `rows`."""
    p = torch.as_tensor(bank.pos[rows])
    xs = [x[p][bank.present[p, i]] for i, x in enumerate(bank.x)]
    return NoiseStats.of(xs)


def frame_stats(bank: FeatureBank, rows: np.ndarray, vectors: NoiseStats, limit: int = 512) -> NoiseStats | None:
    """Per-modality std and max |x| over the valid frames of (at most `limit` of) `rows`;
    None when the dataset keeps no frames. A modality without frames keeps its vector
    scale from `vectors` (`train_stats`): its one "frame" is the already noisy vector."""
    if bank.seq is None:
        return None
    rows = np.sort(np.asarray(rows))[:limit]
    std, maxabs = list(vectors.std), list(vectors.maxabs)
    for i, s in enumerate(bank.seq):
        if s is None:
            continue
        ln = np.asarray(s.lengths[rows])
        valid = np.arange(s.frames)[None, :] < ln[:, None]  # (n, T)
        vals = np.asarray(s.values[rows], np.float32)  # (n, T, D)
        if bank.scaler is not None:  # the scale the model sees: frames after stage 0
            vals = bank.scaler.transform(bank.modality_names[i], vals)
        frames = torch.from_numpy(vals[valid])  # (valid frames, D)
        if frames.numel():
            one = NoiseStats.of([frames])
            std[i], maxabs[i] = one.std[0], one.maxabs[0]
    return NoiseStats(tuple(std), tuple(maxabs))


def noisy_bank(
    bank: FeatureBank, rows: np.ndarray, scheduler: NoiseScheduler, t: int, seed: int, stats: NoiseStats,
    frames: NoiseStats | None = None,
) -> FeatureBank:
    """A shallow copy of `bank` whose `rows` carry seeded noise at intensity t. With
    `frames` (their scale, see `frame_stats`) the kept frame sequences get the same kind
    and intensity of noise as they are read, seeded by (seed, modality, batch rows)."""
    rows = np.sort(np.asarray(rows))
    p = torch.as_tensor(bank.pos[rows])
    gen = torch.Generator().manual_seed(seed)
    noisy = scheduler([x[p] for x in bank.x], t, gen, stats)
    if frames is None or bank.seq is None:
        return bank.with_rows(p, noisy)

    def frame_noise(i: int, batch_rows: np.ndarray, x: torch.Tensor) -> torch.Tensor:  # x (B, T, D)
        words = [seed, i, len(batch_rows), *np.asarray(batch_rows[:8], np.int64).tolist()]
        g = torch.Generator().manual_seed(int(np.random.SeedSequence(words).generate_state(1)[0]))
        flat = x.reshape(-1, x.shape[-1])  # padding frames are all-zero rows: left as they are
        return scheduler.one(flat, t, g, frames.std[i], frames.maxabs[i]).reshape(x.shape)

    return bank.with_rows(p, noisy, frame_noise)


def noise_rows(
    model, bank: FeatureBank, rows: np.ndarray, y: np.ndarray, task: str,
    noises: Sequence[tuple[str, list[int]]], seed_of: Callable[[str], int], stats: NoiseStats,
    schedule: str = "linear", frames: NoiseStats | None = None,
) -> list[dict]:
    """Metric rows (noise, intensity, metric, value) for one model; clean = ('none', 0)."""
    every = np.ones(len(bank.x), bool)
    out = [{"noise": "none", "intensity": 0, "metric": k, "value": v}
           for k, v in task_metrics(task, y, predict(model, bank, rows, every)).items()]
    for kind, ts in noises:
        sched = NoiseScheduler(kind, schedule)
        for t in ts:
            nb = noisy_bank(bank, rows, sched, t, seed_of(f"noise-{kind}-{t}"), stats, frames)
            logits = predict(model, nb, rows, every)
            out += [{"noise": kind, "intensity": t, "metric": k, "value": v}
                    for k, v in task_metrics(task, y, logits).items()]
    return out


def _headline(metrics: list[str]) -> list[str]:
    for pair in (("WA", "UA"), ("MAE", "Acc-2")):
        if set(pair) <= set(metrics):
            return list(pair)
    return metrics[:2]


def render_noise_report(results_dir: Path, seconds: float | None = None,
                        differences: list[str] | None = None) -> Path:
    """noise_report.md from noise.parquet. `differences`: the lines saying which settings
    differ from the papers (`pipeline.experiment.differences.differences_lines`), shown
    under the tables, as in report.md."""
    table = pq.read_table(results_dir / "noise.parquet")
    summ = summarise(table, ["system", "noise", "intensity", "metric"])
    systems = ordered_unique(table.column("system").to_pylist())
    metric_names = _headline(ordered_unique(table.column("metric").to_pylist()))
    kinds = [k for k in ordered_unique(table.column("noise").to_pylist()) if k != "none"]
    n_runs = len(set(zip(table.column("fold").to_pylist(), table.column("run").to_pylist())))
    parts = [f"# {results_dir.name}: robustness to noise", "",
             f"Test split, every modality present, noise at intensity t (0 = clean); mean ± std over "
             f"{n_runs} fold x run combinations; seeded noise identical for every system. "
             "Raw numbers: `noise.parquet`." + (f" Evaluation took {seconds:.0f} s." if seconds else ""), ""]
    scale = (lambda m, v: f"{v:.3f}") if "MAE" in metric_names else (lambda m, v: f"{100 * v:.2f}")
    for kind in kinds:
        ts = sorted({t for (s, k, t, m) in summ if k == kind})
        head = ["system", *(f"clean {m}" for m in metric_names), *(f"t={t} {m}" for t in ts for m in metric_names)]
        rows = []
        for s in systems:
            cells = [s]
            for key in [("none", 0)] + [(kind, t) for t in ts]:
                for m in metric_names:
                    v = summ.get((s, *key, m))
                    cells.append(f"{scale(m, v[0])} ± {scale(m, v[1])}" if v else "–")
            rows.append(cells)
        parts += [f"## {kind} noise", "", *markdown_table(head, rows), ""]
    parts += list(differences or [])
    save_figure(noise_figure(summ, systems, kinds, metric_names[0], n_runs), results_dir / "noise_wa.png")
    parts += [f"![{metric_names[0]} vs intensity](noise_wa.png)", ""]
    path = results_dir / "noise_report.md"
    path.write_text("\n".join(parts))
    return path
