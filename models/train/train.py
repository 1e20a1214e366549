"""Train the small CAV-Net fusion model on runtime dumps, export ONNX, verify it, write goldens.

  python models/train/train.py --data DUMP [--data DUMP2 ...] --val VALDUMP \
      --out models/cavnet-small --epochs 30 --seed 0 [--modalities video,flow,audio]

Writes into --out:
  model.onnx        batch-1 graph: frames [1,16,3,64,64], flow [1,15,3,64,64], logmel [1,64,128]
                    (float32, already normalised) -> logits [1,6]; opset 17
  labels.txt        one label per line, in logit order
  norm.json         normalisation constants (image/flow mean+std per channel, mel_mean, mel_std)
  metrics.json      held-out accuracy, per-class accuracy, confusion matrix, params, command, seed, data
  config.json       model hyper-parameters
  stages/           the same model split for staged execution: video_encoder.onnx and
                    flow_encoder.onnx (one image -> one token, cacheable per frame) and head.onnx
                    (16 + 15 cached tokens + log-mel -> logits), checked to compose to model.onnx
  cavnet.pt         trained weights (state dict) for re-export or fine-tuning
  golden/           inputs_*.bin, logits.bin (raw little-endian f32), raw_*.bin (un-normalised
                    dump values) and golden.json describing them, for the Rust parity test
Deterministic for a given --seed (CPU, fixed thread count).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cavnet import MODALITIES, CavNet, CavNetConfig, count_params  # noqa: E402
from preprocess import normalize as normalize_frames  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
SHAPES = {
    "frames": ((16, 64, 64, 3), np.uint8),
    "flow": ((15, 3, 64, 64), np.uint8),
    "logmel": ((64, 128), np.float32),
}
FLOW_MEAN = [0.5, 0.5, 0.5]
FLOW_STD = [0.5, 0.5, 0.5]
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


# ----------------------------------------------------------------------------- data
class Dump:
    """One or more dump directories concatenated, kept as uint8 / float32 numpy arrays."""

    def __init__(self, dirs: list[str]):
        parts = {k: [] for k in (*SHAPES, "labels")}
        self.labels_names = None
        self.scene_seeds = []
        self.fake = False
        for d in dirs:
            d = Path(d)
            meta_path = d / "meta.json"
            if not meta_path.is_file():
                raise SystemExit(f"{meta_path}: missing (expected a dump directory)")
            meta = json.loads(meta_path.read_text())
            if "labels" not in meta:
                raise SystemExit(f"{meta_path}: no 'labels' key")
            if self.labels_names is None:
                self.labels_names = list(meta["labels"])
            elif list(meta["labels"]) != self.labels_names:
                raise SystemExit(f"{meta_path}: labels {meta['labels']} differ from {self.labels_names}")
            self.scene_seeds += list(meta.get("scene_seeds", []))
            self.fake |= bool(meta.get("fake", False))
            n = None
            for key, (shape, dtype) in SHAPES.items():
                arr = np.load(d / f"{key}.npy", mmap_mode="r")
                if arr.dtype != dtype or tuple(arr.shape[1:]) != shape:
                    raise SystemExit(
                        f"{d / (key + '.npy')}: expected {np.dtype(dtype).name} [N, {', '.join(map(str, shape))}],"
                        f" got {arr.dtype} {list(arr.shape)}"
                    )
                n = arr.shape[0] if n is None else n
                if arr.shape[0] != n:
                    raise SystemExit(f"{d}: {key}.npy has {arr.shape[0]} windows, expected {n}")
                parts[key].append(np.ascontiguousarray(arr))
            lab = np.load(d / "labels.npy")
            if lab.shape != (n,) or lab.min(initial=0) < 0 or lab.max(initial=0) >= len(self.labels_names):
                raise SystemExit(f"{d / 'labels.npy'}: expected int [{n}] in 0..{len(self.labels_names) - 1}")
            parts["labels"].append(lab.astype(np.int64))
        self.frames = np.concatenate(parts["frames"])
        self.flow = np.concatenate(parts["flow"])
        self.logmel = np.concatenate(parts["logmel"])
        self.labels = np.concatenate(parts["labels"])
        if not np.isfinite(self.logmel).all():
            raise SystemExit(f"{dirs}: logmel has non-finite values")

    def __len__(self) -> int:
        return len(self.labels)


def compute_norm(train: Dump) -> dict:
    """Normalisation constants from the training set (rounded, and the rounded values are used)."""
    idx = np.linspace(0, len(train) - 1, min(len(train), 512)).astype(np.int64)
    px = train.frames[idx].reshape(-1, 3).astype(np.float64) / 255.0
    mel = train.logmel.astype(np.float64)
    return {
        "image_mean": [round(float(x), 4) for x in px.mean(0)],
        "image_std": [round(float(x), 4) for x in px.std(0)],
        "flow_mean": FLOW_MEAN,
        "flow_std": FLOW_STD,
        "mel_mean": round(float(mel.mean()), 4),
        "mel_std": round(float(mel.std()), 4),
        "image_layout": "frames [1,16,3,64,64] = (rgb_u8/255 - image_mean[c]) / image_std[c]",
        "flow_layout": "flow [1,15,3,64,64] = (mov_u8/255 - flow_mean[c]) / flow_std[c]",
        "mel_layout": "logmel [1,64,128] = (logmel - mel_mean) / mel_std",
    }


class Normaliser:
    def __init__(self, norm: dict):
        self.im_mean = norm["image_mean"]
        self.im_std = norm["image_std"]
        self.fl_mean = torch.tensor(norm["flow_mean"]).view(1, 1, 3, 1, 1)
        self.fl_std = torch.tensor(norm["flow_std"]).view(1, 1, 3, 1, 1)
        self.mel_mean = float(norm["mel_mean"])
        self.mel_std = float(norm["mel_std"])

    def frames(self, u8: np.ndarray) -> torch.Tensor:
        # [N, T, H, W, 3] uint8 already at the model size -> [N, T, 3, H, W] (preprocess.py)
        return normalize_frames(u8, self.im_mean, self.im_std)

    def flow(self, u8: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(u8)).float() / 255.0
        return (x - self.fl_mean) / self.fl_std

    def logmel(self, mel: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(np.ascontiguousarray(mel)).float() - self.mel_mean) / self.mel_std

    def batch(self, ds: Dump, idx: np.ndarray):
        return self.frames(ds.frames[idx]), self.flow(ds.flow[idx]), self.logmel(ds.logmel[idx])


def shift2d(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate [..., H, W] by (dx, dy) pixels, filling with the replicated edge (no wrap-around)."""
    h, w = x.shape[-2:]
    lead = x.shape[:-2]
    p = max(abs(dx), abs(dy))
    if p == 0:
        return x
    xp = F.pad(x.reshape(-1, 1, h, w), (p, p, p, p), mode="replicate")
    out = xp[:, :, p - dy : p - dy + h, p - dx : p - dx + w]
    return out.reshape(*lead, h, w)


def augment(frames, flow, logmel, gen: torch.Generator, mel_std: float, modality_dropout: float):
    """Label-preserving augmentation on normalised tensors. No flips: they swap slide_left/right.

    * same small translation (<= 4 px) for all frames and flow images of a window
    * brightness/contrast jitter on RGB (per window, same for all frames)
    * audio: gain (additive in log-mel), +-2 mel-frame time shift, one narrow frequency mask
    * optional modality dropout (zero one modality's input) for robustness to a missing sensor
    """
    b = frames.shape[0]
    frames = frames.clone()
    flow = flow.clone()
    logmel = logmel.clone()
    r = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    ri = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=gen))  # noqa: E731
    for i in range(b):
        dx, dy = ri(-4, 4), ri(-4, 4)
        frames[i] = shift2d(frames[i], dx, dy)
        flow[i] = shift2d(flow[i], dx, dy)
        ts = ri(-2, 2)
        if ts:
            logmel[i] = torch.roll(logmel[i], ts, 0)
            if ts > 0:
                logmel[i, :ts] = logmel[i, ts]
            else:
                logmel[i, ts:] = logmel[i, ts - 1]
        if float(r(1)) < 0.5:
            w = ri(1, 8)
            f0 = ri(0, logmel.shape[2] - w)
            logmel[i, :, f0 : f0 + w] = 0.0
    # contrast around the window mean, brightness in normalised units (~ +-0.1 of full range)
    contrast = (0.8 + 0.4 * r(b)).view(b, 1, 1, 1, 1)
    bright = ((r(b) - 0.5) * 0.8).view(b, 1, 1, 1, 1)
    mean = frames.mean(dim=(1, 3, 4), keepdim=True)
    frames = (frames - mean) * contrast + mean + bright
    gain = ((r(b) - 0.5) * 2.0).view(b, 1, 1)  # +-1 in natural-log power (~ +-4.3 dB)
    logmel = logmel + gain / mel_std
    if modality_dropout > 0:
        drop = r(b, 3) < modality_dropout
        keep_one = drop.all(dim=1)
        drop[keep_one] = False
        frames = frames * (~drop[:, 0]).float().view(b, 1, 1, 1, 1)
        flow = flow * (~drop[:, 1]).float().view(b, 1, 1, 1, 1)
        logmel = logmel * (~drop[:, 2]).float().view(b, 1, 1)
    return frames, flow, logmel


# ----------------------------------------------------------------------------- train / eval
@torch.no_grad()
def predict(model, ds: Dump, norm: Normaliser, bs: int = 64) -> np.ndarray:
    model.eval()
    out = []
    for s in range(0, len(ds), bs):
        idx = np.arange(s, min(s + bs, len(ds)))
        out.append(model(*norm.batch(ds, idx)).numpy())
    return np.concatenate(out)


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


# ----------------------------------------------------------------------------- export
def export_onnx(model, cfg: CavNetConfig, path: Path) -> None:
    model.eval()
    dummy = (
        torch.zeros(1, cfg.num_frames, 3, cfg.image_size, cfg.image_size),
        torch.zeros(1, cfg.num_flow, 3, cfg.image_size, cfg.image_size),
        torch.zeros(1, cfg.mel_frames, cfg.mel_bins),
    )
    torch.onnx.export(
        model,
        dummy,
        str(path),
        input_names=["frames", "flow", "logmel"],
        output_names=["logits"],
        opset_version=17,
        do_constant_folding=True,
        dynamo=False,
    )


class _FrameStage(torch.nn.Module):
    """One RGB frame or one flow image -> its token (what a runtime caches per new frame)."""

    def __init__(self, model: CavNet, which: str):
        super().__init__()
        self.model = model
        self.video = which == "video"
        self.zero = not model.use[which]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.zero:
            image = image * 0.0
        return self.model.video_enc(image) if self.video else self.model.flow_image_token(image)


class _HeadStage(torch.nn.Module):
    """Cached per-frame tokens + the window's log-mel -> logits (runs every hop)."""

    def __init__(self, model: CavNet):
        super().__init__()
        self.model = model

    def forward(self, video_tokens, flow_tokens, logmel):
        return self.model.fuse(video_tokens, flow_tokens, logmel)


def export_stages(model: CavNet, cfg: CavNetConfig, out: Path, samples: list[tuple]) -> dict:
    """Staged graphs (per-frame encoders + head); checks with onnxruntime that they compose to the
    single-graph model's logits within ORT_TOLERANCE."""
    import onnxruntime as ort

    sdir = out / "stages"
    sdir.mkdir(parents=True, exist_ok=True)
    img = torch.zeros(1, 3, cfg.image_size, cfg.image_size)
    for which in ("video", "flow"):
        torch.onnx.export(
            _FrameStage(model, which).eval(), (img,), str(sdir / f"{which}_encoder.onnx"),
            input_names=["image"], output_names=["token"], opset_version=17, dynamo=False,
        )
    head_in = (
        torch.zeros(1, cfg.num_frames, cfg.dim),
        torch.zeros(1, cfg.num_flow, cfg.dim),
        torch.zeros(1, cfg.mel_frames, cfg.mel_bins),
    )
    torch.onnx.export(
        _HeadStage(model).eval(), head_in, str(sdir / "head.onnx"),
        input_names=["video_tokens", "flow_tokens", "logmel"], output_names=["logits"],
        opset_version=17, dynamo=False,
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = {n: ort.InferenceSession(str(sdir / f"{n}.onnx"), so, providers=["CPUExecutionProvider"])
            for n in ("video_encoder", "flow_encoder", "head")}
    max_diff = 0.0
    for f, fl, m in samples:
        with torch.no_grad():
            ref = model(f, fl, m).numpy()
        vt = np.stack([sess["video_encoder"].run(None, {"image": f[:, t].numpy()})[0] for t in range(f.shape[1])], 1)
        ft = np.stack([sess["flow_encoder"].run(None, {"image": fl[:, t].numpy()})[0] for t in range(fl.shape[1])], 1)
        got = sess["head"].run(None, {"video_tokens": vt, "flow_tokens": ft, "logmel": m.numpy()})[0]
        max_diff = max(max_diff, float(np.abs(ref - got).max()))
    if not max_diff <= ORT_TOLERANCE:
        raise SystemExit(f"{sdir}: staged graphs differ from the model by {max_diff:.3g} > {ORT_TOLERANCE}")
    feed = {"video_tokens": vt, "flow_tokens": ft, "logmel": samples[0][2].numpy()}
    times = {}
    for name, fd in (("video_encoder", {"image": samples[0][0][:, 0].numpy()}), ("head", feed)):
        for _ in range(5):
            sess[name].run(None, fd)
        ts = []
        for _ in range(50):
            t0 = time.perf_counter()
            sess[name].run(None, fd)
            ts.append((time.perf_counter() - t0) * 1e3)
        times[name] = round(float(np.median(ts)), 3)
    return {
        "files": {
            "video_encoder": "stages/video_encoder.onnx  image [1,3,64,64] -> token [1,64] (one RGB frame)",
            "flow_encoder": "stages/flow_encoder.onnx  image [1,3,64,64] -> token [1,64] (one MOV flow image)",
            "head": "stages/head.onnx  video_tokens [1,16,64], flow_tokens [1,15,64], logmel [1,64,128] -> logits",
        },
        "max_abs_diff_vs_torch": max_diff,
        "ort_ms_median_1_thread": times,
    }


def onnx_ops(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    ops: dict[str, int] = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return dict(sorted(ops.items()))


def verify_and_time(model, path: Path, samples: list[tuple], threads: int = 1, runs: int = 50) -> dict:
    """Run the ONNX with onnxruntime (CPU, `threads` threads) against torch; time one inference."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    model.eval()
    max_diff = 0.0
    for f, fl, m in samples:
        with torch.no_grad():
            ref = model(f, fl, m).numpy()
        got = sess.run(["logits"], {"frames": f.numpy(), "flow": fl.numpy(), "logmel": m.numpy()})[0]
        max_diff = max(max_diff, float(np.abs(ref - got).max()))
    if not max_diff <= ORT_TOLERANCE:
        raise SystemExit(f"{path}: onnxruntime differs from torch by {max_diff:.3g} > {ORT_TOLERANCE}")
    feed = {"frames": samples[0][0].numpy(), "flow": samples[0][1].numpy(), "logmel": samples[0][2].numpy()}
    times = ort_times_ms(sess, feed, runs)
    return {
        "max_abs_diff_vs_torch": max_diff,
        "samples_checked": len(samples),
        "ort_threads": threads,
        "ort_ms_median": round(float(np.median(times)), 3),
        "ort_ms_min": round(float(np.min(times)), 3),
    }


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


def write_golden(out: Path, model, ds: Dump, norm: Normaliser, logits_val: np.ndarray) -> dict:
    """One held-out window (the first correctly classified non-background one, else the first)."""
    pred = logits_val.argmax(1)
    ok = np.nonzero((pred == ds.labels) & (ds.labels != 0))[0]
    i = int(ok[0]) if len(ok) else 0
    f, fl, m = norm.batch(ds, np.array([i]))
    model.eval()
    with torch.no_grad():
        logits = model(f, fl, m).numpy()
    gdir = out / "golden"
    gdir.mkdir(parents=True, exist_ok=True)
    entries = {}

    def dump(name: str, arr: np.ndarray, dtype: str) -> dict:
        arr = np.ascontiguousarray(arr).astype(dtype)
        arr.tofile(gdir / name)
        return {"file": name, "shape": list(arr.shape), "dtype": "f32" if dtype == "<f4" else "u8"}

    entries["inputs"] = {
        "frames": dump("inputs_frames.bin", f.numpy(), "<f4"),
        "flow": dump("inputs_flow.bin", fl.numpy(), "<f4"),
        "logmel": dump("inputs_logmel.bin", m.numpy(), "<f4"),
    }
    entries["outputs"] = {"logits": dump("logits.bin", logits, "<f4")}
    entries["raw"] = {
        "frames": dump("raw_frames.bin", ds.frames[i], "u1"),  # [16,64,64,3] RGB u8 (HWC)
        "flow": dump("raw_flow.bin", ds.flow[i], "u1"),  # [15,3,64,64] MOV u8
        "logmel": dump("raw_logmel.bin", ds.logmel[i], "<f4"),  # [64,128] before normalisation
    }
    entries["window_index"] = i
    entries["label"] = int(ds.labels[i])
    entries["predicted"] = int(logits.argmax())
    entries["tolerance"] = ORT_TOLERANCE
    entries["note"] = "raw little-endian arrays, C order; inputs_* are the normalised model inputs"
    write_json(gdir / "golden.json", entries)
    return entries


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", required=True, help="training dump dir (repeatable)")
    ap.add_argument("--val", action="append", required=True, help="held-out dump dir (repeatable)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--label-smoothing", type=float, default=0.05)
    ap.add_argument("--modalities", default="video,flow,audio", help="subset; missing ones are zeroed")
    ap.add_argument("--modality-dropout", type=float, default=0.0, help="p of zeroing each modality per window")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--self-depth", type=int, default=1)
    ap.add_argument("--cross-depth", type=int, default=1)
    args = ap.parse_args()

    t_start = time.time()
    deterministic(args.seed, args.threads)

    mods = [m.strip() for m in args.modalities.split(",") if m.strip()]
    if not mods or any(m not in MODALITIES for m in mods):
        raise SystemExit(f"--modalities: expected a subset of {','.join(MODALITIES)}, got {args.modalities!r}")

    train, val = Dump(args.data), Dump(args.val)
    if train.labels_names != val.labels_names:
        raise SystemExit(f"labels differ: train {train.labels_names} vs val {val.labels_names}")
    names = train.labels_names
    k = len(names)
    overlap = set(train.scene_seeds) & set(val.scene_seeds)
    print(f"train {len(train)} windows from {args.data}; val {len(val)} from {args.val}")
    print("train class counts", np.bincount(train.labels, minlength=k).tolist())
    print("val   class counts", np.bincount(val.labels, minlength=k).tolist())
    if overlap:
        print(f"WARNING: {len(overlap)} scene seeds appear in both train and val")

    norm_d = compute_norm(train)
    norm = Normaliser(norm_d)
    print("norm", {k_: v for k_, v in norm_d.items() if not k_.endswith("layout")})

    cfg = CavNetConfig(
        num_classes=k, dim=args.dim, self_depth=args.self_depth, cross_depth=args.cross_depth, modalities=mods
    )
    model = CavNet(cfg)
    n_params = count_params(model)
    print(f"model params {n_params}  modalities {mods}")

    opt, sched, sample_w, gen = training_setup(model, args, train.labels, k)
    history = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        model.train()
        order = torch.multinomial(sample_w, len(train), replacement=True, generator=gen).numpy()
        correct, seen, loss_sum = 0, 0, 0.0
        for s in range(0, len(order), args.batch_size):
            idx = np.sort(order[s : s + args.batch_size])
            f, fl, m = norm.batch(train, idx)
            if not args.no_augment:
                f, fl, m = augment(f, fl, m, gen, norm.mel_std, args.modality_dropout)
            y = torch.from_numpy(train.labels[idx])
            logits = model(f, fl, m)
            loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
        val_logits = predict(model, val, norm)
        val_acc = float((val_logits.argmax(1) == val.labels).mean())
        rec = {
            "epoch": epoch,
            "loss": round(loss_sum / seen, 4),
            "train_acc": round(correct / seen, 4),
            "val_acc": round(val_acc, 4),
            "seconds": round(time.time() - t0, 1),
        }
        history.append(rec)
        print(
            f"epoch {epoch:3d}  loss {rec['loss']:.4f}  train acc {rec['train_acc']:.3f}"
            f"  val acc {rec['val_acc']:.3f}  ({rec['seconds']} s)",
            flush=True,
        )
    train_seconds = time.time() - t_start

    # held-out report (final weights; no checkpoint picked on val)
    val_logits = predict(model, val, norm)
    pred = val_logits.argmax(1)
    cm = confusion(val.labels, pred, k)
    per_class = {names[i]: round(float(cm[i, i] / max(cm[i].sum(), 1)), 4) for i in range(k)}
    val_acc = float((pred == val.labels).mean())
    print(f"held-out accuracy {val_acc:.4f} on {len(val)} windows")
    print_confusion(cm, names)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "cavnet.pt")
    write_json(out / "config.json", cfg.to_dict())
    (out / "labels.txt").write_text("".join(n + "\n" for n in names))
    write_json(out / "norm.json", norm_d)

    onnx_path = out / "model.onnx"
    export_onnx(model, cfg, onnx_path)
    ops = onnx_ops(onnx_path)
    check_idx = np.linspace(0, len(val) - 1, min(len(val), 8)).astype(np.int64)
    samples = [norm.batch(val, np.array([i])) for i in check_idx]
    ort_report = verify_and_time(model, onnx_path, samples, threads=1)
    size = onnx_path.stat().st_size
    print(f"exported {onnx_path} ({size / 1e6:.2f} MB), ops {ops}")
    print(
        f"onnxruntime == torch on {ort_report['samples_checked']} windows, max |diff| "
        f"{ort_report['max_abs_diff_vs_torch']:.2e}; 1 thread: median {ort_report['ort_ms_median']} ms"
    )
    stage_report = export_stages(model, cfg, out, samples[:4])
    print(
        f"staged graphs == model, max |diff| {stage_report['max_abs_diff_vs_torch']:.2e}; "
        f"1 thread: encoder/frame {stage_report['ort_ms_median_1_thread']['video_encoder']} ms, "
        f"head {stage_report['ort_ms_median_1_thread']['head']} ms"
    )
    golden = write_golden(out, model, val, norm, val_logits)
    print(f"golden window {golden['window_index']} label {names[golden['label']]} -> {out / 'golden'}")

    cmd = ["python", "models/train/train.py"]
    for d in args.data:
        cmd += ["--data", rel(d)]
    for d in args.val:
        cmd += ["--val", rel(d)]
    cmd += ["--out", rel(args.out), "--epochs", str(args.epochs), "--seed", str(args.seed)]
    defaults = ap.parse_args(["--data", "x", "--val", "x", "--out", "x"])
    for key in ("batch_size", "lr", "weight_decay", "label_smoothing", "modalities", "modality_dropout",
                "no_augment", "threads", "dim", "self_depth", "cross_depth"):
        v = getattr(args, key)
        if v != getattr(defaults, key):
            flag = "--" + key.replace("_", "-")
            cmd += [flag] if v is True else [flag, str(v)]
    metrics = {
        "val_accuracy": round(val_acc, 4),
        "val_windows": len(val),
        "per_class_accuracy": per_class,
        "confusion_matrix": {"rows_true_cols_pred": names, "matrix": cm.tolist()},
        "params": n_params,
        "modalities": mods,
        "onnx_bytes": size,
        "onnx_ops": ops,
        "onnxruntime": ort_report,
        "stages": stage_report,
        "training_command": " ".join(cmd),
        "seed": args.seed,
        "epochs": args.epochs,
        "train_data": [rel(d) for d in args.data],
        "val_data": [rel(d) for d in args.val],
        "train_windows": len(train),
        "train_seconds": round(train_seconds, 1),
        "torch_threads": args.threads,
        "torch_version": torch.__version__,
        "history": history,
        "fake_data": train.fake or val.fake,
    }
    write_json(out / "metrics.json", metrics)
    print(f"wrote {out} in {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
