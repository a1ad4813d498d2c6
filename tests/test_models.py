"""Registry-generated model tests (timm style): every registered model, present and future,
gets forward / backward / shape / finiteness checks under every missing condition and
every task; each baseline also has to learn a tiny synthetic task clearly above chance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.data.bank import FeatureBank
from pipeline.data.dataset import build_table, write_dataset
from pipeline.data.missing import condition_matrix
from pipeline.data.schema import Manifest, ModalitySpec
from pipeline.models.base import Batch, ModelSpec, task_loss
from pipeline.models.inference import predict
from pipeline.models.registry import create_model, list_models, model_class
from pipeline.models.scores import score_accuracy
from pipeline.retrieval.fill import RetrievalFiller
from pipeline.retrieval.retriever import ModalityRetriever
from pipeline.training.config import RetrievalConfig
from pipeline.training.trainer import ConditionBatches, TrainConfig, fit

BASELINES = ["ae", "cra", "mmin", "if-mmin", "cif-mmin"]
DIMS = {"audio": 16, "visual": 12, "text": 20}
N_CLASSES = 6
TASKS = ["single_label", "multi_label", "regression"]


def manifest(task: str = "single_label") -> Manifest:
    return Manifest(
        name="tiny",
        task=task,
        classes=[f"c{i}" for i in range(N_CLASSES)],
        modalities=[ModalitySpec(name=m, dim=d) for m, d in DIMS.items()],
        folds=5,
    )


class TinyFold:
    """A (fold, run) for models that set themselves up from one (`MERModel.attach`):
    64 rows of random scaled features, every row a retrieval candidate but the query."""

    device = "cpu"

    def __init__(self, rows: int = 64, seed: int = 0, features: dict | None = None):
        rng = np.random.default_rng(seed)
        self.features = features or {m: rng.normal(size=(rows, d)).astype(np.float32) for m, d in DIMS.items()}
        self.present = {m: np.ones(len(x), bool) for m, x in self.features.items()}

    def scaled_features(self) -> dict[str, np.ndarray]:
        return self.features

    def filler(self, vectors, retrieval, *, stored_queries, fuse="sum-l2"):
        n = len(next(iter(vectors.values())))
        retr = ModalityRetriever(k=retrieval.k, metric=retrieval.metric).fit(vectors, self.present, np.ones(n, bool))
        filler = RetrievalFiller(retr, list(DIMS), vectors, self.present, k=retrieval.k,
                                 keys=vectors if stored_queries else None, fuse=fuse)
        if stored_queries:
            filler.precompute(np.arange(n))
        return filler


def build(name: str, spec: ModelSpec, fold: TinyFold | None = None, **kw):
    """RAMER is built without retrieval (its stage-1 DB is tested in test_ramer); a model
    that takes other resources from its fold gets a `TinyFold`."""
    cls = model_class(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    if "retrieval" in fields:
        kw.setdefault("retrieval", False)
    model = create_model(name, spec, **kw)
    if not cls.uses_stage1_encoders:
        model.attach(fold or TinyFold(), RetrievalConfig(k=3))
    return model


def make_batch(task: str, avail: np.ndarray, seed: int = 0, with_full: bool = True) -> Batch:
    g = torch.Generator().manual_seed(seed)
    b = len(avail)
    av = torch.as_tensor(avail)
    full = [torch.randn(b, d, generator=g) for d in DIMS.values()]  # M x (B, D_m)
    if task == "single_label":
        y = torch.randint(0, N_CLASSES, (b,), generator=g)
    elif task == "multi_label":
        y = (torch.rand(b, N_CLASSES, generator=g) > 0.5).float()
    else:
        y = torch.randn(b, generator=g)
    return Batch(
        x=[x * av[:, i : i + 1] for i, x in enumerate(full)],
        avail=av,
        rows=torch.arange(b),
        y=y,
        x_full=full if with_full else None,
    )


def spec_for(task: str) -> ModelSpec:
    n_out = 1 if task == "regression" else N_CLASSES
    return ModelSpec(tuple(DIMS), tuple(DIMS.values()), n_out, task)


def all_conditions(rows_each: int = 2) -> np.ndarray:
    """(C * rows_each, M): every condition of the papers, all-present included."""
    return np.repeat(condition_matrix(manifest(), include_full=True), rows_each, axis=0)


def assert_finite_grads(model: torch.nn.Module) -> None:
    grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    assert grads, "no parameter received a gradient"
    for n, g in grads:
        assert torch.isfinite(g).all(), f"non-finite gradient in {n}"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and do not collapse on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_baselines_registered():
    assert set(BASELINES) <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_config_documented_defaults(name):
    cfg = model_class(name).Config()  # every field has a default
    assert dataclasses.is_dataclass(cfg)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", list_models())
def test_forward_backward_every_condition(name, task):
    torch.manual_seed(0)
    spec = spec_for(task)
    model = build(name, spec)
    avail = all_conditions()
    b = len(avail)
    if model.has_teacher_phase:  # full-modality first phase
        model.train()
        full = make_batch(task, np.ones_like(avail), seed=1)
        out = model.pretrain_forward(full)
        loss = task_loss(task, out.logits, full.y) + out.aux_loss
        assert out.logits.shape == (b, spec.n_out) and torch.isfinite(loss)
        loss.backward()
        assert_finite_grads(model)
        model.zero_grad(set_to_none=True)

    model.train()
    batch = make_batch(task, avail, seed=2)
    out = model(batch)
    assert out.logits.shape == (b, spec.n_out)
    assert out.aux_loss.dim() == 0 and torch.isfinite(out.aux_loss)
    assert torch.isfinite(out.logits).all()
    loss = task_loss(task, out.logits, batch.y) + out.aux_loss
    loss.backward()
    assert_finite_grads(model)

    model.eval()
    with torch.no_grad():
        test = make_batch(task, avail, seed=3, with_full=False)
        out = model(test)
        assert out.logits.shape == (b, spec.n_out) and torch.isfinite(out.logits).all()
        assert out.hidden is None or torch.isfinite(out.hidden).all()
        # The complete inputs are training targets only: they must not change predictions.
        peek = make_batch(task, avail, seed=3, with_full=True)
        assert torch.equal(model(peek).logits, out.logits)


@pytest.mark.parametrize("name", list_models())
def test_rows_independent_in_eval(name):
    """A sample's prediction does not depend on the rest of its batch (no batch statistics)."""
    torch.manual_seed(0)
    model = build(name, spec_for("single_label"))
    model.train()
    model(make_batch("single_label", all_conditions()))  # leaves any pretraining phase
    model.eval()
    batch = make_batch("single_label", all_conditions(), with_full=False)
    with torch.no_grad():
        whole = model(batch).logits
        one = model(
            Batch(x=[x[:1] for x in batch.x], avail=batch.avail[:1], rows=batch.rows[:1])
        ).logits
    torch.testing.assert_close(one, whole[:1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "name", [n for n in BASELINES if model_class(n).has_teacher_phase]
)
def test_teacher_frozen_after_pretraining(name):
    torch.manual_seed(0)
    model = build(name, spec_for("single_label"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    batch = make_batch("single_label", all_conditions())
    out = model(batch)  # first imagination step: the teacher is snapshotted
    assert bool(model.teacher_ready)
    teacher = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("teacher")}
    assert teacher and all(
        not p.requires_grad for n, p in model.named_parameters() if n.startswith("teacher")
    )
    (task_loss("single_label", out.logits, batch.y) + out.aux_loss).backward()
    opt.step()
    model(batch)
    for k, v in model.state_dict().items():
        if k in teacher:
            assert torch.equal(v, teacher[k]), f"teacher weight {k} moved"


# ---------------------------------------------------------------- learning on tiny data


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """600 samples, 6 classes, 3 modalities whose means depend on the class."""
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, N_CLASSES, n)
    feats = {}
    for m, d in DIMS.items():
        means = rng.normal(0.0, 1.0, (N_CLASSES, d))  # class prototype per modality
        feats[m] = (means[y] + rng.normal(0.0, 1.0, (n, d))).astype(np.float32)
    man = manifest()
    table = build_table(
        man,
        np.array([f"s{i:04d}" for i in range(n)]),
        y,
        np.ones(n, bool),
        (np.arange(n) % 5).astype(np.int8),
        feats,
    )
    return write_dataset(tmp_path_factory.mktemp("data") / "tiny", man, table)


@pytest.mark.parametrize("name", [*BASELINES, "lr", "lr-knn"])
def test_learns_tiny_task(name, tiny):
    ds = tiny
    bank = FeatureBank(ds, np.arange(len(ds)))
    folds = ds.folds
    train, val, test = (np.flatnonzero(np.isin(folds, f)) for f in ([0, 1, 2], [3], [4]))
    conds = condition_matrix(ds.manifest)
    m = len(ds.modalities)
    spec = ModelSpec(tuple(ds.modalities), tuple(ds.manifest.dims), N_CLASSES, "single_label")
    torch.manual_seed(0)
    model = build(name, spec, TinyFold(features={m: np.asarray(ds.features[m]) for m in ds.modalities}))
    cfg = TrainConfig(epochs=12, batch_size=64, lr=2e-3, patience=12, seed=0)
    if model.has_teacher_phase:
        fit(model, ConditionBatches(bank, train, val, np.ones((1, m), bool)), score_accuracy, cfg,
            forward=lambda mdl, b: mdl.pretrain_forward(b))
    res = fit(model, ConditionBatches(bank, train, val, conds), score_accuracy, cfg)
    avail = conds[np.random.default_rng(1).integers(0, len(conds), len(test))]  # random conditions
    acc = score_accuracy(ds.y[test], predict(model, bank, test, avail))
    assert acc > 2.0 / N_CLASSES, f"{name}: test accuracy {acc:.3f} (val {res.best_score:.3f})"


def test_the_add_a_model_example_in_the_docs_runs(monkeypatch):
    """docs/extending.md's example model registers, builds and trains one step."""
    import re
    from pathlib import Path

    from pipeline.models import registry

    text = (Path(__file__).parent.parent / "docs" / "extending.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # keep the real registry clean
    namespace: dict = {}
    exec(compile(code, "docs/extending.md", "exec"), namespace)  # noqa: S102 - the docs are ours
    model = create_model("concat-mlp", spec_for("single_label"))
    batch = make_batch("single_label", all_conditions(), seed=0)
    out = model(batch)
    loss = task_loss("single_label", out.logits, batch.y) + out.aux_loss
    loss.backward()
    assert torch.isfinite(loss) and out.logits.shape == (len(batch.y), N_CLASSES)
