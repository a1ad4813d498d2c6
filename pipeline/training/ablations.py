"""The RAMER paper's Table 4 ablations as system strings (see `systems.parse_system`).

`ramer` itself is the turbo-scale, K=10, cosine, unimodal-hidden-feature, frozen-encoder,
kth-score configuration (the experiment's retrieval defaults).
"""

from __future__ import annotations

from pipeline.data.scales import SCALES

# name -> systems; "all" is their union in this order
ABLATIONS: dict[str, list[str]] = {
    "retrieval": ["ramer", "w/o retrieval"],
    "db-source": ["ramer(db_source=raw)", "ramer(db_source=multimodal)"],
    "metric": ["ramer(metric=euclidean)"],
    "top1": ["ramer(k=1)"],
    "scale-k": [
        f"ramer(scale={s},k={k})" if (s, k) != ("turbo", 10) else "ramer"
        for s in SCALES for k in (5, 10, 15)
    ],
    "encoders": ["ramer(finetune_encoders=true)"],
    "two-rule": ["ramer(two_rule=both)"],
}


def ablation_systems(names: list[str]) -> list[str]:
    """Expand ablation group names ('all' or a comma list of ABLATIONS keys) to systems."""
    from pipeline.errors import RamerError

    groups = list(ABLATIONS) if names == ["all"] else names
    unknown = [g for g in groups if g not in ABLATIONS]
    if unknown:
        raise RamerError(f"unknown ablation(s) {unknown}; choose 'all' or from {list(ABLATIONS)}")
    out: list[str] = []
    for g in groups:
        out += [s for s in ABLATIONS[g] if s not in out]
    return out
