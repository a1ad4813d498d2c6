"""Which settings of an experiment differ from the papers': the lines a report shows
under its main table (`pipeline.evaluation.report.render_report(differences=...)`).

They come from the training configuration (pipeline.training.presets), which the
evaluation layer does not read, so they are made here and handed to the report.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import RamerError
from pipeline.training.config import experiment_from_dict
from pipeline.training.presets import differences_line, paper_differences
from pipeline.training.systems import parse_system


def differences_lines(results_dir: Path, systems: list[str]) -> list[str]:
    """One line per system run under settings that differ from its paper's (compared
    with the `paper` preset, pipeline.training.presets), from the saved config.json;
    nothing for a results folder without one or systems no paper specifies."""
    path = results_dir / "config.json"
    if not path.is_file():
        return []
    saved = json.loads(path.read_text()).get("experiment")
    if not isinstance(saved, dict):
        return []
    cfg = experiment_from_dict(saved, str(path))
    groups: dict[str, tuple[list, list[str]]] = {}  # systems with the same differences share one line
    for label in systems:
        try:
            system = parse_system(label, cfg.retrieval, cfg.models)
        except RamerError:
            continue  # a label this version cannot parse: no claim about it
        diffs = paper_differences(cfg, system)
        if diffs:
            groups.setdefault(repr(diffs), (diffs, []))[1].append(label)  # values may be lists: key by repr
    lines = [differences_line(labels, diffs) for diffs, labels in groups.values()]
    if not lines:
        return []
    head = (f"Settings that differ from the papers (compared with `--preset paper`; this run: preset "
            f"`{cfg.preset}`; docs/paper.md says why each default differs):")
    return [head, "", *lines, ""]
