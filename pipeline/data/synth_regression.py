"""A synthetic CMU-MOSI-like regression dataset: sentiment targets in [-3, 3].

Same world as `pipeline.data.synth` (its speakers, per-modality tanh(linear) maps,
channel and observation noise, via its `_world`), but the shared latent encodes a
continuous sentiment s instead of a class: z = (s / 3) p_0 + (|s| / 3) p_1 / 2 + noise,
p_0 (polarity) and p_1 (intensity) two orthonormal directions. s follows MOSI's
bimodal shape: a mixture of a negative and a positive bump, clipped to [-3, 3].
Folds are stratified on the rounded target (`splits._strata`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.data.bounds import check_folds
from pipeline.data.dataset import Dataset, build_table, write_dataset
from pipeline.data.schema import Manifest, ModalitySpec
from pipeline.data.splits import assign_folds
from pipeline.data.synth import SynthConfig, _world
from pipeline.errors import DataError


@dataclass
class RegressionSynthConfig(SynthConfig):
    labeled: int = 2199  # CMU-MOSI's size
    unlabeled: int = 2000  # unlabeled pool (retrieval candidates); targets never stored
    conflict_rate: float = 0.0  # unused: no classes to conflict with
    neg_share: float = 0.45  # weight of the negative bump of the target mixture
    bump_mean: float = 1.3  # |mean| of each bump
    bump_std: float = 1.0  # std of each bump


def draw_targets(cfg: RegressionSynthConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    neg = rng.random(n) < cfg.neg_share
    s = np.where(neg, -cfg.bump_mean, cfg.bump_mean) + cfg.bump_std * rng.standard_normal(n)
    return np.clip(s, -3.0, 3.0).astype(np.float32)


def make_regression(cfg: RegressionSynthConfig, name: str = "synth-reg") -> tuple[Manifest, object]:
    """(manifest, features table). Unlabeled rows carry no target (null)."""
    check_folds("synthetic regression", cfg.folds)
    if cfg.unlabeled < 0:
        raise DataError(f"synthetic regression: --unlabeled {cfg.unlabeled} must be >= 0")
    if cfg.labeled < cfg.folds * 7 or not cfg.dims:
        raise DataError(f"synthetic regression: need >= {cfg.folds * 7} labeled samples, got {cfg.labeled}")
    world = _world(cfg)  # protos[0], protos[1] serve as polarity / intensity directions
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 10]))
    n = cfg.labeled + cfg.unlabeled
    s = draw_targets(cfg, n, rng)  # (n,)
    L = cfg.latent_dim
    z = (s[:, None] / 3) * world.protos[0] + (np.abs(s)[:, None] / 6) * world.protos[1]
    z = z + cfg.within_class * rng.standard_normal((n, L))  # (n, L)
    spk = rng.integers(0, cfg.speakers, n)
    feats = {}
    for m in cfg.dims:
        w_z, w_s, w_n, bias = world.maps[m]
        u = z + cfg.noise_of(m) * rng.standard_normal((n, L))  # emotion channel
        pre = u.astype(np.float32) @ w_z  # (n, D)
        pre += (world.speakers[spk] @ w_s + rng.standard_normal((n, cfg.nuisance_dim)) @ w_n + bias).astype(np.float32)
        feats[m] = (np.tanh(pre) + cfg.obs_noise * rng.standard_normal(pre.shape)).astype(np.float32)
    labeled = np.arange(n) < cfg.labeled
    manifest = Manifest(
        name=name, task="regression", classes=[],
        modalities=[ModalitySpec(name=m, dim=d) for m, d in cfg.dims.items()],
        folds=cfg.folds, seed=cfg.seed,
        provenance={"importer": "synth-regression",
                    "generator": "pipeline.data.synth_regression.make_regression", "config": asdict(cfg)},
    )
    samples = np.array([f"lab_{i:06d}" for i in range(cfg.labeled)] + [f"unl_{i:06d}" for i in range(cfg.unlabeled)], dtype=object)
    folds = assign_folds(np.where(labeled, s, np.nan).astype(np.float32), labeled, cfg.folds, cfg.seed)
    speaker = np.array([f"spk{i:03d}" for i in range(cfg.speakers)], dtype=object)[spk]
    table = build_table(manifest, samples, np.where(labeled, s, 0.0), labeled, folds, feats,
                        extra={"speaker": speaker})
    return manifest, table


def write_regression(out: str | Path, cfg: RegressionSynthConfig, name: str | None = None) -> Dataset:
    out = Path(out)
    manifest, table = make_regression(cfg, name or out.name)
    return write_dataset(out, manifest, table)
