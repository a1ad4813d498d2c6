"""The augmented missing-modality transform of M3S (section 3.2): partial missing spans.

For modality m with missing rate r_m, a contiguous span of k_m = floor(D_m * r_m) values
starting at lambda_m ~ U{0, ..., D_m - k_m} is set to zero, so the span always fits
inside the vector. The papers apply it to the encoded (sequence) feature of length T_m;
our inputs are utterance vectors (B, D_m), so the span runs over the input dims.

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


def span_keep(dim: int, rate: Tensor, gen: torch.Generator) -> Tensor:
    """(n, dim) bool, False on one contiguous span of floor(dim * rate) values per row."""
    k = torch.floor(dim * rate + 1e-9).long().clamp(0, dim)  # (n,); eps: 0.5 * 10 -> 5, not 4
    start = torch.floor(torch.rand(len(rate), generator=gen, dtype=torch.float64) * (dim - k + 1)).long()
    start = torch.minimum(start, dim - k)  # guards u -> 1.0 rounding
    pos = torch.arange(dim).unsqueeze(0)  # (1, dim)
    return ~((pos >= start.unsqueeze(1)) & (pos < (start + k).unsqueeze(1)))


def span_masks(n: int, dims: Sequence[int], ranges: Sequence[Range], gen: torch.Generator) -> list[Tensor]:
    """M x (n, D_m) keep-masks for n samples: rates drawn, then one span per modality."""
    if len(ranges) == 1 and len(dims) > 1:
        ranges = list(ranges) * len(dims)
    if len(ranges) != len(dims):
        raise ValueError(f"{len(ranges)} missing-rate ranges for {len(dims)} modalities")
    rates = draw_rates(n, ranges, gen)  # (n, M)
    return [span_keep(d, rates[:, i], gen) for i, d in enumerate(dims)]


def apply_spans(xs: Sequence[Tensor], keep: Sequence[Tensor]) -> list[Tensor]:
    """Zero the spans: M x (B, D_m) inputs times their keep-masks."""
    return [x * k.to(device=x.device, dtype=x.dtype) for x, k in zip(xs, keep)]


def modality_ranges(modalities: Sequence[str], default: Sequence[float], per_modality: dict) -> list[Range]:
    """One (lo, hi) per modality: the experiment's range unless overridden by name."""
    unknown = sorted(set(per_modality) - set(modalities))
    if unknown:
        raise ValueError(f"missing-rate ranges for unknown modalities {unknown} (have {list(modalities)})")
    return [parse_range(per_modality.get(m, default)) for m in modalities]


def span_bank(bank: FeatureBank, rows: np.ndarray, ranges: Sequence[Range], seed: int) -> FeatureBank:
    """A shallow copy of `bank` whose `rows` have fixed seeded spans zeroed (val / test).

    The masks depend only on (seed, rows, ranges, dims): identical for every system."""
    gen = torch.Generator().manual_seed(seed)
    rows = np.sort(np.asarray(rows))
    pos = torch.as_tensor(bank.pos[rows])
    keep = span_masks(len(rows), [x.shape[1] for x in bank.x], ranges, gen)  # M x (n, D_m)
    return bank.with_rows(pos, [x[pos] * k.to(x.device, x.dtype) for x, k in zip(bank.x, keep)])


def span_condition(ranges: Sequence[Range]) -> str:
    """The test condition's name: 'span40-60', or 'span-20-40_40-60_...' per modality."""
    return range_name(ranges[0]) if len(set(ranges)) == 1 else "span-" + "_".join(range_tag(r) for r in ranges)
