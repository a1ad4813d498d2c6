"""CARAT: Contrastive feature Reconstruction and AggregaTion (Peng et al., AAAI 2024).

Multi-label MER in three steps (paper Figure 2):
1. Per modality, a Transformer extractor and label-wise attention give one vector per
   label: U^m (B, C, d).
2. Contrastive reconstruction-based fusion: modality encoders/decoders map U^m to a
   latent space where a supervised contrastive loss (momentum queue) separates
   (modality, label, polarity) groups, whose EMA prototypes give "intrinsic" vectors;
   cross-modal networks g_m rebuild each modality from its own intrinsic vectors and
   the other modalities' decoded vectors (first level, FRR), then from every FRR
   (second level, SRR). Per-modality classifiers with a max over modalities pick each
   label's most relevant modality (MRM) at every level.
3. Shuffle-based aggregation: an aggregation classifier reads each modality's SRR label
   vectors, also after a sample-wise and a modality-wise shuffle of the per-label
   vectors (new label co-occurrences; training only). Prediction = mean of the
   aggregated and the MRM (second level) probabilities (paper eq. 16).
Loss weights: the paper's Table 4, ID 0 (gamma_o 0.01, alpha 0.1, beta 1, shuffle 0.1,
contrastive 1, reconstruction 1). By default the trainer adds BCE on the final prediction
(`w_final` 1) and the reconstruction / contrastive losses are detached from the extractor
(`detach_losses`); `--preset paper` trains eq. 15 as written: no final-prediction loss,
nothing detached, every batch embedding an anchor, queue 8192.

Adapted here:
- Frames when the dataset keeps them (`ramer data import ... --keep-sequences`): each
  modality's Transformer and label attention run over its valid frames (padding masked;
  sequences longer than `max_frames` are mean-pooled in windows). Otherwise utterance
  vectors: each vector is projected to `tokens` learned tokens (+ positions) so the
  Transformer and the label attention have something to attend over (our encoders'
  "input as tokens" convention). Training on frames sets the `trained_on_frames`
  buffer; such a model then refuses inputs without frames rather than running its
  untrained vector path.
- Missing modalities (zero inputs + `avail`): a missing modality is left out of the
  first-level MRM max, of the contrastive loss and of the prototype updates; its
  intrinsic vectors use the label polarities estimated by the available modalities
  (mean of their prototype soft-assignments), and they replace its (meaningless)
  decoded vectors as input to the other modalities' reconstruction, so FRR/SRR
  impute it. In training, the reconstruction target of a missing modality is the
  extractor's output on the complete input (`batch.x_full`, detached), as MMIN's teacher.
- Any task: the label heads have `n_out` outputs; single-label and regression use
  their task loss (CE / L1) at every level; the shuffle is multi-label only, and
  "polarity" is the one-hot class (single-label) or the target's sign (regression).
- CPU budget: d=128, 2 layers, queue 1024 and at most `anchors` contrastive anchors per
  batch (the paper: d=256, 4-6 layers, queue 8192, every embedding an anchor).
Ablations: `contrastive=False`, `reconstruction=False` (no FRR/SRR: MRM and
aggregation on U), `shuffle=False`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from pipeline.errors import RamerError
from pipeline.models.base import Batch, Frames, MERModel, ModelSpec, Output, mlp, task_loss
from pipeline.models.carat_extractor import LabelExtractor
from pipeline.models.registry import register_model

NEG = -1e4  # logit of a modality left out of a max
TEXT = "text"  # the modality whose extractor gets `text_layers` (the paper's deeper text encoder)


@register_model("carat")
class CARAT(MERModel):
    uses_sequences = True  # frames when the dataset keeps them

    @dataclass
    class Config:
        d_model: int = 128  # extractor / label-vector width (paper: 256)
        tokens: int = 4  # tokens an utterance vector is expanded into
        max_frames: int = 64  # longer frame sequences are mean-pooled in windows (aligned MOSEI: 60)
        layers: int = 2  # Transformer layers per modality (paper: 4 audio / visual, 6 text)
        text_layers: int = 0  # layers of the modality named "text"; 0 = `layers` (paper: 6)
        heads: int = 4  # attention heads
        ff: int = 256  # Transformer feed-forward width
        dropout: float = 0.1  # Transformer dropout
        latent: int = 64  # contrastive latent size (paper: 64)
        queue: int = 1024  # momentum queue of latent embeddings (paper: 8192)
        anchors: int = 512  # contrastive anchors sampled per batch (CPU budget); 0 = every embedding (paper)
        temperature: float = 0.07  # supervised contrastive temperature
        proto_m: float = 0.99  # prototype moving-average momentum
        w_o: float = 0.01  # gamma_o: MRM loss on U (paper Table 4 ID 0)
        w_alpha: float = 0.1  # gamma_alpha: MRM loss on the first-level reconstructions
        w_beta: float = 1.0  # gamma_beta: MRM loss on the second-level reconstructions
        w_shuffle: float = 0.1  # gamma_sf: aggregation loss on shuffled vectors
        w_contrastive: float = 1.0  # gamma_s: supervised contrastive loss
        w_recon: float = 1.0  # gamma_r: reconstruction MSE
        w_agg: float = 1.0  # aggregation loss on unshuffled vectors (reference code: 1)
        contrastive: bool = True  # False = "w/o scl" ablation
        reconstruction: bool = True  # False = "w/o alpha&beta-recon" ablation
        shuffle: bool = True  # False = "w/o shf" ablation
        full_targets: bool = True  # missing modalities' reconstruction targets from x_full
        # Not in the paper's eq. 15: a BCE on the final (eq. 16) prediction, added by the
        # trainer with this weight (paper: 0), and the reconstruction / contrastive losses
        # cut from the extractor (paper: False). Both default on: through a live U the
        # extractor collapsed to an easily reconstructed constant on our data.
        w_final: float = 1.0
        detach_losses: bool = True

    def __init__(self, spec: ModelSpec, cfg: CARAT.Config):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        M, C, d, z = len(spec.dims), spec.n_out, cfg.d_model, cfg.latent
        depth = [cfg.text_layers if name == TEXT and cfg.text_layers else cfg.layers for name in spec.modalities]
        self.extract = nn.ModuleList(LabelExtractor(D, C, cfg, n) for D, n in zip(spec.dims, depth))
        self.enc = nn.ModuleList(mlp([d, d // 2, z]) for _ in range(M))  # to the latent space
        self.dec = nn.ModuleList(mlp([z, d // 2, d]) for _ in range(M))  # back to label vectors
        self.rebuild = nn.ModuleList(  # g_m, shared by both levels; LayerNorm keeps U's scale
            nn.Sequential(nn.Linear(M * d, d), nn.LayerNorm(d)) for _ in range(M)
        )
        self.clf = nn.Parameter(torch.empty(M, C, d))  # per-modality label classifiers
        nn.init.kaiming_uniform_(self.clf, a=5**0.5)
        self.agg = mlp([C * d, d, C])  # aggregation classifier over one modality's C vectors
        self.register_buffer("protos", torch.zeros(M, 2, C, z))  # [pos, neg] prototypes
        self.register_buffer("queue", torch.zeros(cfg.queue, z))
        self.register_buffer("queue_label", torch.full((cfg.queue,), -1, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("trained_on_frames", torch.zeros((), dtype=torch.bool))

    @property
    def output_loss_weight(self) -> float:
        return self.cfg.w_final

    # ------------------------------------------------------------ pieces

    def _polarity(self, y: Tensor) -> Tensor:
        """(B, C) 0/1: label present (multi-label), the class (single-label), sign (regression)."""
        if self.spec.task == "multi_label":
            return (y > 0.5).float()
        if self.spec.task == "single_label":
            return F.one_hot(y.long(), self.spec.n_out).float()
        return (y >= 0).float().view(-1, 1)

    def _heads(self, vecs: Tensor) -> Tensor:
        return torch.einsum("bmcd,mcd->bmc", vecs, self.clf)  # (B, M, C)

    @staticmethod
    def _mrm(logits: Tensor, keep: Tensor) -> Tensor:
        """Max over the kept modalities: each label's most relevant modality. (B, C)"""
        return logits.masked_fill(~keep[:, :, None], NEG).amax(dim=1)

    def _intrinsic(self, lat_n: Tensor, avail: Tensor) -> tuple[Tensor, Tensor]:
        """Prototype mixtures (B, M, C, z) and positive weights (B, M, C)."""
        protos = self.protos.clone()  # buffers change in-place after the forward
        sim = torch.einsum("bmcz,mpcz->bmcp", lat_n, protos)  # (B, M, C, 2)
        w_pos = torch.softmax(sim, dim=-1)[..., 0]  # (B, M, C)
        av = avail.float()[:, :, None]  # (B, M, 1)
        shared = (w_pos * av).sum(1, keepdim=True) / av.sum(1, keepdim=True).clamp_min(1)
        w_pos = torch.where(avail[:, :, None], w_pos, shared)  # missing: other modalities' estimate
        if not self.training:
            w_pos = (w_pos > 0.5).float()  # hard-max pattern at prediction time (paper eq. 10)
        mix = w_pos[..., None] * protos[None, :, 0] + (1 - w_pos[..., None]) * protos[None, :, 1]
        return mix, w_pos

    def _rebuild(self, parts: Tensor) -> Tensor:
        """g_m over the concatenated modality slots: (B, M, C, d) -> (B, M, C, d)."""
        flat = parts.permute(0, 2, 1, 3).flatten(2)  # (B, C, M*d)
        return torch.stack([g(flat) for g in self.rebuild], dim=1)

    def _reconstruct(self, lat: Tensor, lat_n: Tensor, avail: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Decoded vectors, first- and second-level reconstructions, each (B, M, C, d)."""
        M = lat.shape[1]
        dec = torch.stack([d(lat[:, m]) for m, d in enumerate(self.dec)], dim=1)
        mix, _ = self._intrinsic(lat_n, avail)
        intr = torch.stack([d(mix[:, m]) for m, d in enumerate(self.dec)], dim=1)
        others = torch.where(avail[:, :, None, None], dec, intr)  # missing: intrinsic stands in
        eye = torch.eye(M, dtype=torch.bool, device=lat.device)  # slot m of g_m: its own intrinsic
        parts = torch.where(eye[None, :, :, None, None], intr[:, None], others[:, None])  # (B, M, M, C, d)
        alpha = torch.stack([self.rebuild[m](parts[:, m].permute(0, 2, 1, 3).flatten(2)) for m in range(M)], 1)
        return dec, alpha, self._rebuild(alpha)

    def _final(self, mrm: Tensor, agg: Tensor, keep: Tensor) -> Tensor:
        """Paper eq. 16 in logit space: mean of aggregated and MRM predictions. (B, C)"""
        w = keep.float()[:, :, None] / keep.float().sum(1).clamp_min(1)[:, None, None]
        if self.spec.task == "multi_label":
            p = 0.5 * ((torch.sigmoid(agg) * w).sum(1) + torch.sigmoid(mrm))
            return torch.logit(p.clamp(1e-6, 1 - 1e-6))
        return 0.5 * ((agg * w).sum(1) + mrm)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Checkpoints saved before the frame path existed load as vector-path models."""
        for k, v in self.state_dict(keep_vars=True).items():
            if "frame" in k:  # frame_proj, frame_pos, trained_on_frames
                state_dict.setdefault(prefix + k, v.detach())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _extract(self, xs: list[Tensor], frames: Frames | None) -> Tensor:
        """Label vectors U (B, M, C, d) from utterance vectors, or from frames if given."""
        if frames is None:
            return torch.stack([ex(x) for ex, x in zip(self.extract, xs)], dim=1)
        return torch.stack(
            [ex.frames(f, frames.lengths[:, m]) for m, (ex, f) in enumerate(zip(self.extract, frames.x))], dim=1
        )

    def _on_frames(self, batch: Batch) -> bool:
        """Frames in training whenever given (and remembered); at prediction time exactly
        when the model was trained on them."""
        if self.training and batch.seq is not None:
            self.trained_on_frames.fill_(True)
        if not bool(self.trained_on_frames):
            return False
        if batch.seq is None:
            raise RamerError(
                "carat: this model was trained on frame sequences but the input has none (utterance vectors "
                "only, or features perturbed by a span transform); use inputs with frames"
            )
        return True

    # ------------------------------------------------------------ forward

    def forward(self, batch: Batch) -> Output:
        cfg, avail = self.cfg, batch.avail  # (B, M)
        frames = batch.seq if self._on_frames(batch) else None
        U = self._extract(batch.x, frames)  # (B, M, C, d)
        lat = torch.stack([e(U[:, m]) for m, e in enumerate(self.enc)], dim=1)  # (B, M, C, z)
        lat_n = F.normalize(lat, dim=-1)
        everyone = torch.ones_like(avail)
        logits_o = self._heads(U)  # (B, M, C)
        if cfg.reconstruction:
            _, alpha, beta = self._reconstruct(lat, lat_n, avail)
            keep = everyone  # reconstructions exist for every modality
        else:
            alpha = beta = U
            keep = avail
        logits_b = self._heads(beta)
        mrm_b = self._mrm(logits_b, keep)  # (B, C)
        agg = self.agg(beta.flatten(2))  # (B, M, C)
        logits = self._final(mrm_b, agg, keep)
        aux = self.zero_aux(logits)
        if self.training and batch.y is not None:
            aux = aux + self._losses(batch, frames is not None, U, lat, lat_n, logits_o, alpha, beta, mrm_b, agg, keep)
        return Output(logits=logits, aux_loss=aux, hidden=beta.mean(1).flatten(1))

    # ------------------------------------------------------------ training losses

    def _losses(self, batch, on_frames, U, lat, lat_n, logits_o, alpha, beta, mrm_b, agg, keep) -> Tensor:
        cfg, task, y, avail = self.cfg, self.spec.task, batch.y, batch.avail
        B, M = avail.shape
        loss = cfg.w_o * task_loss(task, self._mrm(logits_o, avail), y)
        loss = loss + cfg.w_beta * task_loss(task, mrm_b, y)
        y_rep = y.repeat_interleave(M, dim=0)  # (B*M, ...) one target per modality slot
        k = keep.flatten()
        loss = loss + cfg.w_agg * task_loss(task, agg.flatten(0, 1)[k], y_rep[k])
        pol = self._polarity(y)  # (B, C)
        if cfg.reconstruction:
            loss = loss + cfg.w_alpha * task_loss(task, self._mrm(self._heads(alpha), keep), y)
            # By default reconstruction trains the encoders/decoders/g_m, not the extractor:
            # through a live U the extractor collapses to an easily reconstructed constant.
            # The paper (`detach_losses=False`) backpropagates into it.
            U = U.detach() if cfg.detach_losses else U
            lat_d = torch.stack([e(U[:, m]) for m, e in enumerate(self.enc)], dim=1)
            dec, alpha_d, _ = self._reconstruct(lat_d, F.normalize(lat_d, dim=-1), avail)
            target = U
            if cfg.full_targets and (batch.seq_full if on_frames else batch.x_full) is not None:
                with torch.no_grad():
                    full = self._extract(batch.x_full, batch.seq_full if on_frames else None)
                if on_frames:
                    has = batch.seq_full.lengths > 0  # really present
                else:
                    has = torch.stack([x.abs().sum(1) > 0 for x in batch.x_full], dim=1)
                target = torch.where(avail[:, :, None, None], U, full)
                tmask = avail | has
            else:
                tmask = avail
            size = U.shape[2] * U.shape[3]
            w = tmask.float()[:, :, None, None]
            av = avail.float()[:, :, None, None]
            recon = ((dec - U) ** 2 * av).sum() / (av.sum().clamp_min(1) * size)
            recon = recon + ((alpha_d - target) ** 2 * w).sum() / (w.sum().clamp_min(1) * size)
            loss = loss + cfg.w_recon * recon
        if cfg.contrastive:  # shapes the latent space (encoders) that the prototypes live in
            U_c = U.detach() if cfg.detach_losses else U
            lat_c = torch.stack([e(U_c[:, m]) for m, e in enumerate(self.enc)], dim=1)
            loss = loss + cfg.w_contrastive * self._contrastive(lat_c, alpha, beta, pol, avail)
        if cfg.shuffle and task == "multi_label" and B > 1:
            loss = loss + cfg.w_shuffle * self._shuffled(beta, pol, keep)
        self._update_protos(lat_n.detach(), pol, avail)
        return loss

    def _group(self, pol: Tensor) -> Tensor:
        """Contrastive class of every (sample, modality, label): (modality, label, polarity). (B, M, C)"""
        M, C = len(self.spec.dims), self.spec.n_out
        m = torch.arange(M, device=pol.device)[None, :, None]
        c = torch.arange(C, device=pol.device)[None, None, :]
        return m * 2 * C + (1 - pol.long())[:, None, :] * C + c

    def _contrastive(self, lat: Tensor, alpha: Tensor, beta: Tensor, pol: Tensor, avail: Tensor) -> Tensor:
        """Supervised contrastive loss over U-, FRR- and SRR-level latents plus the queue."""
        cfg = self.cfg
        group = self._group(pol)  # (B, M, C)
        feats, labels = [lat[avail]], [group[avail]]  # U level: available modalities only
        if cfg.reconstruction:
            for level in (alpha, beta):
                level = level.detach() if cfg.detach_losses else level
                z = torch.stack([e(level[:, m]) for m, e in enumerate(self.enc)], dim=1)  # (B, M, C, z)
                feats.append(z.flatten(0, 1)), labels.append(group.flatten(0, 1))
        feats = F.normalize(torch.cat(feats).flatten(0, 1), dim=-1)  # (N, z)
        labels = torch.cat(labels).flatten()  # (N,)
        n = feats.shape[0]
        idx = torch.randperm(n, device=feats.device)[: cfg.anchors or n]
        valid_q = self.queue_label >= 0
        pool = torch.cat([feats, self.queue[valid_q].clone()])  # (N + Q, z)
        pool_lab = torch.cat([labels, self.queue_label[valid_q].clone()])
        sim = feats[idx] @ pool.T / cfg.temperature  # (A, N + Q)
        self_mask = torch.zeros_like(sim, dtype=torch.bool)
        self_mask[torch.arange(len(idx)), idx] = True
        sim = sim.masked_fill(self_mask, NEG)
        pos = (labels[idx, None] == pool_lab[None, :]) & ~self_mask
        log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
        n_pos = pos.sum(1)
        has = n_pos > 0
        loss = -(log_prob * pos).sum(1)[has] / n_pos[has]
        self._enqueue(feats[idx].detach(), labels[idx])
        return loss.mean() if has.any() else feats.new_zeros(())

    @torch.no_grad()
    def _enqueue(self, feats: Tensor, labels: Tensor) -> None:
        q = self.queue.shape[0]
        if q == 0:
            return
        feats, labels = feats[-q:], labels[-q:]
        pos = (int(self.queue_ptr) + torch.arange(len(feats), device=feats.device)) % q
        self.queue[pos] = feats
        self.queue_label[pos] = labels
        self.queue_ptr.fill_((int(self.queue_ptr) + len(feats)) % q)

    @torch.no_grad()
    def _update_protos(self, lat_n: Tensor, pol: Tensor, avail: Tensor) -> None:
        """Moving-average class prototypes (paper eq. 8), batched: a class seen n times in
        the batch moves with momentum m^n towards the mean of its normalised latents."""
        for p, sel in ((0, pol), (1, 1 - pol)):  # positive, negative
            w = sel[:, None, :] * avail.float()[:, :, None]  # (B, M, C)
            cnt = w.sum(0)  # (M, C)
            mean = torch.einsum("bmc,bmcz->mcz", w, lat_n) / cnt.clamp_min(1)[..., None]
            mom = self.cfg.proto_m ** cnt  # (M, C)
            old = self.protos[:, p]
            fresh = old.abs().sum(-1) == 0  # never set: take the batch mean
            mom = torch.where(fresh, torch.zeros_like(mom), mom)
            new = F.normalize(mom[..., None] * old + (1 - mom[..., None]) * mean, dim=-1)
            self.protos[:, p] = torch.where((cnt > 0)[..., None], new, old)

    def _shuffled(self, beta: Tensor, pol: Tensor, keep: Tensor) -> Tensor:
        """Sample-wise then modality-wise shuffle of per-label vectors (paper eqs. 11-14)."""
        B, M, C, _ = beta.shape
        dev = beta.device
        # sample-wise: for every (modality, label) an independent permutation of the batch
        s_idx = torch.argsort(torch.rand(M, C, B, device=dev), dim=-1).permute(2, 0, 1)  # (B, M, C)
        # modality-wise: for every (sample, label) an independent permutation of the modalities
        m_idx = torch.argsort(torch.rand(B, C, M, device=dev), dim=-1).permute(0, 2, 1)  # (B, M, C)
        c_idx = torch.arange(C, device=dev)[None, None, :].expand(B, M, C)
        m_src = torch.arange(M, device=dev)[None, :, None].expand(B, M, C)
        # position (i, m, c) takes the vector of sample s_idx[i', m', c] at modality m' = m_idx[i, m, c]
        mm = torch.gather(m_src, 1, m_idx)  # (B, M, C) source modality
        ss = s_idx[torch.arange(B, device=dev)[:, None, None], mm, c_idx]  # (B, M, C) source sample
        vec = beta[ss, mm, c_idx]  # (B, M, C, d)
        tgt = pol[ss, c_idx]  # (B, M, C)
        ok = keep[ss, mm]  # (B, M, C) the source vector exists
        out = self.agg(vec.flatten(2))  # (B, M, C)
        bce = F.binary_cross_entropy_with_logits(out, tgt, reduction="none")
        return (bce * ok).sum() / ok.sum().clamp_min(1)
