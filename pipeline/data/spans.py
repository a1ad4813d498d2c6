"""The augmented missing-modality transform of M3S (section 3.2): partial missing spans.

For modality m with missing rate r_m, a contiguous span of k_m = floor(T_m * r_m) frames
starting at lambda_m ~ U{0, ..., T_m - k_m} is set to zero, so the span always fits
inside the sequence (T_m: the row's valid frames). Models here read pooled utterance
vectors, the mean of the valid frames, so where the dataset keeps its frames
(`--keep-sequences`) the span zeroes frames and the vector is pooled again:

    x' = x - (1 / T_m) * sum of the span's frames      (scaled space: 0 = the train mean)

which equals the mean over the T_m frames with the span's set to zero, and is x itself
at rate 0. A modality without frames (or `span_over = "dims"`) has its span over the D_m
dims of the utterance vector instead, zeroing k_m = floor(D_m * r_m) values.

Rates are drawn per sample and modality from a range per modality. Every random draw
takes an explicit `torch.Generator`, so fixed masks (ORIG training, validation and test
corruption) are reproducible from a recorded seed and identical across systems.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from pipeline.data.bank import FeatureBank

Range = tuple[float, float]


def parse_range(text: str | Sequence[float]) -> Range:
    """'0.4-0.6', '40-60' (percent) or [0.4, 0.6] -> (0.4, 0.6); checked to lie in [0, 1]."""
    if isinstance(text, str):
        parts = text.replace("%", "").split("-")
        if len(parts) != 2:
            raise ValueError(f"missing-rate range '{text}' is not LO-HI (e.g. 0.4-0.6 or 40-60)")
        lo, hi = (float(p) for p in parts)
        if lo > 1 or hi > 1:  # given in percent
            lo, hi = lo / 100, hi / 100
    else:
        lo, hi = (float(v) for v in text)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"missing-rate range ({lo}, {hi}) must satisfy 0 <= lo <= hi <= 1")
    return lo, hi


def parse_ranges(value: str | Sequence) -> list[Range]:
    """One range or several: '20-40,40-60', [0.4, 0.6] or [[0.2, 0.4], [0.4, 0.6]] -> [(lo, hi), ...]."""
    if isinstance(value, str):
        return [parse_range(t.strip()) for t in value.split(",") if t.strip()]
    items = list(value)
    if items and all(isinstance(v, (int, float)) for v in items):
        return [parse_range(items)]  # a single (lo, hi) pair
    return [parse_range(v) for v in items]


def range_tag(r: Range) -> str:
    """(0.4, 0.6) -> '40-60': a range in percent, as labels and tables write it."""
    return f"{round(100 * r[0])}-{round(100 * r[1])}"


def range_name(r: Range) -> str:
    """(0.4, 0.6) -> 'span40-60': the condition name in results tables."""
    return f"span{range_tag(r)}"


def draw_rates(n: int, ranges: Sequence[Range], gen: torch.Generator) -> Tensor:
    """(n, M) missing rates, uniform within each modality's range."""
    lo = torch.tensor([r[0] for r in ranges], dtype=torch.float64)  # (M,)
    hi = torch.tensor([r[1] for r in ranges], dtype=torch.float64)
    u = torch.rand(n, len(ranges), generator=gen, dtype=torch.float64)  # (n, M)
    return lo + u * (hi - lo)


def span_bounds(size: Tensor, rate: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(n,) start and length of one contiguous span of floor(size * rate) positions per
    row, inside [0, size): `size` (n,) is D_m (dims) or the row's valid frames."""
    size = size.long()
    k = torch.minimum(torch.floor(size * rate + 1e-9).long().clamp(min=0), size)  # eps: 0.5 * 10 -> 5, not 4
    start = torch.floor(torch.rand(len(rate), generator=gen, dtype=torch.float64) * (size - k + 1)).long()
    return torch.minimum(start, size - k), k  # min: guards u -> 1.0 rounding


def inside(start: Tensor, k: Tensor, width: int) -> Tensor:
    """(n, width) bool, True on each row's span [start, start + k)."""
    pos = torch.arange(width).unsqueeze(0)  # (1, width)
    return (pos >= start.unsqueeze(1)) & (pos < (start + k).unsqueeze(1))


def span_keep(dim: int, rate: Tensor, gen: torch.Generator) -> Tensor:
    """(n, dim) bool, False on one contiguous span of floor(dim * rate) values per row."""
    start, k = span_bounds(torch.full((len(rate),), dim), rate, gen)
    return ~inside(start, k, dim)


def span_masks(n: int, dims: Sequence[int], ranges: Sequence[Range], gen: torch.Generator) -> list[Tensor]:
    """M x (n, D_m) keep-masks for n samples: rates drawn, then one span per modality."""
    if len(ranges) == 1 and len(dims) > 1:
        ranges = list(ranges) * len(dims)
    if len(ranges) != len(dims):
        raise ValueError(f"{len(ranges)} missing-rate ranges for {len(dims)} modalities")
    rates = draw_rates(n, ranges, gen)  # (n, M)
    return [span_keep(d, rates[:, i], gen) for i, d in enumerate(dims)]


def modality_ranges(modalities: Sequence[str], default: Sequence[float], per_modality: dict) -> list[Range]:
    """One (lo, hi) per modality: the experiment's range unless overridden by name."""
    unknown = sorted(set(per_modality) - set(modalities))
    if unknown:
        raise ValueError(f"missing-rate ranges for unknown modalities {unknown} (have {list(modalities)})")
    return [parse_range(per_modality.get(m, default)) for m in modalities]


SPAN_OVER = ("auto", "dims")  # auto: frames where the dataset keeps them, else dims | always dims
Span = tuple[Tensor, Tensor]  # (n,) start, (n,) length


class SpanPlan:
    """Where each modality's span falls for the rows of `bank`: over each row's valid
    frames for a modality whose frames the bank keeps (unless `over="dims"`), else over
    the D_m dims of its utterance vector. `draw` takes the random numbers, `apply` zeroes
    (or re-pools); both work on dataset rows."""

    def __init__(self, bank: FeatureBank, ranges: Sequence[Range], over: str = "auto"):
        if over not in SPAN_OVER:
            raise ValueError(f"span_over '{over}': choose one of {SPAN_OVER}")
        self.bank, self.dims = bank, [x.shape[1] for x in bank.x]
        self.ranges = list(ranges) * len(self.dims) if len(ranges) == 1 else list(ranges)
        if len(self.ranges) != len(self.dims):
            raise ValueError(f"{len(ranges)} missing-rate ranges for {len(self.dims)} modalities")
        seq = bank.seq if bank.seq is not None and over == "auto" else [None] * len(self.dims)
        self.frames = list(seq)  # per modality its Sequences, or None: spans over dims

    @property
    def over_frames(self) -> list[bool]:
        return [s is not None for s in self.frames]

    def draw(self, rows: np.ndarray, gen: torch.Generator) -> list[Span]:
        """M x (start, length) of one span per row: rates first (n, M), then one start
        per modality (the draws of `span_masks`, so dims-only spans are the same)."""
        rows = np.asarray(rows)
        rates = draw_rates(len(rows), self.ranges, gen)  # (n, M)
        sizes = [torch.full((len(rows),), d) if s is None else torch.from_numpy(np.asarray(s.lengths[rows], np.int64))
                 for d, s in zip(self.dims, self.frames)]
        return [span_bounds(size, rates[:, i], gen) for i, size in enumerate(sizes)]

    def apply(self, rows: np.ndarray, xs: Sequence[Tensor], spans: Sequence[Span]) -> list[Tensor]:
        """M x (n, D_m) inputs of `rows` -> the same with each span applied: dims zeroed,
        or the span's frames taken out of the pooled vector (module docstring)."""
        out, framed = [], None
        if any(self.over_frames):
            p = torch.as_tensor(self.bank.pos[np.asarray(rows)])
            framed = self.bank.frames(np.asarray(rows), p, list(xs))  # scaled frames (n, T_m, D_m)
        for i, (x, (start, k)) in enumerate(zip(xs, spans)):
            if self.frames[i] is None:
                out.append(x * (~inside(start, k, x.shape[1])).to(x.device, x.dtype))
                continue
            f, length = framed.x[i], framed.lengths[:, i]  # (n, T, D), (n,)
            cut = inside(start, k, f.shape[1]).to(f.device, f.dtype)  # (n, T)
            removed = torch.einsum("nt,ntd->nd", cut, f) / length.clamp(min=1).to(f.dtype)[:, None]  # (n, D)
            out.append(x - removed.to(x.device, x.dtype))
        return out


def span_bank(bank: FeatureBank, rows: np.ndarray, ranges: Sequence[Range], seed: int, over: str = "auto",
              chunk: int = 1024) -> FeatureBank:
    """A shallow copy of `bank` whose `rows` have fixed seeded spans applied (val / test).

    The spans depend only on (seed, rows, ranges, dims or frame counts): identical for
    every system. Frames are read `chunk` rows at a time."""
    gen = torch.Generator().manual_seed(seed)
    rows = np.sort(np.asarray(rows))
    pos = torch.as_tensor(bank.pos[rows])
    plan = SpanPlan(bank, ranges, over)
    spans = plan.draw(rows, gen)
    parts = [plan.apply(rows[i : i + chunk], [x[pos[i : i + chunk]] for x in bank.x],
                        [(s[i : i + chunk], k[i : i + chunk]) for s, k in spans])
             for i in range(0, len(rows), chunk)]
    values = [torch.cat([p[m] for p in parts]) if parts else x[pos] for m, x in enumerate(bank.x)]
    return bank.with_rows(pos, values)


def span_condition(ranges: Sequence[Range]) -> str:
    """The test condition's name: 'span40-60', or 'span-20-40_40-60_...' per modality."""
    return range_name(ranges[0]) if len(set(ranges)) == 1 else "span-" + "_".join(range_tag(r) for r in ranges)
