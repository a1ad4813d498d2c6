"""RAMER stages 1-2 for one (fold, run): pretrain the encoders, build the databases.

Stage 1 trains one encoder per modality on the fold's train split (selected on its val
split, never on test). Stage 2 encodes every row with them; those 256-d vectors are the
hidden-feature database (Qdrant is the store of record, FAISS serves training).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.data.bank import FeatureBank
from pipeline.data.dataset import Dataset
from pipeline.data.mapped import release
from pipeline.data.preprocess import Scaler
from pipeline.data.splits import FoldSplit
from pipeline.errors import RamerError
from pipeline.models.base import Batch, MERModel, ModelSpec, Output
from pipeline.models.encoders import (
    EncoderConfig,
    FusedEncoders,
    UnimodalEncoder,
    describe_encoders,
)
from pipeline.models.scores import chance_score, task_score
from pipeline.training.checkpoint import load_json, load_torch, save_json, save_torch
from pipeline.training.trainer import ConditionBatches, TrainConfig, fit, seed_everything

EpochHook = Callable[[str, int, dict], None]
log = logging.getLogger(__name__)


def stage_seed(base: int, fold: int, run: int, stage: str) -> int:
    """Independent, recorded seed per (fold, run, stage): resuming mid-run reproduces it."""
    words = [base, fold, run, *stage.encode()]
    return int(np.random.SeedSequence(words).generate_state(1)[0] % (2**31))


@dataclass
class FoldContext:
    ds: Dataset
    split: FoldSplit
    spec: ModelSpec
    bank: FeatureBank  # labeled rows on the device, scaled by `scaler`
    conds: np.ndarray  # (C, M) the missing conditions trained and evaluated
    device: str
    run_dir: Path  # runs/<experiment>/f{fold}_r{run}
    base_seed: int
    scaler: Scaler | None = None  # stage 0, fitted on this split's train rows + pool

    def seed(self, stage: str) -> int:
        return stage_seed(self.base_seed, self.split.fold, self.split.run, stage)


def model_spec(ds: Dataset) -> ModelSpec:
    man = ds.manifest
    n_out = 1 if man.task == "regression" else man.n_classes
    return ModelSpec(tuple(man.modality_names), tuple(man.dims), n_out, man.task)


PREPROCESS_FILE = "preprocess.npz"


def fold_scaler(ds: Dataset, split: FoldSplit, mode: str, run_dir: Path) -> Scaler:
    """Stage 0: the split's scaler, fitted on its train rows and the unlabeled pool (never
    val / test) and saved in run_dir, so predict and a resumed run apply the same one."""
    path = run_dir / PREPROCESS_FILE
    if path.is_file():
        saved = Scaler.load(path, ds.modalities, ds.manifest.dims)
        if saved.mode == mode:
            return saved
    scaler = Scaler(mode).fit(ds.features, ds.present, np.concatenate([split.train, split.unlabeled]))
    run_dir.mkdir(parents=True, exist_ok=True)
    scaler.save(path)
    return scaler


UNIT_FILE = "unit.json"  # what a (fold, run)'s checkpoints were made from


def check_unit(run_dir: Path, fingerprint: str | None) -> None:
    """The unit's checkpoints belong to this data: record the fingerprint on first use,
    refuse checkpoints made from a dataset that has since changed."""
    if fingerprint is None:
        return
    path = run_dir / UNIT_FILE
    if path.is_file():
        recorded = load_json(path, dict).get("data_fingerprint")
        if recorded != fingerprint:
            raise RamerError(f"{run_dir}: checkpoints made from other data (fingerprint {recorded} vs "
                             f"{fingerprint} now); the dataset was regenerated or re-imported")
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    save_json({"data_fingerprint": fingerprint}, path)


def fold_context(
    ds: Dataset, split: FoldSplit, spec: ModelSpec, conds: np.ndarray, device: str,
    run_dir: Path, base_seed: int, preprocess: str, fingerprint: str | None = None,
) -> FoldContext:
    """Everything one (fold, run) trains on: its scaler and its scaled bank of labeled rows.
    With `fingerprint`, the unit's checkpoints must have been made from that data."""
    check_unit(run_dir, fingerprint)
    scaler = fold_scaler(ds, split, preprocess, run_dir)
    bank = FeatureBank(ds, np.flatnonzero(ds.labeled), device, scaler)
    return FoldContext(ds, split, spec, bank, conds, device, run_dir, base_seed, scaler)


class _OneModality(MERModel):
    """Adapter so the generic trainer can pretrain a single-modality encoder."""

    def __init__(self, enc: UnimodalEncoder, index: int, spec: ModelSpec):
        super().__init__()
        self.enc, self.index, self.spec = enc, index, spec

    def forward(self, batch: Batch) -> Output:
        logits = self.enc.classify(self.enc(batch.x[self.index]))  # (B, n_out)
        return Output(logits=logits, aux_loss=self.zero_aux(logits))


class _AllModalities(MERModel):
    """Adapter for the "multimodal h_s" ablation: encoders pretrained with fusion."""

    def __init__(self, fused: FusedEncoders, spec: ModelSpec):
        super().__init__()
        self.fused, self.spec = fused, spec

    def forward(self, batch: Batch) -> Output:
        logits = self.fused(batch.x)  # (B, n_out)
        return Output(logits=logits, aux_loss=self.zero_aux(logits))


def pretrain_encoders(
    ctx: FoldContext, enc_cfg: EncoderConfig, train_cfg: TrainConfig, fused: bool,
    on_epoch: EpochHook | None = None,
) -> list[UnimodalEncoder]:
    """Stage 1 (cached in run_dir). `fused=True` trains them jointly (ablation)."""
    name = "encoders_fused.pt" if fused else "encoders.pt"
    path = ctx.run_dir / name
    spec, ds = ctx.spec, ctx.ds
    seed_everything(ctx.seed("init-encoders"))  # weights independent of what ran before
    encoders = [UnimodalEncoder(d, spec.n_out, enc_cfg) for d in spec.dims]
    _describe_once(encoders, spec, enc_cfg)
    if path.is_file():
        for enc, state in zip(encoders, load_torch(path)):
            enc.load_state_dict(state)
        return [e.to(ctx.device).eval() for e in encoders]
    score = task_score(spec.task)
    everything = np.ones((1, len(spec.dims)), bool)
    present = ds.present_matrix()
    if fused:
        seed_everything(ctx.seed("init-fused"))
        model = _AllModalities(FusedEncoders(list(spec.dims), spec.n_out, enc_cfg), spec)
        model.to(ctx.device)
        cfg = _with_seed(train_cfg, ctx.seed("pretrain-fused"))
        hook = None if on_epoch is None else (lambda e, rec: on_epoch("pretrain fused", e, rec))
        fit(model, ConditionBatches(ctx.bank, ctx.split.train, ctx.split.val, everything), score, cfg, on_epoch=hook)
        encoders = list(model.fused.encoders)
    else:
        scores = []
        for i, m in enumerate(spec.modalities):
            model = _OneModality(encoders[i], i, spec).to(ctx.device)
            tr = ctx.split.train[present[ctx.split.train, i]]
            va = ctx.split.val[present[ctx.split.val, i]]
            cfg = _with_seed(train_cfg, ctx.seed(f"pretrain-{m}"))
            hook = None if on_epoch is None else (lambda e, rec, m=m: on_epoch(f"pretrain {m}", e, rec))
            result = fit(model, ConditionBatches(ctx.bank, tr, va, everything), score, cfg, on_epoch=hook)
            scores.append({"modality": m, "val_score": result.best_score, "best_epoch": result.best_epoch,
                           "chance": chance_score(spec.task, ds.y[va]),
                           **(result.budget.as_record() if result.budget is not None else {})})
        save_json(scores, ctx.run_dir / STAGE1_SCORES)
    save_torch([e.state_dict() for e in encoders], path)
    return [e.eval() for e in encoders]


_DESCRIBED: set[tuple] = set()


def _describe_once(encoders: list[UnimodalEncoder], spec: ModelSpec, cfg: EncoderConfig) -> None:
    """Log each encoder's exact size (and any infeasible reference shape) once per process
    and shape, not once per fold x run."""
    key = (spec.dims, repr(cfg))
    if key not in _DESCRIBED:
        _DESCRIBED.add(key)
        for line in describe_encoders(encoders, spec.modalities, cfg):
            log.info(line)


STAGE1_SCORES = "encoders.json"  # per modality: stage-1 validation score, epoch, chance


def stage1_scores(run_dir: Path) -> list[dict]:
    """What `pretrain_encoders` recorded for each modality ([] for older checkpoints)."""
    path = run_dir / STAGE1_SCORES
    return load_json(path) if path.is_file() else []


def _with_seed(cfg: TrainConfig, seed: int) -> TrainConfig:
    from dataclasses import replace

    return replace(cfg, seed=seed)


def scaled_chunks(ds: Dataset, m: str, scaler: Scaler | None, chunk: int):
    """(start, (n, D) float32) pieces of modality m for every dataset row, scaled by the
    fold's stage-0 scaler (absent rows stay zero)."""
    feats, pres = ds.features[m], ds.present[m]
    for i in range(0, len(feats), chunk):
        part = np.array(feats[i : i + chunk], np.float32)
        release(feats)  # a memory-mapped table's pages: read once, not kept resident
        yield i, part if scaler is None else scaler.transform(m, part, pres[i : i + chunk])


@torch.no_grad()
def encode_rows(
    encoders: list[UnimodalEncoder], ds: Dataset, device: str, scaler: Scaler | None = None,
    chunk: int = 4096,
) -> dict[str, np.ndarray]:
    """Stage 2: (N, H) hidden vectors per modality for every dataset row (eval mode)."""
    out: dict[str, np.ndarray] = {}
    for enc, m in zip(encoders, ds.modalities):
        enc.eval()
        parts = [enc(torch.as_tensor(x, device=device)).float().cpu().numpy()  # (chunk, H)
                 for _, x in scaled_chunks(ds, m, scaler, chunk)]
        out[m] = np.concatenate(parts).astype(np.float32)
    return out


def raw_projection(ds: Dataset, size: int, seed: int, scaler: Scaler | None = None,
                   chunk: int = 8192) -> dict[str, np.ndarray]:
    """The "unimodal F_s" ablation DB: raw features, scaled by the fold's stage-0 scaler,
    randomly projected to `size` dims (Johnson-Lindenstrauss keeps their geometry) so
    every DB has one width."""
    rng = np.random.default_rng(seed)
    out = {}
    for m in ds.modalities:
        proj = (rng.standard_normal((ds.features[m].shape[1], size)) / np.sqrt(size)).astype(np.float32)
        out[m] = np.concatenate([x @ proj for _, x in scaled_chunks(ds, m, scaler, chunk)])
    return out
