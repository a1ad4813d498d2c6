"""The RAMER paper's Table 4 ablations as system strings (see `systems.parse_system`).

`ramer` itself is the experiment's retrieval configuration (by default turbo scale, K=10,
cosine, unimodal hidden features, frozen encoders, kth-score; `--preset paper`: small,
K=10, fine-tuned); the scale x K grid uses the paper's scale names.
"""

from __future__ import annotations

from pipeline.data.scales import PAPER_SCALES, canonical_scale

# name -> systems; "all" is their union in this order
ABLATIONS: dict[str, list[str]] = {
    "retrieval": ["ramer", "w/o retrieval"],
    "db-source": ["ramer(db_source=raw)", "ramer(db_source=multimodal)"],
    "metric": ["ramer(metric=euclidean)"],
    "top1": ["ramer(k=1)"],
    "scale-k": [f"ramer(scale={s},k={k})" for s in PAPER_SCALES for k in (5, 10, 15)],
    "encoders": ["ramer(finetune_encoders=true)"],
    "two-rule": ["ramer(two_rule=both)"],
}


def ablation_systems(names: list[str], scale: str = "turbo", k: int = 10) -> list[str]:
    """Expand ablation group names ('all' or a comma list of ABLATIONS keys) to systems;
    the grid cell of the experiment's own (scale, k) is plain `ramer`, not a copy of it."""
    from pipeline.errors import RamerError

    groups = list(ABLATIONS) if names == ["all"] else names
    unknown = [g for g in groups if g not in ABLATIONS]
    if unknown:
        raise RamerError(f"unknown ablation(s) {unknown}; choose 'all' or from {list(ABLATIONS)}")
    out: list[str] = []
    own = {f"ramer(scale={s},k={k})" for s in PAPER_SCALES if canonical_scale(s) == canonical_scale(scale)}
    for g in groups:
        out += [s for s in ("ramer" if s in own else s for s in ABLATIONS[g]) if s not in out]
    return out
