"""A synthetic CMU-MOSEI-like multi-label dataset: 6 emotions, ~1.6 labels per sample.

Label sets follow CMU-MOSEI's statistics (CARAT paper, Table 5): the number of emotions
per clip is drawn from MOSEI's cardinality histogram (None 3372, one 11050, two 5526,
three 2084, four 553, five 84, six 8), and which emotions from weighted sampling without
replacement whose weights are calibrated so the marginals match MOSEI's frequencies
(happiness 12240, sadness 5918, anger 4933, disgust 3680, surprise 1892, fear 2286).
Samples with no emotion ("None") are labeled with an empty set.

Features come from the same world as `pipeline.data.synth` (speakers, per-modality
tanh(linear) maps, channel and observation noise): the shared latent is the sum of the
present emotions' unit prototypes, each with a random intensity, plus within-sample
variation, so every modality is informative (text > audio > visual) and a neighbour
found through one modality tends to share emotions in the others. Each modality also
expresses each emotion with its own fixed gain (CARAT's modality-to-label dependence).
Deterministic in the seed; the unlabeled pool's label sets go to the oracle file only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.data.bounds import check_folds
from pipeline.data.dataset import Dataset, build_table, write_dataset
from pipeline.data.schema import Manifest, ModalitySpec
from pipeline.data.splits import assign_folds
from pipeline.data.synth import ORACLE, SynthConfig, _world
from pipeline.errors import DataError

EMOTIONS = ["happy", "sad", "anger", "surprise", "disgust", "fear"]  # CARAT's tgt ids 4..9
MOSEI_FREQ = [12240, 5918, 4933, 1892, 3680, 2286]  # clips carrying each emotion (Table 5)
MOSEI_CARD = [3372, 11050, 5526, 2084, 553, 84, 8]  # clips with 0..6 emotions (Table 5)


def _mosei_dims() -> dict[str, int]:
    return {"audio": 74, "visual": 35, "text": 300}  # COVAREP, FACET, GloVe (aligned MOSEI)


@dataclass
class MultiLabelSynthConfig(SynthConfig):
    labeled: int = 3000  # labeled clips (MOSEI has 22,677)
    unlabeled: int = 3000  # unlabeled pool (label sets only in the oracle file)
    dims: dict[str, int] = field(default_factory=_mosei_dims)
    conflict_rate: float = 0.0  # unused here: modality gains play that role
    intensity: tuple[float, float] = (0.6, 1.2)  # uniform range of each present emotion's weight
    modality_gain: float = 0.3  # per (modality, emotion) gain drawn from 1 +- this


def draw_label_sets(n: int, rng: np.random.Generator, calib_rounds: int = 6) -> np.ndarray:
    """(n, 6) float32 multi-hot with MOSEI's cardinality histogram and label marginals."""
    card_p = np.array(MOSEI_CARD, float) / sum(MOSEI_CARD)
    target = np.array(MOSEI_FREQ, float) / sum(MOSEI_CARD)  # P(emotion j present)
    # Calibrate sampling weights on a fixed simulation (Plackett-Luce top-k via Gumbel keys).
    sim_rng = np.random.default_rng(12345)
    k_sim = sim_rng.choice(len(card_p), size=20000, p=card_p)
    g_sim = sim_rng.gumbel(size=(20000, len(EMOTIONS)))
    logw = np.log(target)
    for _ in range(calib_rounds):
        got = _top_k(logw + g_sim, k_sim).mean(0)
        logw += np.log(target / np.maximum(got, 1e-6))
    k = rng.choice(len(card_p), size=n, p=card_p)
    return _top_k(logw + rng.gumbel(size=(n, len(EMOTIONS))), k).astype(np.float32)


def _top_k(keys: np.ndarray, k: np.ndarray) -> np.ndarray:
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)  # 0 = largest key
    return rank < k[:, None]


def make_multilabel(cfg: MultiLabelSynthConfig, name: str = "synth-ml") -> tuple[Manifest, pa.Table, pa.Table]:
    """(manifest, features table, oracle table of the unlabeled pool's label sets)."""
    check_folds("synthetic multi-label", cfg.folds)
    if cfg.unlabeled < 0:
        raise DataError(f"synthetic multi-label: --unlabeled {cfg.unlabeled} must be >= 0")
    if cfg.labeled < cfg.folds * 10 or not cfg.dims:
        raise DataError(f"synthetic multi-label: need >= {cfg.folds * 10} labeled samples, got {cfg.labeled}")
    if cfg.latent_dim < len(EMOTIONS):
        raise DataError(f"synthetic multi-label: latent_dim {cfg.latent_dim} < {len(EMOTIONS)} emotions")
    world = _world(cfg)  # protos[:6] are orthonormal emotion directions
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 20]))
    n = cfg.labeled + cfg.unlabeled
    y = draw_label_sets(n, rng)  # (n, C)
    lo, hi = cfg.intensity
    weight = y * rng.uniform(lo, hi, y.shape)  # (n, C) per-emotion intensity
    spk = rng.integers(0, cfg.speakers, n)
    C, L = len(EMOTIONS), cfg.latent_dim
    feats = {}
    for m in cfg.dims:
        w_z, w_s, w_n, bias = world.maps[m]
        mrng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 21, *m.encode()]))
        gain = 1.0 + cfg.modality_gain * mrng.uniform(-1, 1, C)  # (C,) this modality's emphasis
        z = (weight * gain) @ world.protos[:C]  # (n, L)
        z = z + cfg.within_class * rng.standard_normal((n, L))
        u = z + cfg.noise_of(m) * rng.standard_normal((n, L))  # emotion channel
        pre = u.astype(np.float32) @ w_z  # (n, D)
        pre += (world.speakers[spk] @ w_s + rng.standard_normal((n, cfg.nuisance_dim)) @ w_n + bias).astype(np.float32)
        np.tanh(pre, out=pre)
        pre += (cfg.obs_noise * rng.standard_normal(pre.shape)).astype(np.float32)
        feats[m] = pre
    labeled = np.arange(n) < cfg.labeled
    manifest = Manifest(
        name=name, task="multi_label", classes=EMOTIONS,
        modalities=[ModalitySpec(name=m, dim=d) for m, d in cfg.dims.items()],
        folds=cfg.folds, seed=cfg.seed,
        provenance={
            "importer": "synth-multilabel",
            "generator": "pipeline.data.synth_multilabel.make_multilabel",
            "config": asdict(cfg),
            "oracle": f"{ORACLE}: label sets of the unlabeled pool, diagnostics only",
        },
    )
    samples = np.array(
        [f"lab_{i:06d}" for i in range(cfg.labeled)] + [f"unl_{i:06d}" for i in range(cfg.unlabeled)], dtype=object
    )
    folds = assign_folds(y, labeled, cfg.folds, cfg.seed)
    speaker = np.array([f"spk{i:03d}" for i in range(cfg.speakers)], dtype=object)[spk]
    table = build_table(manifest, samples, np.where(labeled[:, None], y, 0), labeled, folds, feats,
                        extra={"speaker": speaker})
    unl = ~labeled
    names = np.array(EMOTIONS, dtype=object)
    oracle = pa.table({
        "sample": pa.array(samples[unl], pa.string()),
        "labels": pa.array([names[row > 0].tolist() for row in y[unl]], pa.list_(pa.string())),
    })
    return manifest, table, oracle


def write_multilabel(out: str | Path, cfg: MultiLabelSynthConfig, name: str | None = None) -> Dataset:
    out = Path(out)
    manifest, table, oracle = make_multilabel(cfg, name or out.name)
    return write_dataset(out, manifest, table, extra_files={ORACLE: oracle})
