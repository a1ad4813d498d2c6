"""NMER's noise scheduler: Gaussian or impulse noise at an intensity t in 0..100.

Intensity t is a DDPM timestep of a T = 100 step beta schedule; abar_t = prod_{s<=t}
(1 - beta_s), abar_0 = 1 (t = 0 leaves the input untouched):

- linear: betas evenly from 1e-3 to 0.2 (DDPM's 1e-4 .. 0.02 over 1000 steps, rescaled to
  100 steps as in improved DDPM), abar_100 ~ 2e-5;
- scaled-linear: the square roots evenly spaced between the same ends, abar_100 ~ 5e-4;
- cosine (Nichol and Dhariwal 2021): abar(t) = f(t) / f(0), f(t) = cos^2(pi/2 (t/T + s)/(1 + s)),
  s = 0.008, betas clipped at 0.999, abar_100 ~ 0.

Gaussian: x~ = sqrt(abar_t) x + sqrt(1 - abar_t) n, n ~ N(0, sigma_m^2) with sigma_m the
modality's feature std, so at t = 100 x~ is (almost) pure noise of the data's scale.

Impulse (salt-and-pepper): the same schedule sets the share of corrupted values:
each value is independently replaced, with probability 1 - abar_t, by +A_m or -A_m (sign
1/2 each), A_m the modality's largest |value|; the rest stay exactly as they were. So
t = 0 corrupts nothing and t = 100 (almost) everything, like the Gaussian mixing weight.

Noise is applied per modality; unavailable (zeroed) modalities stay zero. `stats` (sigma_m,
A_m) come from the training split for evaluation, or from the batch's clean inputs
inside a model during training. Every draw takes an explicit `torch.Generator`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

KINDS = ("gaussian", "impulse")
SCHEDULES = ("linear", "scaled-linear", "cosine")
T_MAX = 100


def betas(schedule: str = "linear", steps: int = T_MAX) -> Tensor:
    """(steps,) float64 betas of the named schedule."""
    scale = 1000 / steps  # DDPM's ranges were set for 1000 steps
    b0, b1 = 1e-4 * scale, min(0.02 * scale, 0.999)
    if schedule == "linear":
        return torch.linspace(b0, b1, steps, dtype=torch.float64)
    if schedule == "scaled-linear":
        return torch.linspace(b0**0.5, b1**0.5, steps, dtype=torch.float64) ** 2
    if schedule == "cosine":
        s = 0.008
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule '{schedule}'; use one of {SCHEDULES}")


@dataclass(frozen=True)
class NoiseStats:
    """Per-modality scale of the clean features: std (Gaussian) and max |x| (impulse)."""

    std: tuple[float, ...]
    maxabs: tuple[float, ...]

    @classmethod
    def of(cls, xs: Sequence[Tensor]) -> NoiseStats:
        return cls(
            tuple(float(x.float().std()) if x.numel() > 1 else 1.0 for x in xs),
            tuple(float(x.abs().max()) if x.numel() else 1.0 for x in xs),
        )


class NoiseScheduler:
    """x~ = scheduler(xs, t, gen): noisy copies of M x (B, D_m) inputs at intensity t."""

    def __init__(self, kind: str = "gaussian", schedule: str = "linear", steps: int = T_MAX):
        if kind not in KINDS:
            raise ValueError(f"unknown noise '{kind}'; use one of {KINDS}")
        self.kind, self.schedule, self.steps = kind, schedule, steps
        abar = torch.cumprod(1 - betas(schedule, steps), dim=0)
        self.abar = torch.cat([torch.ones(1, dtype=torch.float64), abar])  # (steps+1,), abar[0] = 1

    def alpha_bar(self, t: float) -> float:
        if not 0 <= t <= self.steps:
            raise ValueError(f"noise intensity {t} outside 0..{self.steps}")
        return float(self.abar[round(t)])

    def corrupt_share(self, t: float) -> float:
        """Impulse: the expected share of replaced values, 1 - abar_t."""
        return 1.0 - self.alpha_bar(t)

    def one(self, x: Tensor, t: float, gen: torch.Generator | None, std: float, maxabs: float) -> Tensor:
        """Noise for one modality (B, D); rows that are all zero (absent) stay zero."""
        a = self.alpha_bar(t)
        if a >= 1.0:
            return x
        present = (x != 0).any(dim=1, keepdim=True)  # (B, 1)
        if self.kind == "gaussian":
            n = torch.randn(x.shape, generator=gen, dtype=x.dtype, device="cpu").to(x.device) * std
            out = math.sqrt(a) * x + math.sqrt(1 - a) * n
        else:
            u = torch.rand(x.shape, generator=gen, device="cpu").to(x.device)  # (B, D)
            sign = torch.rand(x.shape, generator=gen, device="cpu").to(x.device) < 0.5
            impulse = torch.where(sign, maxabs, -maxabs).to(x.dtype)
            out = torch.where(u < 1 - a, impulse, x)
        return torch.where(present, out, x)

    def __call__(
        self, xs: Sequence[Tensor], t: float | Sequence[int | float],
        gen: torch.Generator | None, stats: NoiseStats | None = None,
    ) -> list[Tensor]:
        """Every modality at intensity t (or t[m] per modality)."""
        stats = stats or NoiseStats.of(xs)
        ts = list(t) if isinstance(t, Sequence) else [t] * len(xs)
        return [self.one(x, tm, gen, s, a) for x, tm, s, a in zip(xs, ts, stats.std, stats.maxabs)]


def parse_noise(spec: str) -> tuple[str, list[int]]:
    """'gaussian:20,40,60' -> ('gaussian', [20, 40, 60]) (the `--noise` option)."""
    kind, sep, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS or not sep:
        raise ValueError(f"--noise '{spec}' is not KIND:T1,T2,... with KIND in {KINDS}")
    try:
        ts = [int(v) for v in rest.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--noise '{spec}': intensities must be integers 0..{T_MAX}") from None
    if not ts or any(not 0 <= v <= T_MAX for v in ts):
        raise ValueError(f"--noise '{spec}': intensities must be integers 0..{T_MAX}")
    return kind, ts
