"""Everything training does for one (fold, run): stages 1-3 for every system (stage 4,
scoring the trained models, is `pipeline.evaluation.stage4`).

Each finished piece is checkpointed atomically under runs/<experiment>/f{f}_r{r}/, so a
resumed run skips it and reproduces the same numbers (every stage has its own seed).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.data.preprocess import ScaledView
from pipeline.data.scales import candidate_mask
from pipeline.models.base import MERModel
from pipeline.models.encoders import EncoderConfig, UnimodalEncoder
from pipeline.models.registry import create_model, model_class
from pipeline.models.scores import chance_score, task_score
from pipeline.retrieval.fill import Precomputed, RetrievalFiller
from pipeline.retrieval.health import vector_health
from pipeline.retrieval.retriever import ModalityRetriever
from pipeline.training.checkpoint import corrupt, load_json, load_torch, save_json, save_torch
from pipeline.training.config import ExperimentConfig, RetrievalConfig
from pipeline.training.stages import (
    FoldContext,
    encode_rows,
    pretrain_encoders,
    raw_projection,
)
from pipeline.training.systems import STAGE1_LEAKS, SystemSpec
from pipeline.training.trainer import ConditionBatches, fit, seed_everything

log = logging.getLogger(__name__)
Hook = Callable[[str, int, dict], None]
# The encoder options that make a different network; a system that sets one of them
# ('ramer(d_model=64)') gets stage-1 encoders of its own, the others share the experiment's.
ENCODER_SHAPE = ("d_model", "hidden", "layers", "heads", "ff", "classifier", "norm_first", "max_params")


def _own_shape(experiment: EncoderConfig, system: EncoderConfig | None) -> str:
    """'' when `system` builds the experiment's encoders, else a folder tag of how it
    differs: 'd_model=64,heads=4'."""
    if system is None:
        return ""
    diff = [f"{k}={getattr(system, k)}" for k in ENCODER_SHAPE if getattr(system, k) != getattr(experiment, k)]
    return re.sub(r"[^\w.=,-]+", "_", ",".join(diff))


@dataclass
class Database:
    """One retrieval database: per-modality vectors of every row + encoders to init from."""

    source: str
    vectors: dict[str, np.ndarray]  # m -> (N, H)
    encoders: list[UnimodalEncoder]


@dataclass
class SharedSearch:
    """One fold's index over a key set, and the neighbour lists of its labeled rows."""

    keys: dict[str, np.ndarray]  # held so that the id() in the cache key stays this dict's
    retriever: ModalityRetriever
    lists: Precomputed | None = None


@dataclass
class FoldRun:
    ctx: FoldContext
    cfg: ExperimentConfig
    on_epoch: Hook | None = None
    timings: dict[str, float] = field(default_factory=dict)
    _dbs: dict[str, Database] = field(default_factory=dict)
    _encoders: dict[bool, list[UnimodalEncoder]] = field(default_factory=dict)
    _searches: dict[tuple, SharedSearch] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return self.ctx.device

    def _timed(self, key: str, t0: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    # ------------------------------------------------------------ stages 1-2
    def encoders(self, fused: bool = False, leaks: tuple[str, ...] = (),
                 encoder: EncoderConfig | None = None) -> list[UnimodalEncoder]:
        """Stage 1 (cached). `leaks`: the stage-1 leak diagnostics ('encoders-test',
        'stage1-test'), trained apart in their own sub-folder; `encoder`: a system's own
        encoder shape ('ramer(d_model=64)'), trained apart too (`_own_shape`)."""
        stage1 = tuple(k for k in leaks if k in STAGE1_LEAKS)
        own = _own_shape(self.cfg.encoder, encoder)
        key = (fused, stage1, own)
        if key not in self._encoders:
            t0 = time.perf_counter()
            ctx = self._leaky_context(stage1) if stage1 else self.ctx
            if own:
                ctx = replace(ctx, run_dir=ctx.run_dir / f"encoder-{own}")
            enc_cfg = encoder if own else self.cfg.encoder
            self._encoders[key] = pretrain_encoders(ctx, enc_cfg, self.cfg.pretrain, fused, self.on_epoch)
            self._timed("pretrain", t0)
        return self._encoders[key]

    def _leaky_context(self, leaks: tuple[str, ...]) -> FoldContext:
        """DIAGNOSTIC: the fold as the reference code's stage 1 saw it - test rows in the
        training set ('encoders-test') or the epoch chosen on them ('stage1-test')."""
        split = self.ctx.split
        train, val = split.train, split.val
        if "encoders-test" in leaks:
            train = np.sort(np.concatenate([split.train, split.val, split.test]))
        if "stage1-test" in leaks:
            val = split.test
        leaky = replace(split, train=train, val=val)
        return replace(self.ctx, split=leaky, run_dir=self.ctx.run_dir / f"leaky-{'+'.join(leaks)}")

    def database(self, source: str, leaks: tuple[str, ...] = (), encoder: EncoderConfig | None = None) -> Database:
        """A retrieval DB of every row (cached): the stage-1 encoders' hidden vectors, the
        fused encoders' ('multimodal') or the projected raw features ('raw')."""
        stage1 = tuple(k for k in leaks if k in STAGE1_LEAKS)
        own = _own_shape(self.cfg.encoder, encoder)
        key = "/".join(filter(None, (source, "+".join(stage1), own)))
        if key not in self._dbs:
            if source not in ("hidden", "raw", "multimodal"):
                raise ValueError(f"unknown db_source '{source}'")
            enc = self.encoders(fused=source == "multimodal", leaks=stage1, encoder=encoder)
            t0 = time.perf_counter()
            if source == "raw":
                width = (encoder or self.cfg.encoder).hidden
                vecs = raw_projection(self.ctx.ds, width, self.ctx.seed("raw-db"), self.ctx.scaler)
            else:
                vecs = encode_rows(enc, self.ctx.ds, self.ctx.device, self.ctx.scaler)
            self._timed("index", t0)
            self._dbs[key] = Database(source, vecs, enc)
        return self._dbs[key]

    def _candidate_rows(self, r: RetrievalConfig) -> np.ndarray:
        """(N,) bool rows that retrieval may return: the scale's train + pool rows
        (`candidate_mask`); every row under the leak diagnostic."""
        ds, split = self.ctx.ds, self.ctx.split
        if "db" in r.leaks:  # diagnostic: every row, val/test and the query included
            return np.ones(len(ds), bool)
        return candidate_mask(ds.samples, ds.labeled, split.train, r.scale)

    def candidates(self, r: RetrievalConfig) -> dict[str, np.ndarray]:
        cand, ds = self._candidate_rows(r), self.ctx.ds
        return {m: cand & ds.present[m] for m in ds.modalities}

    def retriever(self, r: RetrievalConfig, db: Database) -> ModalityRetriever:
        ds, cand = self.ctx.ds, self._candidate_rows(r)
        t0 = time.perf_counter()
        retr = ModalityRetriever(k=r.k, metric=r.metric, device=self.ctx.device).fit(
            db.vectors, ds.present, cand
        )
        self._timed("index", t0)
        return retr

    def database_health(self, source: str) -> list[dict]:
        """Per modality: is the DB usable for cosine retrieval? (`retrieval.health`);
        computed on the candidate rows of the experiment's scale. Logs a warning when not."""
        db, ds = self.database(source), self.ctx.ds
        cand = self.candidates(self.cfg.retrieval)
        out = []
        for m in ds.modalities:
            health = vector_health(db.vectors[m][cand[m]], self.ctx.seed("health"))
            if health["degenerate"]:
                log.warning("fold %d run %d: the '%s' hidden vectors are degenerate (concentration %.3f, "
                            "effective rank %.2f): retrieval through '%s' is close to random",
                            self.ctx.split.fold, self.ctx.split.run, m, health["concentration"],
                            health["effective_rank"], m)
            out.append({"modality": m, **health})
        return out

    # ------------------------------------------------------------ precision@K
    def retrieval_precision(self, ks: list[int]) -> list[dict]:
        """Share of labeled neighbours of each test query that carry the query's label."""
        cfg_r = replace(self.cfg.retrieval, k=max(ks))
        db = self.database(cfg_r.db_source)
        retr = self.retriever(cfg_r, db)
        ds, test = self.ctx.ds, self.ctx.split.test
        rows_out = []
        for m in ds.modalities:
            q = test[ds.present[m][test]]
            nb, _ = retr.search(m, db.vectors[m][q], q, max(ks))  # (n, Kmax)
            lab = (nb >= 0) & ds.labeled[np.clip(nb, 0, None)]
            if ds.y.ndim == 2:  # multi-label: relevant = shares at least one label with the query
                same = lab & ((ds.y[np.clip(nb, 0, None)] * ds.y[q][:, None]).sum(-1) > 0)
            else:
                same = lab & (ds.y[np.clip(nb, 0, None)] == ds.y[q][:, None])
            for k in ks:
                denom = lab[:, :k].sum()
                value = float(same[:, :k].sum() / denom) if denom else float("nan")
                rows_out.append({"modality": m, "k": k, "precision": value, "labeled_share": float(lab[:, :k].mean())})
        return rows_out

    # ------------------------------------------------------------ stage 3
    def scaled_features(self) -> dict[str, ScaledView]:
        """m -> (N, D_m) every row after stage 0 (the kNN-imputation DB of `lr-knn`, the keys
        of feature-space queries), as views scaled when read: one (N, D) copy per unit
        would be 3.3 GB at MER2024's size. One dict per unit, so searches over it are shared."""
        if "scaled" not in self._dbs:
            ds = self.ctx.ds
            vecs = {m: ScaledView(ds.features[m], ds.present[m], self.ctx.scaler, m) for m in ds.modalities}
            self._dbs["scaled"] = Database("scaled", vecs, [])
        return self._dbs["scaled"].vectors

    def filler(self, vectors: dict[str, np.ndarray], r: RetrievalConfig, *, stored_queries: bool,
               fuse: str = "sum-l2", keys: dict[str, np.ndarray] | None = None) -> RetrievalFiller:
        """A filler over the fold's candidates that fills with `vectors`, searching `keys`
        (default: `vectors` themselves); with stored queries every labeled row's neighbour
        lists are computed here (timed as retrieval), once per fold for each key set and
        search setting: RAMER's variants that differ only in how they use the lists (the
        fill length), and `lr-knn` beside RAMER's feature queries, get the same lists."""
        keys = vectors if keys is None else keys
        search = self._search_for(keys, r)
        filler = RetrievalFiller(
            search.retriever, list(self.ctx.spec.modalities), vectors,
            self.ctx.ds.present, k=r.k, rule=r.two_rule, keys=keys if stored_queries else None,
            drop_first_hit="db" in r.leaks, fuse=fuse,
        )
        if stored_queries:
            if search.lists is None:  # the first filler searches (and adopts its lists) ...
                split = self.ctx.split
                t0 = time.perf_counter()
                search.lists = filler.precompute(np.concatenate([split.train, split.val, split.test]))
                self._timed("retrieval", t0)
            else:  # ... the others adopt them
                filler.use_precomputed(search.lists)
        return filler

    def _search_for(self, keys: dict[str, np.ndarray], r: RetrievalConfig) -> SharedSearch:
        """The fold's index over `keys` for `r`'s search settings (built once), with its
        precomputed neighbour lists once a stored-query filler has asked for them."""
        key = (id(keys), r.k, r.metric, r.scale, "db" in r.leaks)  # what the lists depend on
        got = self._searches.get(key)
        if got is None or got.keys is not keys:
            got = self._searches[key] = SharedSearch(keys, self.retriever(r, Database("keys", keys, [])))
        return got

    def build_model(self, system: SystemSpec, inputs_as_stored: bool | None = None) -> MERModel:
        """The system's model, set up from this (fold, run) by its own `attach` hook.
        `inputs_as_stored`: the inputs are the stored features (default: unless the
        system trains under a span strategy); False for noise evaluation."""
        spec, r = self.ctx.spec, system.retrieval or self.cfg.retrieval
        if inputs_as_stored is None:
            inputs_as_stored = system.strategy == "none"
        options = dict(system.overrides)
        if model_class(system.model).uses_stage1_encoders:
            e = self.cfg.encoder
            options = {
                "d_model": e.d_model, "hidden": e.hidden, "layers": e.layers, "heads": e.heads, "ff": e.ff,
                "encoder_classifier": tuple(e.classifier), "dropout": e.dropout, "norm_first": e.norm_first,
                "max_params": e.max_params,
                "retrieval": system.use_retrieval, "finetune_encoders": r.finetune_encoders, **options,
            }
        model = create_model(system.model, spec, **options).to(self.ctx.device)
        model.attach(self, r, inputs_as_stored)
        return model

    def train(self, system: SystemSpec) -> tuple[MERModel, dict]:
        """Stage 3: train `system` (selected on validation); cached as <slug>.pt/.fit.json.
        A selection system trains every variant and returns the one chosen here."""
        if system.candidates:
            return self.train(self.chosen(system))
        ctx, spec = self.ctx, self.ctx.spec
        seed_everything(ctx.seed(f"init-{system.slug}"))  # weights independent of what ran before
        model = self.build_model(system)
        model_path = ctx.run_dir / f"{system.slug}.pt"
        fit_path = ctx.run_dir / f"{system.slug}.fit.json"
        if model_path.is_file() and fit_path.is_file():
            model.load_state_dict(load_torch(model_path))
            return model, load_json(fit_path)
        score = task_score(spec.task)
        hook = None if self.on_epoch is None else (lambda e, rec: self.on_epoch(f"train {system.label}", e, rec))
        t0 = time.perf_counter()
        teacher = None  # the MMIN family's teacher-phase fit
        if model.has_teacher_phase:  # the MMIN family's full-modality first phase
            everything = np.ones((1, len(spec.dims)), bool)
            cfg0 = replace(self.cfg.pretrain, seed=ctx.seed(f"{system.slug}-teacher"))
            teacher = fit(model, ConditionBatches(ctx.bank, ctx.split.train, ctx.split.val, everything), score, cfg0,
                          forward=lambda m, b: m.pretrain_forward(b))
        cfg = replace(self.cfg.train, **system.train, seed=ctx.seed(f"train-{system.slug}"))
        # DIAGNOSTIC 'stage3-test': the epoch chosen on the test rows, as if they were validation
        select_on = ctx.split.test if "stage3-test" in system.leaks else ctx.split.val
        filler = model.filler
        searched0 = filler.seconds if filler is not None else 0.0
        t_fit = time.perf_counter()
        if system.strategy != "none":  # span-missing training (M3S section 4.4)
            result = self._fit_strategy(model, system, score, cfg, hook)
        else:
            source = ConditionBatches(ctx.bank, ctx.split.train, select_on, ctx.conds, cfg.full_prob)
            result = fit(model, source, score, cfg, on_epoch=hook)
        fit_seconds = time.perf_counter() - t_fit
        retrieval_seconds = (filler.seconds - searched0) if filler is not None else 0.0
        seconds = time.perf_counter() - t0
        self._timed(f"train {system.label}", t0)
        record = {
            "system": system.label, **system.columns(), "fold": ctx.split.fold, "run": ctx.split.run,
            "best_epoch": result.best_epoch, "val_score": result.best_score,
            "history": result.history, "seconds": seconds, "seed": cfg.seed,
            "fit_seconds": fit_seconds, "retrieval_seconds": retrieval_seconds,
            "epochs_run": len(result.history),
            # the resolved budget (TrainConfig.min_epoch_steps); None for closed-form fits
            **(budget.as_record() if (budget := getattr(result, "budget", None)) is not None else {}),
            **({"teacher_" + k: v for k, v in teacher.budget.as_record().items()}
               if teacher is not None and teacher.budget is not None else {}),
            "val_chance": chance_score(spec.task, ctx.ds.y[ctx.split.val]),
        }
        save_torch(model.state_dict(), model_path)
        save_json(record, fit_path)
        return model, record

    def chosen(self, system: SystemSpec, train: bool = True) -> SystemSpec | None:
        """The variant of a selection system ('ramer(k=5|10)') with the best validation
        score of THIS (fold, run) - nested selection: no other fold's labels decide it.
        Variants are trained if needed (`train=False`: None until they were)."""
        if not system.candidates:
            return system
        path = self.ctx.run_dir / f"{system.slug}.choice.json"
        if not path.is_file():
            if not train:
                return None
            scores = {c.label: self.train(c)[1]["val_score"] for c in system.candidates}
            best = max(scores, key=scores.get)  # ties: the first listed variant
            save_json({"chosen": best, "val_scores": scores}, path)
        label = load_json(path, dict).get("chosen")
        chosen = next((c for c in system.candidates if c.label == label), None)
        if chosen is None:
            raise corrupt(path, f"names {label!r}, not one of the variants of '{system.label}'")
        return chosen

    # ------------------------------------------------------------ span strategies (M3S)
    def _train_ranges(self, system: SystemSpec) -> list:
        """One (lo, hi) per modality for training `system` (and for its validation spans)."""
        from pipeline.data.spans import modality_ranges, parse_ranges

        c = self.cfg
        default = system.train_range or parse_ranges(c.missing_rate)[0]
        return modality_ranges(self.ctx.spec.modalities, default, c.modality_missing_rate)

    def _fit_strategy(self, model: MERModel, system: SystemSpec, score, cfg, hook):
        from pipeline.training.strategies import SpanBatches, fit_strategy

        ctx = self.ctx
        source = SpanBatches(ctx.bank, ctx.split.train, ctx.split.val, system.strategy, self._train_ranges(system),
                             seed=cfg.seed, val_seed=ctx.seed("val-spans"), over=self.cfg.span_over)
        return fit_strategy(model, source, score, cfg, replace(self.cfg.m3s, **system.m3s), on_epoch=hook)
