"""Presets (`--preset paper`): layering, the preset tables against the configs they set,
the report's differences line, the paper's DB scale names, the optimiser / schedule /
loss options the preset needs, and `ramer run --preset paper` end to end."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.data.scales import SCALES, candidate_mask, in_medium_half
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.data.synth_multilabel import MultiLabelSynthConfig, write_multilabel
from pipeline.errors import RamerError
from pipeline.models.base import Batch, ModelSpec
from pipeline.models.encoders import EncoderConfig, UnimodalEncoder
from pipeline.models.registry import create_model
from pipeline.store.ingest import collection_name
from pipeline.store.qdrant_store import HiddenFeatureStore
from pipeline.training.config import ExperimentConfig, experiment_from_dict, load_experiment
from pipeline.training.presets import (
    PAPER,
    PRESETS,
    check_models,
    dotted,
    field_paths,
    model_option_keys,
    paper_differences,
)
from pipeline.training.systems import parse_system
from pipeline.training.trainer import lr_factor, model_loss


def _system(cfg: ExperimentConfig, text: str):
    return parse_system(text, cfg.retrieval, cfg.models)


def _train(cfg: ExperimentConfig, text: str):
    """The stage-3 TrainConfig a system trains with (as FoldRun.train builds it)."""
    from dataclasses import replace

    return replace(cfg.train, **_system(cfg, text).train)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------ layering


def test_layers_defaults_then_preset_then_toml_then_flags(tmp_path: Path) -> None:
    assert load_experiment(None).retrieval.scale == "turbo"  # default
    paper = load_experiment(None, preset="paper")
    assert paper.preset == "paper" and paper.retrieval.scale == "small" and paper.retrieval.finetune_encoders
    assert _system(paper, "carat").train["lr"] == 5e-5 and _system(paper, "carat").train["epochs"] == 20
    path = _toml(tmp_path, 'preset = "paper"\n[retrieval]\nscale = "large"\n[train]\nepochs = 7\n')
    cfg = load_experiment(path)
    assert cfg.preset == "paper" and cfg.retrieval.scale == "large" and cfg.retrieval.k == 10  # file > preset
    assert _train(cfg, "carat").epochs == 7 and _train(cfg, "carat").lr == 5e-5  # the file's train.epochs beats the preset's CARAT 20
    flagged = load_experiment(path, **{"train.epochs": 3, "retrieval.scale": "medium"})
    assert flagged.retrieval.scale == "medium" and _train(flagged, "carat").epochs == 3  # flags > file
    assert load_experiment(path, preset="none").retrieval.scale == "large"  # the flag's preset > the file's
    assert load_experiment(path, preset="none").retrieval.k == 10 and load_experiment(path, preset="none").models == {}


def test_models_table_in_toml_and_a_system_own_options_win(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'preset = "paper"\n[models.carat]\nepochs = 5\nqueue = 64\n')
    cfg = load_experiment(path)
    carat = _system(cfg, "carat")
    assert carat.train["epochs"] == 5 and carat.overrides["queue"] == 64 and carat.train["lr"] == 5e-5
    assert _train(load_experiment(path, **{"train.epochs": 2}), "carat").epochs == 2  # flag > file table
    assert _system(cfg, "carat(lr=0.1,queue=8)").train["lr"] == 0.1
    assert _system(cfg, "carat(lr=0.1,queue=8)").overrides["queue"] == 8
    with pytest.raises(RamerError, match=r"models.carat has no option\(s\) \['qeue'\]"):
        load_experiment(_toml(tmp_path, "[models.carat]\nqeue = 64\n"))


def test_strategy_entry_beats_the_model_entry_and_m3s_options_need_m3s() -> None:
    cfg = load_experiment(None, preset="paper")
    m3s, plain = _system(cfg, "mmin+m3s"), _system(cfg, "mmin")
    assert m3s.train["batch_size"] == 256 and m3s.train["epochs"] == 60 and m3s.train["schedule"] == "linear-decay"
    assert "batch_size" not in plain.train and plain.m3s == {}
    assert cfg.m3s.inner_lr == 2e-4 and cfg.m3s.outer_lr == 1e-4


def test_unknown_preset_is_one_line_listing_them(tmp_path: Path) -> None:
    with pytest.raises(RamerError) as err:
        load_experiment(None, preset="papr")
    assert str(err.value) == f"unknown preset 'papr'; available: {', '.join(PRESETS)}"
    with pytest.raises(RamerError, match="unknown preset 'x'"):
        load_experiment(_toml(tmp_path, 'preset = "x"\n'))


def test_resolved_preset_and_models_are_saved_and_reloaded(tmp_path: Path) -> None:
    cfg = load_experiment(None, preset="paper")
    cfg.save(tmp_path / "config.json")
    back = experiment_from_dict(json.loads((tmp_path / "config.json").read_text()))
    assert back.preset == "paper" and back.models == cfg.models and back.encoder == cfg.encoder
    assert back.retrieval.scale == "small"


# ------------------------------------------------------------------ the tables against the configs


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_field_exists_on_its_config(name: str) -> None:
    """Generated from the preset tables: a renamed option fails here."""
    table = PRESETS[name]
    known = field_paths(ExperimentConfig())
    assert set(dotted(table["experiment"])) <= known, set(dotted(table["experiment"])) - known
    for key, entry in table["models"].items():
        assert set(entry) <= model_option_keys(key), (key, set(entry) - model_option_keys(key))
    check_models(table["models"], name)  # the check the loader runs


def test_the_models_check_catches_a_renamed_option() -> None:
    renamed = {"carat": {**PAPER["models"]["carat"], "queue_size": 8192}}
    with pytest.raises(RamerError, match="queue_size"):
        check_models(renamed, "test")
    with pytest.raises(RamerError, match="unknown model 'caratt'"):
        check_models({"caratt": {}}, "test")


# ------------------------------------------------------------------ differences from the paper


def test_differences_name_each_setting_with_the_papers_value() -> None:
    default = load_experiment(None)
    diffs = {k: (a, b) for k, a, b in paper_differences(default, _system(default, "ramer"))}
    assert diffs["retrieval.scale"] == ("turbo", "small")
    assert diffs["retrieval.finetune_encoders"] == (False, True)
    assert "retrieval.refresh_every" not in diffs  # no effect on frozen encoders
    tuned = {k: (a, b) for k, a, b in paper_differences(default, _system(default, "ramer(finetune_encoders=true)"))}
    assert tuned["retrieval.refresh_every"] == (0, 1)
    assert diffs["encoder.d_model"] == (256, 0) and diffs["train.optimizer"] == ("adamw", "adam")
    carat = {k: (a, b) for k, a, b in paper_differences(default, _system(default, "carat"))}
    assert carat["model.w_final"] == (1.0, 0.0) and carat["model.queue"] == (1024, 8192)
    assert carat["train.schedule"] == ("constant", "warmup-linear") and "retrieval.scale" not in carat
    paper = load_experiment(None, preset="paper")
    for s in ("ramer", "w/o retrieval", "ae", "cra", "mmin", "if-mmin", "cif-mmin", "carat", "mmin+m3s"):
        assert paper_differences(paper, _system(paper, s)) == [], s
    assert paper_differences(paper, _system(paper, "ramer(k=5)")) == [("retrieval.k", 5, 10)]
    assert paper_differences(paper, _system(paper, "ramer(scale=turbo)")) == [("retrieval.scale", "turbo", "small")]
    assert paper_differences(paper, _system(paper, "ramer(scale=train)")) == []  # same rows as 'small'
    assert paper_differences(default, _system(default, "lr")) == []  # no paper specifies it


# ------------------------------------------------------------------ scales


def test_paper_scale_names() -> None:
    rng = np.random.default_rng(0)
    labeled = np.r_[np.ones(60, bool), np.zeros(80, bool)]
    samples = np.array([f"s{i}" for i in range(len(labeled))])
    train = np.flatnonzero(labeled)[rng.permutation(60)[:40]]
    half = ~labeled & in_medium_half(samples)
    is_train = np.isin(np.arange(len(labeled)), train)
    mask = {s: candidate_mask(samples, labeled, train, s) for s in SCALES}
    assert (mask["medium"] == half).all() and not (mask["medium"] & labeled).any()  # the paper: pool half only
    assert (mask["train+half-pool"] == (is_train | half)).all()
    assert (mask["small"] == is_train).all() and (mask["large"] == ~labeled).all()
    assert (mask["turbo"] == (is_train | ~labeled)).all()
    assert experiment_from_dict({"retrieval": {"scale": "medium"}}).retrieval.scale == "medium"


# ------------------------------------------------------------------ options the preset needs


def test_schedules() -> None:
    total = 100
    warm = [lr_factor("warmup-linear", i, total, 0.1) for i in range(total)]
    assert warm[0] == pytest.approx(0.1) and warm[9] == pytest.approx(1.0) and max(warm) == pytest.approx(1.0)
    assert warm[-1] == pytest.approx(1 / 90) and all(a >= b for a, b in itertools.pairwise(warm[9:]))
    decay = [lr_factor("linear-decay", i, total, 0.1) for i in range(total)]
    assert decay[:50] == [1.0] * 50 and decay[-1] == pytest.approx(0.0) and decay[60] < decay[55] < 1
    assert {lr_factor("constant", i, total, 0.1) for i in range(total)} == {1.0}


def _carat_batch(spec: ModelSpec, n: int = 6) -> Batch:
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(n, d, generator=g) for d in spec.dims]
    y = (torch.rand(n, spec.n_out, generator=g) > 0.5).float()
    return Batch(x=xs, avail=torch.ones(n, len(spec.dims), dtype=torch.bool), y=y, rows=torch.arange(n),
                 x_full=[x.clone() for x in xs])


@pytest.mark.parametrize("detach", [True, False])
def test_carat_eq15_switches(detach: bool) -> None:
    """w_final 0: the step's loss is the model's own; with nothing detached the
    reconstruction and contrastive losses alone reach the extractor."""
    spec = ModelSpec(("a", "v", "t"), (5, 4, 6), 3, "multi_label")
    only_aux = {"w_o": 0.0, "w_alpha": 0.0, "w_beta": 0.0, "w_agg": 0.0, "w_shuffle": 0.0, "w_final": 0.0,
                "detach_losses": detach, "d_model": 16, "ff": 16, "latent": 8, "queue": 32, "anchors": 0}
    torch.manual_seed(0)
    model = create_model("carat", spec, **only_aux).train()
    batch = _carat_batch(spec)
    out = model(batch)
    loss = model_loss(model, out, batch.y)
    assert torch.equal(loss, out.aux_loss)
    loss.backward()
    grads = [p.grad for p in model.extract.parameters()]
    reached = any(g is not None and bool(g.abs().sum() > 0) for g in grads)
    assert reached is (not detach)


def test_cif_mmin_pair_weights() -> None:
    from pipeline.models.imagination import pairwise

    feats = [torch.full((4, 2), float(i)) for i in range(3)]
    present = torch.ones(4, 3, dtype=torch.bool)
    dist = lambda a, b: (a - b).abs().mean()  # pairs (0,1)=1, (0,2)=2, (1,2)=1
    assert float(pairwise(dist, feats, present)) == pytest.approx(4 / 3)
    assert float(pairwise(dist, feats, present, weights=(0.25, 0.25, 0.5))) == pytest.approx(0.25 + 0.5 + 0.5)
    assert float(pairwise(dist, feats, present, weights=(0.0, 1.0, 0.0))) == pytest.approx(2.0)


def test_reference_encoder_shape_where_feasible() -> None:
    cfg = EncoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in PAPER["experiment"]["encoder"].items()})
    ref, odd = UnimodalEncoder(24, 3, cfg), UnimodalEncoder(12, 3, cfg)
    assert ref.width == 24 and isinstance(ref.proj, torch.nn.Identity) and ref.shape == "reference"
    assert odd.width == 256 and "not divisible by 8 heads" in odd.shape
    assert ref(torch.randn(2, 24)).shape == (2, 256)


# ------------------------------------------------------------------ end to end


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, sub in (("RAMER_DATA_DIR", "data"), ("RAMER_RUNS_DIR", "runs"), ("RAMER_RESULTS_DIR", "results"),
                     ("RAMER_QDRANT_PATH", "qdrant")):
        monkeypatch.setenv(key, str(tmp_path / sub))
    monkeypatch.setenv("RAMER_THREADS", "1")
    for key in ("QDRANT_URL", "RAMER_QDRANT_URL", "QDRANT_API_KEY", "RAMER_DEVICE"):
        monkeypatch.delenv(key, raising=False)
    return tmp_path


def _run(*argv: str) -> None:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    assert done.value.code == 0


SMALL = ["--folds", "0", "--runs", "1", "--epochs", "2", "--pretrain-epochs", "2", "--preset", "paper"]
CASES = {  # table3 writes the store: the preset's small DB holds fewer rows than the dataset
    "table3": (["--systems", "ramer,ae,cra,mmin,if-mmin,cif-mmin"], False),
    "m3s": (["--systems", "mmin", "--strategy", "m3s", "--missing-rate", "20-40", "--no-ingest"], False),
    "carat": (["--systems", "carat", "--no-ingest"], True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_preset_paper_end_to_end(env: Path, case: str, caplog: pytest.LogCaptureFixture) -> None:
    extra, multi = CASES[case]
    dims = {"audio": 16, "visual": 12, "text": 24}  # 12: not divisible by 8 heads
    if multi:
        ds = write_multilabel(env / "data" / "ml", MultiLabelSynthConfig(labeled=150, unlabeled=40, folds=3, dims=dims))
    else:
        ds = write_synthetic(env / "data" / "sl", SynthConfig(labeled=150, unlabeled=40, folds=3, dims=dims))
    with caplog.at_level(logging.INFO):
        _run("run", "--dataset", str(ds.root), "-e", case, *SMALL, *extra)
    results = env / "results" / case
    saved = json.loads((results / "config.json").read_text())["experiment"]
    assert saved["preset"] == "paper" and saved["retrieval"]["scale"] == "small" and saved["train"]["epochs"] == 2
    assert saved["models"]["carat"]["lr"] == 5e-5 and "epochs" not in saved["models"]["carat"]  # the flag won
    report = (results / "report.md").read_text()
    lines = [ln for ln in report.splitlines() if "differs from the paper in" in ln]
    systems = {name for ln in lines for name in ln.split(": differs")[0].split("`")[1::2]}
    if case == "table3":
        assert systems == {"ramer", "ae", "cra", "mmin", "if-mmin", "cif-mmin"}
        assert ("- `ramer`, `mmin`, `if-mmin`, `cif-mmin`: differs from the paper in: pretrain.epochs 2 (paper 40), "
                "train.epochs 2 (paper 40)") in lines
        # systems with the same differences share one line
        assert "- `ae`, `cra`: differs from the paper in: train.epochs 2 (paper 40)" in lines
        sizes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stage-1 encoder")]
        cfg = load_experiment(None, preset="paper")
        n_audio = sum(p.numel() for p in UnimodalEncoder(16, ds.manifest.n_classes, cfg.encoder).parameters())
        assert f"stage-1 encoder audio: {n_audio:,} parameters (2 layers at width 16, ff 2048)" in sizes
        assert any("visual" in s and "reference shape infeasible" in s and "width 256" in s for s in sizes)
        with HiddenFeatureStore.open(Settings(_env_file=None)) as store:  # every labeled row, no pool row
            name = collection_name(ds.manifest.name, case, 0)
            assert store.count(name) == 150 and store.count(name, scale="small") == 150
    elif case == "m3s":
        assert lines == ["- `mmin+m3s`: differs from the paper in: pretrain.epochs 2 (paper 40), train.epochs 2 (paper 60)"]
    else:
        assert lines == ["- `carat`: differs from the paper in: train.epochs 2 (paper 20)"]
