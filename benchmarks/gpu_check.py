"""GPU checks (FAISS GPU vs CPU, a CUDA demo fold, retrieval at scale), run by benchmarks/gpu_check.sh (and tests/test_gpu.py).

- `neighbours`: the FAISS index on `device` returns the CPU index's neighbours under the
  leakage filter (candidates = a fold's train + pool rows only, the query excluded by id);
- `train`: one RAMER step and a short fit on `device`, finite loss, weights moved.
Writes a JSON line per check to stdout; exits 1 when a check fails.

    python benchmarks/gpu_check.py --device cuda      # on a GPU machine
    python benchmarks/gpu_check.py --device cpu       # the dry run: CPU against CPU
    python benchmarks/gpu_check.py --device cpu --rows 3000 --queries 64 --steps 3   # seconds (the tests')
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def neighbours(device: str, n: int = 20_000, d: int = 256, b: int = 512, k: int = 10, seed: int = 0) -> dict:
    """Same top-k ids on `device` as on CPU (ties within 1e-5 in score may swap)."""
    from pipeline.data.scales import candidate_mask
    from pipeline.data.splits import assign_folds, make_split
    from pipeline.retrieval.faiss_index import FastIndex

    rng = np.random.default_rng(seed)
    n_lab = n // 4
    labeled = np.arange(n) < n_lab
    y = np.where(labeled, rng.integers(0, 6, n), -1)
    split = make_split(y, labeled, assign_folds(y, labeled, 5, seed), 0, 0, seed)
    samples = np.array([f"s{i}" for i in range(n)])
    cand = np.flatnonzero(candidate_mask(samples, labeled, split.train, "turbo"))  # train + pool rows
    x = rng.standard_normal((n, d)).astype(np.float32)
    queries = np.concatenate([split.train[: b // 2], split.test[: b // 2]])  # train rows must not find themselves
    out = {}
    for dev in ("cpu", device):
        index = FastIndex("cosine", dev).fit(x[cand], ids=cand.astype(np.int64))
        out[dev] = index.search(x[queries], k, exclude_ids=queries)  # (scores, ids) (B, k)
    (s_cpu, i_cpu), (s_dev, i_dev) = out["cpu"], out[device]
    forbidden = np.zeros(n, bool)
    forbidden[np.concatenate([split.val, split.test])] = True
    same = i_cpu == i_dev
    tie = np.abs(s_cpu - s_dev) < 1e-5  # a swap between near-equal scores is not a disagreement
    return {"check": "neighbours", "device": device, "queries": len(queries), "k": k,
            "ids_equal_share": float(same.mean()), "max_score_diff": float(np.abs(s_cpu - s_dev).max()),
            "leak": bool(forbidden[i_dev[i_dev >= 0]].any() or (i_dev == queries[:, None]).any()),
            "ok": bool((same | tie).all() and not forbidden[i_dev[i_dev >= 0]].any()
                       and not (i_dev == queries[:, None]).any())}


def train(device: str, steps: int = 20) -> dict:
    """A RAMER model (fine-tuned encoders, live retrieval) trains on `device`."""
    import torch

    from pipeline.models.base import Batch, ModelSpec
    from pipeline.models.registry import create_model
    from pipeline.retrieval.fill import RetrievalFiller
    from pipeline.retrieval.retriever import ModalityRetriever
    from pipeline.training.trainer import TrainConfig, make_optimizer, seed_everything

    seed_everything(0)
    spec = ModelSpec(("a", "v", "l"), (32, 24, 40), 6, "single_label")
    model = create_model("ramer", spec, d_model=32, hidden=16, heads=4, ff=64, finetune_encoders=True).to(device)
    n = 256
    rng = np.random.default_rng(0)
    db = {m: rng.standard_normal((n, 16)).astype(np.float32) for m in spec.modalities}
    present = {m: np.ones(n, bool) for m in spec.modalities}
    retr = ModalityRetriever(k=4, device=device).fit(db, present, np.ones(n, bool))
    model.filler = RetrievalFiller(retr, list(spec.modalities), db, present, k=4)
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], TrainConfig(weight_decay=0.0), 1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    model.train()
    for _ in range(steps):
        rows = torch.as_tensor(rng.choice(n, 32, replace=False))
        avail = torch.as_tensor(rng.random((32, 3)) < 0.5, device=device)
        avail[:, 0] = True
        xs = [torch.randn(32, d, device=device) * avail[:, i : i + 1] for i, d in enumerate(spec.dims)]
        batch = Batch(x=xs, avail=avail, rows=rows, y=torch.as_tensor(rng.integers(0, 6, 32), device=device))
        loss = torch.nn.functional.cross_entropy(model(batch).logits, batch.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    moved = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    on = next(model.parameters()).device.type
    return {"check": "train", "device": device, "param_device": on, "first_loss": losses[0],
            "last_loss": losses[-1], "ok": bool(np.isfinite(losses).all() and moved and on == device.split(":")[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rows", type=int, default=20_000, help="database rows of the neighbour check")
    ap.add_argument("--queries", type=int, default=512, help="queries of the neighbour check")
    ap.add_argument("--steps", type=int, default=20, help="training steps of the RAMER check")
    args = ap.parse_args()
    results = [neighbours(args.device, n=args.rows, b=args.queries), train(args.device, steps=args.steps)]
    for r in results:
        print(json.dumps(r))
    sys.exit(0 if all(r["ok"] for r in results) else 1)


if __name__ == "__main__":
    main()
