"""NMER: noise-robust joint representation under incomplete data ("Learning Noise-Robust Joint Representation for Multimodal Emotion Recognition under Incomplete Data Scenarios", arXiv 2311.16114).

- Modality-specific encoders E_m: noisy x_m -> h_m (B, H).
- Modality-invariant encoder: a per-modality projection then one shared MLP and tanh, c_m (B, H);
  the invariant feature H' is their mean over the available modalities. A consistency
  loss (central moment discrepancy, as IF-MMIN) pulls the c_m of a sample's modalities
  to one distribution.
- Conditional VAE: q(z | [h_1..h_M], H') -> (mu, log var); z = mu + sigma eps (training),
  z = mu (evaluation, deterministic); the decoder p(. | z, H') outputs a residual
  correction of the noisy specific features, J = [h_1..h_M] + p(z, H') (B, M*H) (as
  MMIN's residual autoencoders; a plain decoder output left the classifier at chance for
  many epochs on our data), trained to reconstruct the *clean* joint representation
  [E_1(x_1) .. E_M(x_M)] of the complete clean input (stop-gradient target), plus KL.
- Classifier on [J, H'].

Losses (aux_loss, the trainer adds CE / BCE / L1): inv_weight x CMD + recon_weight x
MSE(J, clean target) + kl_weight x KL. `vae=False` is the "w/o VAE" ablation: the
classifier reads [h_1..h_M, H'] directly, no reconstruction, no KL.

Training noise lives inside `forward`: in training mode with the clean inputs
(`batch.x_full`) given, each modality of the batch gets noise from the scheduler
(`pipeline.data.noise`) with its own t ~ U{0..t_max} and kind (Gaussian or impulse,
1/2 each), scaled by that batch's clean-feature statistics; `noise_prob` of the batches
are noised. Evaluation never adds noise (that is `ramer evaluate --noise`), so the
model stays a plain function of its inputs. Unavailable modalities stay zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline.data.noise import KINDS, NoiseScheduler, NoiseStats
from pipeline.models.base import Batch, MERModel, ModelSpec, Output, mlp
from pipeline.models.imagination import cmd, masked_mean, pairwise
from pipeline.models.registry import register_model


@register_model("nmer")
class NMER(MERModel):
    @dataclass
    class Config:
        hidden: int = 128  # H: per-modality specific / invariant feature size
        enc_hidden: int = 256  # hidden width of each encoder MLP
        latent: int = 64  # VAE latent size
        vae_hidden: int = 256  # VAE encoder / decoder hidden width
        classifier: tuple[int, ...] = (128,)  # hidden sizes of the classifier MLP
        dropout: float = 0.3  # encoders and classifier
        vae: bool = True  # False = the "w/o VAE" ablation
        inv_weight: float = 1.0  # invariant consistency (CMD) loss
        recon_weight: float = 1.0  # MSE(J, clean joint representation)
        kl_weight: float = 1e-3  # KL(q(z | .) || N(0, I))
        noise_prob: float = 0.5  # share of training batches that get noise (0.5 > 0.8 on validation: benchmarks/experiments/nmer_sweep.toml)
        t_max: int = 100  # training intensities t ~ U{0..t_max}
        schedule: str = "linear"  # beta schedule: linear | scaled-linear | cosine

    def __init__(self, spec: ModelSpec, cfg: NMER.Config):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        h, m = cfg.hidden, len(spec.dims)
        self.specific = nn.ModuleList(mlp([d, cfg.enc_hidden, h], cfg.dropout, last_act=True) for d in spec.dims)
        self.project = nn.ModuleList(nn.Linear(d, cfg.enc_hidden) for d in spec.dims)
        self.shared = mlp([cfg.enc_hidden, cfg.enc_hidden, h], cfg.dropout)  # invariant encoder
        if cfg.vae:
            self.q = mlp([m * h + h, cfg.vae_hidden, 2 * cfg.latent])  # -> (mu, log var)
            self.p = mlp([cfg.latent + h, cfg.vae_hidden, m * h])  # -> J
            with torch.no_grad():  # start with a narrow posterior (std ~0.05): at the default
                # init (std ~1) the sampled z drowns mu and the classifier sits at chance for epochs
                self.q[-1].bias[cfg.latent :].fill_(-6.0)
                self.q[-1].weight[cfg.latent :].mul_(0.01)
        self.head = mlp([m * h + h, *cfg.classifier, spec.n_out], cfg.dropout)
        self.noisers = {k: NoiseScheduler(k, cfg.schedule) for k in KINDS}

    # ------------------------------------------------------------ pieces

    def train_noise(self, batch: Batch) -> list[Tensor]:
        """Noisy copies of the batch inputs (t and kind drawn per modality), training only."""
        if float(torch.rand(())) >= self.cfg.noise_prob:
            return batch.x
        stats = NoiseStats.of([x.detach() for x in batch.x_full])
        out = []
        for i, x in enumerate(batch.x):
            kind = KINDS[int(torch.randint(len(KINDS), ()))]
            t = int(torch.randint(self.cfg.t_max + 1, ()))
            out.append(self.noisers[kind].one(x, t, None, stats.std[i], stats.maxabs[i]))
        return out

    def encode(self, xs: list[Tensor], avail: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
        hs = [enc(x) for enc, x in zip(self.specific, xs)]  # M x (B, H)
        cs = [torch.tanh(self.shared(torch.relu(p(x)))) for p, x in zip(self.project, xs)]  # M x (B, H) in [-1, 1] (CMD's range)
        inv = masked_mean(cs, avail)  # (B, H)
        return hs, cs, inv

    @torch.no_grad()
    def clean_joint(self, xs: list[Tensor]) -> Tensor:
        """The reconstruction target: specific features of the clean complete input, no dropout."""
        was = self.specific.training
        self.specific.eval()
        target = torch.cat([enc(x) for enc, x in zip(self.specific, xs)], -1)  # (B, M*H)
        self.specific.train(was)
        return target

    # ------------------------------------------------------------ forward

    def forward(self, batch: Batch) -> Output:
        training = self.training and batch.x_full is not None
        xs = self.train_noise(batch) if training else batch.x
        hs, cs, inv = self.encode(xs, batch.avail)
        h = torch.cat(hs, dim=-1)  # (B, M*H) noisy specific features
        aux = self.zero_aux(h)
        if self.cfg.vae:
            mu, logvar = self.q(torch.cat([h, inv], -1)).chunk(2, dim=-1)  # (B, Z) each
            logvar = logvar.clamp(-8.0, 8.0)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
            joint = h + self.p(torch.cat([z, inv], -1))  # (B, M*H): a residual correction of h
        else:
            joint = h
        logits = self.head(torch.cat([joint, inv], -1))  # (B, n_out)
        if training:
            aux = aux + self.cfg.inv_weight * pairwise(cmd, cs, batch.avail)
            if self.cfg.vae:
                target = self.clean_joint(batch.x_full)  # (B, M*H)
                kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1).mean()
                aux = aux + self.cfg.recon_weight * nn.functional.mse_loss(joint, target) + self.cfg.kl_weight * kl
        return Output(logits=logits, aux_loss=aux, hidden=torch.cat([joint, inv], -1))
