"""`ramer data info` and the import summary make a wrong import visible: per modality its
dim, the source it came from, the share of all-zero rows and the row-norm statistics, and
one warning line for a modality whose rows are mostly all zero or whose dim contradicts
the extractor its source names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli.data import app
from pipeline.data.dataset import load_dataset
from pipeline.data.importers import import_parquet
from pipeline.data.info import ModalityStats, dataset_info, modality_warnings
from tests.test_import_iemocap import write_mmin_iemocap
from tests.test_import_mer2024 import write_mertools_mer2024

WIDE = {"COLUMNS": "250"}


def write_parquet(path: Path, n: int = 20, zero_rows: int = 12) -> np.ndarray:
    """A bring-your-own parquet whose `audio` has `zero_rows` all-zero (present) rows and
    rows of L2 norm 1..n-zero_rows otherwise; `visual` rows all have norm 2."""
    audio = np.zeros((n, 4), np.float32)
    norms = np.arange(1, n - zero_rows + 1, dtype=np.float32)
    audio[zero_rows:, 0] = norms  # norm = the first value
    visual = np.full((n, 4), 1.0, np.float32)  # norm 2
    pq.write_table(pa.table({
        "sample": [f"s{i}" for i in range(n)],
        "label": np.arange(n) % 2,
        "audio": pa.array(list(audio), pa.list_(pa.float32())),
        "visual": pa.array(list(visual), pa.list_(pa.float32())),
    }), path)
    return norms


def test_stats_values_source_and_mostly_zero_warning(tmp_path):
    norms = write_parquet(tmp_path / "f.parquet")
    info = dataset_info(import_parquet(tmp_path / "f.parquet", "byo", tmp_path / "byo", folds=2))
    a, v = info.stats["audio"], info.stats["visual"]
    assert (a.dim, a.source, a.present) == (4, "column audio", 20)
    assert a.zero_share == pytest.approx(0.6)
    all_norms = np.concatenate([np.zeros(12), norms])
    assert (a.norm_p5, a.norm_median, a.norm_p95) == pytest.approx(tuple(np.percentile(all_norms, [5, 50, 95])))
    assert v.zero_share == 0 and v.norm_median == pytest.approx(2.0)
    assert info.warnings == [("warning: modality 'audio' (from column audio): 60.0 % of its present rows are all zero "
                             "(padding or failed extraction read as features?)")]


def test_half_zero_rows_do_not_warn(tmp_path):
    write_parquet(tmp_path / "f.parquet", zero_rows=10)
    info = dataset_info(import_parquet(tmp_path / "f.parquet", "byo", tmp_path / "byo", folds=2))
    assert info.stats["audio"].zero_share == pytest.approx(0.5) and info.warnings == []


def test_dim_that_contradicts_the_named_extractor_warns():
    ok = ModalityStats(dim=342, source="V/raw_denseface.h5", present=5, zero_share=0.0, norm_p5=1, norm_median=1,
                       norm_p95=1)
    swapped = ModalityStats(dim=1024, source="V/denseface.h5", present=5, zero_share=0.0, norm_p5=1,
                            norm_median=1, norm_p95=1)
    unknown = ModalityStats(dim=7, source="?", present=5, zero_share=0.0, norm_p5=1, norm_median=1, norm_p95=1)
    assert modality_warnings({"visual": ok, "text": unknown}) == []
    described = ModalityStats(dim=1024, source="list index 5 (DenseFace)", present=5, zero_share=0.0, norm_p5=1,
                              norm_median=1, norm_p95=1)
    assert "but denseface features have 342 values" in modality_warnings({"visual": described})[0]
    assert modality_warnings({"audio": swapped}) == [
        ("warning: modality 'audio' (from V/denseface.h5): dim 1024, but denseface features have 342 values "
        "(modalities swapped, or another extractor?)")]


def test_import_summary_shows_sources_and_warns_on_a_wrong_dim(tmp_path):
    write_mertools_mer2024(tmp_path / "src", n_train=12, n_test=2,
                           dims={"chinese-hubert-large": 8, "manet": 3, "Baichuan-13B-Base": 5})
    res = CliRunner().invoke(app, ["import", "mer2024", str(tmp_path / "src"), "--name", "mer", "--out",
                                   str(tmp_path / "mer"), "--audio", "chinese-hubert-large", "--visual", "manet",
                                   "--folds", "2"], env=WIDE)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "audio: dim 8 from chinese-hubert-large-UTT; present 14/14, all-zero rows 0.0 %" in out
    assert "visual: dim 3 from manet_UTT" in out
    warn = [ln for ln in out.splitlines() if ln.startswith("warning:")]
    assert warn == [("warning: modality 'audio' (from chinese-hubert-large-UTT): dim 8, but chinese-hubert-large "
                    "features have 1024 values (modalities swapped, or another extractor?)")]


def test_info_table_for_an_mmin_import(tmp_path):
    write_mmin_iemocap(tmp_path / "src")
    res = CliRunner().invoke(app, ["import", "iemocap-mmin", str(tmp_path / "src"), "--name", "ie", "--out",
                                   str(tmp_path / "ie")], env=WIDE)
    assert res.exit_code == 0, res.output
    assert "visual: dim 342 from V/denseface.h5; present 11/12, all-zero rows 0.0 %" in res.output
    assert "warning" not in res.output
    assert "all-zero (padding) frames left out of the mean: audio 0/" in res.output
    assert re.search(r"visual \d+/120 \(1 utterance\(s\) without a frame: absent\), text \d+/120\n", res.output)
    res = CliRunner().invoke(app, ["info", str(tmp_path / "ie")], env=WIDE)
    assert res.exit_code == 0, res.output
    row = next(ln for ln in res.output.splitlines() if "V/denseface.h5" in ln)
    assert "visual" in row and "342" in row and "91.7 %" in row  # 11 of 12 present: the face-less one is absent
    assert "all-zero" in res.output and "L2 norms (median [p5, p95])" in res.output


def test_info_without_recorded_sources_shows_a_question_mark(tmp_path):
    from pipeline.data.dataset import write_dataset
    from pipeline.data.synth import SynthConfig, make_synthetic

    manifest, table, _ = make_synthetic(SynthConfig(labeled=30, unlabeled=10, dims={"audio": 4, "text": 3}, folds=2,
                                                    seed=0), "syn")
    ds = write_dataset(tmp_path / "syn", manifest, table)
    info = dataset_info(load_dataset(ds.root))
    assert {m: s.source for m, s in info.stats.items()} == {"audio": "?", "text": "?"}
    res = CliRunner().invoke(app, ["info", str(tmp_path / "syn")], env=WIDE)
    assert res.exit_code == 0 and "│ ?" in res.output
