"""NMER: the model's two variants and the noise-robustness evaluation of a finished experiment."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import torch

from pipeline.models.base import Batch, ModelSpec, task_loss
from pipeline.models.registry import create_model, list_models

DIMS = (16, 12, 20)
SPEC = ModelSpec(("audio", "visual", "text"), DIMS, 4)


def _batch(seed: int = 0, b: int = 16, full: bool = True) -> Batch:
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(b, d, generator=g) for d in DIMS]
    avail = torch.ones(b, 3, dtype=torch.bool)
    avail[: b // 2, 1] = False
    return Batch(x=[x * avail[:, i : i + 1] for i, x in enumerate(xs)], avail=avail, rows=torch.arange(b),
                 y=torch.randint(0, 4, (b,), generator=g), x_full=xs if full else None)


def test_nmer_is_registered_with_a_vae_switch():
    assert "nmer" in list_models()
    assert create_model("nmer", SPEC).cfg.vae and not create_model("nmer", SPEC, vae=False).cfg.vae


def test_training_losses_and_the_ablation_without_vae():
    torch.manual_seed(0)
    full, plain = create_model("nmer", SPEC), create_model("nmer", SPEC, vae=False)
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in full.parameters())
    for model in (full, plain):
        model.train()
        out = model(_batch())
        assert out.aux_loss > 0 and torch.isfinite(out.aux_loss)
        (task_loss("single_label", out.logits, _batch().y) + out.aux_loss).backward()


def test_eval_is_deterministic_and_noise_free():
    torch.manual_seed(0)
    model = create_model("nmer", SPEC).eval()
    with torch.no_grad():
        a, b = model(_batch(full=False)).logits, model(_batch(full=True)).logits
    assert torch.equal(a, b)


def test_training_noise_is_drawn_per_modality_and_keeps_absent_zero():
    torch.manual_seed(0)
    model = create_model("nmer", SPEC, noise_prob=1.0)
    batch = _batch()
    ts = set()
    for _ in range(10):
        noisy = model.train_noise(batch)
        assert torch.all(noisy[1][: len(noisy[1]) // 2] == 0)
        ts.add(tuple(bool(torch.equal(n, x)) for n, x in zip(noisy, batch.x)))
    assert len(ts) >= 1 and any(not all(t) for t in ts)


def test_noise_evaluation_of_a_finished_experiment(tmp_path):
    from pipeline.config import Settings
    from pipeline.data.synth import SynthConfig, write_synthetic
    from pipeline.experiment import protocol
    from pipeline.experiment.noise import evaluate_noise
    from pipeline.experiment.results import write_results
    from pipeline.training.config import load_experiment

    data = tmp_path / "tiny"
    write_synthetic(data, SynthConfig(labeled=200, unlabeled=60, dims={"audio": 16, "visual": 12, "text": 20}, seed=3))
    cfg = load_experiment(
        None, dataset=str(data), experiment="noise", folds=[0], runs=1, ingest=False,
        systems=["nmer", "nmer(vae=false)", "mmin", "ramer"],
        **{"train.epochs": 2, "pretrain.epochs": 1, "encoder.d_model": 16, "encoder.hidden": 16,
           "encoder.heads": 2, "encoder.ff": 32, "encoder.layers": 1, "retrieval.k": 3},
    )
    st_ = Settings(data_dir=tmp_path, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    write_results(protocol.run_experiment(cfg, st_), cfg, st_)
    noises = [("gaussian", [50, 100]), ("impulse", [50])]
    report = evaluate_noise(cfg, st_, noises)
    table = pq.read_table(report.parent / "noise.parquet").to_pydict()  # pandas is not a dependency
    assert set(table["system"]) == {"nmer", "nmer(vae=false)", "mmin", "ramer"}
    assert set(zip(table["noise"], table["intensity"])) == {("none", 0), ("gaussian", 50), ("gaussian", 100), ("impulse", 50)}
    assert (report.parent / "noise_wa.png").is_file() and "gaussian noise" in report.read_text()
    diffs = [ln for ln in report.read_text().splitlines() if ln.startswith("- `")]  # the papers' differences, as report.md lists them
    assert any("`ramer`" in ln and "encoder.d_model 16 (paper 0)" in ln for ln in diffs), diffs
    again = evaluate_noise(cfg, st_, noises)  # seeded noise: a rerun reproduces every number
    np.testing.assert_array_equal(pq.read_table(again.parent / "noise.parquet").column("value").to_numpy(), table["value"])
