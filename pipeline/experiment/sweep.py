"""`ramer sweep`: stages 1-3 and validation scores only; the test split is never scored.

A sweep compares settings. Scored on test, it would leak: the setting that wins on test
rows is then reported on those same rows. So a sweep trains every system (every variant
of an 'a|b' selection) per (fold, run), reads back the validation score each was selected
on, and writes results/<experiment>/validation.parquet (one row per system x variant x
unit) and validation.md (mean / std over units). Stage 2's precision@K (computed on test
queries) and every stage-4 metric are skipped, and diagnostic systems that look at test
(`leaky[...]`) are refused. The same checkpoints serve a later `ramer run` of the
experiment, so the nested system found here is then tested without retraining.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import RamerError
from pipeline.evaluation.tables import markdown_table
from pipeline.training.systems import SystemSpec

COLUMNS = ("system", "variant", "trained", "fold", "run", "val_score", "val_chance", "best_epoch", "chosen")


def refuse_test_systems(systems: list[SystemSpec]) -> None:
    """Diagnostic systems train or select on test rows: they cannot be in a sweep."""
    leaky = [s.label for s in systems if s.leaks or any(c.leaks for c in s.candidates)]
    if leaky:
        raise RamerError(f"ramer sweep never looks at test rows, and {leaky} do (leak diagnostics): "
                         "run them with `ramer run`")


def validation_rows(fr, system: SystemSpec) -> list[dict]:
    """One row per variant of `system` trained on this unit (one for a plain system):
    its best validation score and whether this unit's nested selection chose it."""
    variants = system.candidates or (system,)
    chosen = fr.chosen(system).label
    rows = []
    for v in variants:
        _, rec = fr.train(v)  # cached: the checkpoints of `ramer run` / `ramer train`
        rows.append({
            "system": system.label, "variant": v.label, "trained": rec["system"],
            "fold": fr.ctx.split.fold, "run": fr.ctx.split.run, "val_score": float(rec["val_score"]),
            "val_chance": float(rec.get("val_chance", float("nan"))), "best_epoch": int(rec["best_epoch"]),
            "chosen": v.label == chosen,
        })
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per (system, variant): mean / std of the validation score over units, the unit
    count, and how many units chose it (a plain system: every unit)."""
    out = []
    keys = list(dict.fromkeys((r["system"], r["variant"]) for r in rows))
    for system, variant in keys:
        mine = [r for r in rows if (r["system"], r["variant"]) == (system, variant)]
        vals = np.array([r["val_score"] for r in mine])
        out.append({"system": system, "variant": variant, "mean": float(vals.mean()), "std": float(vals.std()),
                    "units": len(mine), "chosen_in": sum(r["chosen"] for r in mine),
                    "chance": float(np.mean([r["val_chance"] for r in mine]))})
    return out


def render(rows: list[dict], title: str, score: str, fingerprint: str) -> str:
    """validation.md: the summary, then every unit's raw score."""
    units = len({(r["fold"], r["run"]) for r in rows})
    intro = (f"Validation {score} (the score models are selected on), per system and variant, over "
             f"{units} fold x run units. `ramer sweep` trains stages 1-3 and "
             "never scores the test split; a selection `a|b` picks per unit on that unit's own validation split "
             "(`chosen in`). Raw rows: `validation.parquet`.")
    summary = [[s["system"], s["variant"], f"{s['mean']:.4f}", f"{s['std']:.4f}", str(s["units"]),
                f"{s['chosen_in']}/{s['units']}", f"{s['chance']:.4f}"] for s in summarise(rows)]
    units_rows = [[r["system"], r["variant"], str(r["fold"]), str(r["run"]), f"{r['val_score']:.4f}",
                   str(r["best_epoch"]), "yes" if r["chosen"] else ""] for r in rows]
    lines = [f"# {title}: validation only", "", intro, "", f"Data fingerprint: `{fingerprint}`", "",
             *markdown_table(["system", "variant", "mean", "std", "units", "chosen in", "chance"], summary),
             "", "## Per unit", "",
             *markdown_table(["system", "variant", "fold", "run", "val", "best epoch", "chosen"], units_rows)]
    return "\n".join(lines) + "\n"


def write_validation(rows: list[dict], results_dir: Path, title: str, task: str, fingerprint: str) -> Path:
    """results/<experiment>/validation.{parquet,md}; nothing else is written there."""
    from pipeline.evaluation.tables import rows_to_table, write_parquet

    if not rows:
        raise RamerError("ramer sweep: no system was trained (give --systems)")
    score = {"single_label": "WA", "multi_label": "micro-F1", "regression": "-MAE"}[task]
    results_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(rows_to_table([{k: r[k] for k in COLUMNS} for r in rows]), results_dir / "validation.parquet")
    path = results_dir / "validation.md"
    path.write_text(render(rows, title, score, fingerprint))
    return path
