"""Helpers shared by the trainers (basic.py, compositional.py): seeding, optimiser and schedule,
confusion matrices, ONNX checks and timing, JSON and path formatting of the outputs."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import torch


def _repo_root() -> Path:
    """The repository root when this package is the one in models/train/ (editable install or
    run from the checkout), else the current directory."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "models" / "train" / "pyproject.toml").is_file() else Path.cwd().resolve()


REPO_ROOT = _repo_root()
ORT_TOLERANCE = 1e-4


def write_json(path: Path, obj) -> None:
    """Indented JSON with short number lists (shapes, matrix rows) kept on one line."""
    text = json.dumps(obj, indent=1)
    text = re.sub(r"\[\s+([-+\deE.,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    path.write_text(text + "\n")


def rel(p: str | Path) -> str:
    """Path relative to the repository root when inside it (no machine paths in outputs)."""
    p = Path(p).resolve()
    try:
        return str(p.relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def print_confusion(cm: np.ndarray, names: list[str]) -> None:
    w = max(len(n) for n in names)
    print("confusion matrix (rows = true, cols = predicted):")
    print(" " * (w + 2) + " ".join(f"{i:>5d}" for i in range(len(names))))
    for i, n in enumerate(names):
        acc = cm[i, i] / max(cm[i].sum(), 1)
        print(f"{i} {n:<{w}} " + " ".join(f"{v:>5d}" for v in cm[i]) + f"   acc {acc:.3f}")


def deterministic(seed: int, threads: int) -> None:
    """Seeds torch and numpy, fixes the thread count and asks torch for deterministic
    kernels: the same seed and threads give byte-identical weights."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)


def training_setup(model, args, labels: np.ndarray, k: int):
    """AdamW (no decay on norms/biases), 1-epoch warm-up then cosine, class-balanced sampling
    weights (each window drawn with p ~ 1 / count of its class) and the sampling generator."""
    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr)
    steps_per_epoch = math.ceil(len(labels) / args.batch_size)
    total = steps_per_epoch * args.epochs
    warm = min(steps_per_epoch, total // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(total - warm, 1)))
    )
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sample_w = torch.from_numpy(1.0 / counts[labels])
    gen = torch.Generator().manual_seed(args.seed)
    return opt, sched, sample_w, gen


def param_groups(model, wd: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and not name.startswith("pos_") else no_decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def onnx_ops(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    ops: dict[str, int] = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return dict(sorted(ops.items()))


def ort_times_ms(sess, feed: dict, runs: int) -> list[float]:
    """Milliseconds of `runs` onnxruntime calls on `feed`, after 5 warm-up calls."""
    for _ in range(5):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


