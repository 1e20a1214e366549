"""The basic task's closed-set classifier, cavnet-small (cavnet.py): training, held-out report,
ONNX export (single graph + staged graphs) with onnxruntime checks, goldens and metrics.
Run through the trainer: `python -m avaction_train.train --arch cavnet-small ...` (train.py).

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

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .cavnet import MODALITIES, CavNet, CavNetConfig, count_params
from .common import (
    ORT_TOLERANCE,
    confusion,
    deterministic,
    onnx_ops,
    ort_times_ms,
    print_confusion,
    rel,
    training_setup,
    write_json,
)
from .data import Dump, Normaliser, augment, compute_norm


@torch.no_grad()
def predict(model, ds: Dump, norm: Normaliser, bs: int = 64) -> np.ndarray:
    model.eval()
    out = []
    for s in range(0, len(ds), bs):
        idx = np.arange(s, min(s + bs, len(ds)))
        out.append(model(*norm.batch(ds, idx)).numpy())
    return np.concatenate(out)



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


# ----------------------------------------------------------------------------- run
def run(args, command: str) -> None:
    """Trains --arch cavnet-small with the options of train.py (all filled in); `command` is the
    training command recorded in metrics.json."""
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
        num_classes=k, dim=args.dim, self_depth=args.depth, cross_depth=args.cross_depth, modalities=mods
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
        "training_command": command,
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

