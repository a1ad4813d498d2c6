"""A synthetic MER2024-like dataset with known structure.

Every sample has an emotion latent z (class prototype + within-class variation) that all
its modalities share, so a neighbour found through one modality tends to carry the same
emotion in the others: the property RAMER's retrieval exploits. Each modality observes z
through its own noisy channel (text clearest, then audio, then visual), mixed with a
speaker/style latent shared across the sample's modalities and a modality-specific
nuisance latent, passed through a fixed random tanh(linear) map and observation noise.
In a share of samples one modality expresses a different emotion (conflict).

The unlabeled pool comes from the same class mixture; its labels go only to
`oracle_unlabeled.parquet` inside the dataset directory, which training never reads.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.data.bounds import check_dim, check_folds
from pipeline.data.dataset import Dataset, build_table, write_dataset
from pipeline.data.schema import Manifest, ModalitySpec
from pipeline.data.splits import assign_folds
from pipeline.errors import DataError

CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
MER2024_COUNTS = [1248, 1208, 1038, 730, 616, 190]  # of 5030 labeled (MER2024 train)
ORACLE = "oracle_unlabeled.parquet"
CHUNK = 4096  # rows generated per step (bounds the float64 scratch memory)


def _default_dims() -> dict[str, int]:
    return {"audio": 1024, "visual": 768, "text": 1024}


def _default_channel_noise() -> dict[str, float]:
    return {"text": 0.36, "audio": 0.44, "visual": 0.64}


@dataclass
class SynthConfig:
    labeled: int = 5030  # labeled samples (MER2024 train size)
    unlabeled: int = 20000  # unlabeled pool size
    dims: dict[str, int] = field(default_factory=_default_dims)  # modality -> feature dim
    folds: int = 5  # stratified folds over the labeled samples
    seed: int = 0  # everything below is drawn from this seed
    missing_rate: float = 0.0  # share of (sample, modality) values marked absent (null)
    speakers: int = 200  # speaker ids, shared by labeled and unlabeled samples
    latent_dim: int = 24  # dimension of the shared emotion latent z
    within_class: float = 0.22  # std of z around its class prototype (unit-norm prototypes)
    # std of the per-modality emotion channel noise added to z (smaller = more informative);
    # modalities not listed use `default_channel_noise`
    channel_noise: dict[str, float] = field(default_factory=_default_channel_noise)
    default_channel_noise: float = 1.0
    speaker_dim: int = 8  # speaker/style latent, shared across a sample's modalities
    speaker_scale: float = 1.0  # its weight relative to the emotion signal
    nuisance_dim: int = 8  # modality-specific nuisance latent (recording, framing, wording)
    nuisance_scale: float = 1.0  # its weight relative to the emotion signal
    gain: float = 1.0  # pre-activation std before tanh (larger = more saturated)
    obs_noise: float = 0.3  # std of the per-dimension observation noise after tanh
    conflict_rate: float = 0.10  # share of samples where one modality shows another emotion

    def noise_of(self, modality: str) -> float:
        return self.channel_noise.get(modality, self.default_channel_noise)


def class_counts(n: int, min_count: int = 0) -> np.ndarray:
    """MER2024's class proportions scaled to `n` (largest remainder), each >= min_count."""
    p = np.array(MER2024_COUNTS, float) / sum(MER2024_COUNTS)
    if n < min_count * len(p):
        raise DataError(
            f"synthetic: {n} labeled samples cannot give each of {len(p)} classes "
            f">= {min_count} samples (rule: every class needs one sample per fold)"
        )
    counts = np.floor(p * n).astype(int)
    order = np.argsort(-(p * n - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    while (counts < min_count).any():  # take from the largest class, give to the rarest
        counts[np.argmin(counts)] += 1
        counts[np.argmax(counts)] -= 1
    return counts


@dataclass
class _World:
    """The fixed random parts: prototypes, speakers and one projection per modality."""

    protos: np.ndarray  # (C, L)
    speakers: np.ndarray  # (S, P)
    maps: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # W_z, W_s, W_n, b


def _world(cfg: SynthConfig) -> _World:
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
    L, C = cfg.latent_dim, len(CLASSES)
    # Orthonormal prototypes: every pair of classes equally far apart (sqrt 2), so class
    # geometry, and hence difficulty, does not depend on the seed.
    q, _ = np.linalg.qr(rng.standard_normal((L, L)))
    protos = q[:C]  # (C, L)
    speakers = rng.standard_normal((cfg.speakers, cfg.speaker_dim))
    maps = {}
    # Pre-activation = emotion + speaker + nuisance blocks, each scaled to its stated
    # variance (1, speaker_scale^2, nuisance_scale^2), then all scaled by `gain`.
    total = 1.0 + cfg.speaker_scale**2 + cfg.nuisance_scale**2 + 0.25
    g = cfg.gain / np.sqrt(total)
    for name, dim in cfg.dims.items():
        mrng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2, *name.encode()]))
        u_var = 1.0 / L + cfg.within_class**2  # prototype spread + within-class + cfg.noise_of(name) ** 2  # per latent dim
        w_z = mrng.standard_normal((L, dim)) * g / np.sqrt(L * u_var)
        w_s = (
            mrng.standard_normal((cfg.speaker_dim, dim))
            * g
            * cfg.speaker_scale
            / np.sqrt(cfg.speaker_dim)
        )
        w_n = (
            mrng.standard_normal((cfg.nuisance_dim, dim))
            * g
            * cfg.nuisance_scale
            / np.sqrt(cfg.nuisance_dim)
        )
        bias = mrng.standard_normal(dim) * g * 0.5
        maps[name] = (w_z.astype(np.float32), w_s, w_n, bias)
    return _World(protos, speakers, maps)


def _chunk(
    cfg: SynthConfig, world: _World, start: int, labels: np.ndarray, out: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Fill rows [start, start+len(labels)) of `out`; return (speaker ids, conflict modality idx)."""
    n, L = len(labels), cfg.latent_dim
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 3, start]))
    names = list(cfg.dims)
    C = len(CLASSES)
    z = world.protos[labels] + cfg.within_class * rng.standard_normal((n, L))  # (n, L)
    spk = rng.integers(0, cfg.speakers, n)
    # Conflict: one modality of the sample expresses another class.
    conflict = np.where(rng.random(n) < cfg.conflict_rate, rng.integers(0, len(names), n), -1)
    other = (labels + rng.integers(1, C, n)) % C
    z_other = world.protos[other] + cfg.within_class * rng.standard_normal((n, L))
    s = world.speakers[spk]  # (n, P)
    for j, name in enumerate(names):
        w_z, w_s, w_n, bias = world.maps[name]
        zm = np.where((conflict == j)[:, None], z_other, z)
        u = zm + cfg.noise_of(name) * rng.standard_normal((n, L))  # emotion channel
        nuis = rng.standard_normal((n, cfg.nuisance_dim))
        pre = u.astype(np.float32) @ w_z  # (n, D), float32 from here on
        pre += (s @ w_s + nuis @ w_n + bias).astype(np.float32)
        np.tanh(pre, out=pre)
        noise = rng.standard_normal(pre.shape, dtype=np.float32)
        noise *= cfg.obs_noise
        pre += noise
        out[name][start : start + n] = pre
    return spk, conflict


def check_config(cfg: SynthConfig) -> None:
    """One DataError line for a config no generator can honour."""
    if cfg.labeled < 1 or cfg.unlabeled < 0 or not cfg.dims or min(cfg.dims.values()) < 1:
        raise DataError(
            f"synthetic: invalid sizes labeled={cfg.labeled} unlabeled={cfg.unlabeled} dims={cfg.dims}"
        )
    if cfg.latent_dim < len(CLASSES):
        raise DataError(f"synthetic: latent_dim {cfg.latent_dim} < {len(CLASSES)} classes")
    if not 0.0 <= cfg.missing_rate < 1.0:
        raise DataError(f"synthetic: missing rate {cfg.missing_rate} must be in [0, 1)")
    check_folds("synthetic", cfg.folds)
    for m, d in cfg.dims.items():
        check_dim("synthetic", m, d)


def synth_manifest(cfg: SynthConfig, name: str, generator: str) -> Manifest:
    """The manifest of a synthetic dataset; `generator` names the function that wrote it."""
    return Manifest(
        name=name,
        classes=CLASSES,
        modalities=[ModalitySpec(name=m, dim=d) for m, d in cfg.dims.items()],
        folds=cfg.folds,
        seed=cfg.seed,
        provenance={
            "importer": "synth",
            "generator": generator,
            "config": asdict(cfg),
            "oracle": f"{ORACLE}: true labels of the unlabeled pool, diagnostics only; "
            "training never reads it",
        },
    )


def draw_labels(cfg: SynthConfig) -> np.ndarray:
    """(N,) true classes: labeled rows first (MER2024 proportions), then the pool."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0]))
    y_lab = rng.permutation(
        np.repeat(np.arange(len(CLASSES)), class_counts(cfg.labeled, cfg.folds))
    )
    y_unl = rng.permutation(np.repeat(np.arange(len(CLASSES)), class_counts(cfg.unlabeled)))
    return np.concatenate([y_lab, y_unl])


def make_synthetic(
    cfg: SynthConfig, name: str = "synth", progress: Callable[[int], None] | None = None
) -> tuple[Manifest, pa.Table, pa.Table]:
    """(manifest, features table, oracle table with the unlabeled pool's labels)."""
    check_config(cfg)
    manifest = synth_manifest(cfg, name, "pipeline.data.synth.make_synthetic")
    y_true = draw_labels(cfg)
    n = len(y_true)
    world = _world(cfg)
    feats = {m: np.empty((n, d), np.float32) for m, d in cfg.dims.items()}
    spk, conflict = np.empty(n, np.int64), np.empty(n, np.int64)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        spk[start:stop], conflict[start:stop] = _chunk(cfg, world, start, y_true[start:stop], feats)
        if progress is not None:
            progress(stop - start)
    labeled = np.arange(n) < cfg.labeled
    present = _missing(cfg, n)
    samples = np.array(
        [f"lab_{i:06d}" for i in range(cfg.labeled)]
        + [f"unl_{i:06d}" for i in range(cfg.unlabeled)],
        dtype=object,
    )
    folds = assign_folds(y_true, labeled, cfg.folds, cfg.seed)
    names = np.array(CLASSES, dtype=object)
    label_name = np.where(labeled, names[y_true], None)
    speaker = np.array([f"spk{s:03d}" for s in range(cfg.speakers)], dtype=object)[spk]
    table = build_table(
        manifest,
        samples,
        np.where(labeled, y_true, -1),
        labeled,
        folds,
        feats,
        present,
        extra={"label_name": label_name, "speaker": speaker},
    )
    mods = np.array(list(cfg.dims), dtype=object)
    unl = ~labeled
    oracle = pa.table(
        {
            "sample": pa.array(samples[unl], pa.string()),
            "label": pa.array(y_true[unl].astype(np.int32)),
            "label_name": pa.array(names[y_true[unl]], pa.string()),
            "conflict_modality": pa.array(
                np.where(conflict[unl] >= 0, mods[np.maximum(conflict[unl], 0)], None), pa.string()
            ),
        }
    )
    return manifest, table, oracle


def _missing(cfg: SynthConfig, n: int) -> dict[str, np.ndarray] | None:
    """Per modality (N,) presence; never all modalities of one sample absent."""
    if cfg.missing_rate <= 0:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 4]))
    m = len(cfg.dims)
    absent = rng.random((n, m)) < cfg.missing_rate
    full = absent.all(axis=1)
    keep = rng.integers(0, m, n)
    absent[np.flatnonzero(full), keep[full]] = False
    return {name: ~absent[:, j] for j, name in enumerate(cfg.dims)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_builds(out: Path) -> None:
    """Temporary folders of `out` (`.NAME.tmp-PID-HEX`) whose writer is dead: a `data
    synth` killed with SIGKILL leaves one (tens of MB) that nothing else would remove.
    A folder without a pid (made before the pid was part of the name) is stale too."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        parts = tmp.name.rsplit(".tmp-", 1)[1].split("-")
        pid = int(parts[0]) if len(parts) == 2 and parts[0].isdigit() else None
        if pid is None or not _alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def write_synthetic(
    out: str | Path,
    cfg: SynthConfig,
    name: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Dataset:
    """Generate and publish `out/` (manifest, features, oracle) atomically."""
    out = Path(out)
    remove_stale_builds(out)
    manifest, table, oracle = make_synthetic(cfg, name or out.name, progress)
    return write_dataset(out, manifest, table, extra_files={ORACLE: oracle})
