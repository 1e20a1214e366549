"""Real architectures through the exporter, measured: does tract load and run them, how close
is it to PyTorch and onnxruntime, and how fast is it on this CPU.

    python -m avaction_train.arch_table --avaction target/debug/avaction --out target/arch
        [--only NAME,...] [--quick] [--repeat 3]

Weights are RANDOM (torchvision `weights=None`: nothing is downloaded); the point is operator
coverage and speed, not accuracy. Every model becomes a bundle through `export.export_bundle`
(ONNX opset 17 with the legacy exporter, goldens, onnxruntime checks), then:

  * onnxruntime: ms per window, median of a few runs, 2 threads (the issue's number) and 1 thread
    (to compare with tract, which `avaction verify` runs on one thread);
  * tract through the runtime: `avaction verify <bundle> --json --repeat N`, whose checks give the
    max diff of tract against the PyTorch goldens and the mean ms per run (single graph; for the
    staged models also "staged, all tokens new": every encoder on every frame + the head, i.e. a
    whole window computed from scratch). A graph that tract cannot load makes verify exit 1 with
    the error on stderr: its first line is recorded;
  * tract from Python (the `tract` wheel, the same tract 0.23.9 as the runtime's Cargo.lock, one
    thread; optional: `pip install tract==0.23.9`): tract's output against onnxruntime's on the
    golden inputs, the staged encoder and head timed apart (per hop = head + new frames per hop x
    encoder), a profile of graphs much slower than onnxruntime, and a check that each minimal
    reproduction really fails. Without the wheel these columns are empty.

Failures are results: an exporter (torch.onnx) error, an onnxruntime error on the exported graph,
a graph tract cannot load. For a tract failure a minimal ONNX (the failing node alone, its constant
inputs kept) goes to OUT/repro/<model>.onnx, plus the smallest torch code producing the operator
(PATTERNS) as OUT/repro/<model>-pattern.onnx, with an upstream-style description in table.md. A
graph tract runs more than 3x slower than onnxruntime (1 thread each) is profiled; when one
operator takes more than half of tract's time, its pattern (OUT/repro/<model>-<op>-slow.onnx) and,
where the slowness needs the surrounding graph, the slow node with the nodes around it
(...-slow-in-context.onnx) are written and timed in both runtimes.

The architectures (ARCHS below):
  clip models (one graph, NCTHW clips, stride 2 = 12.5 frames/s from 25 fps capture, a window every
    8 captured frames; classifier replaced by a 10-class linear layer):
    r3d_18, mc3_18, r2plus1d_18   8 x 112 x 112 (native 16 x 112: 8 frames keep the run short)
    s3d                           16 x 224 (its final 2x7x7 average pool needs >= 14 frames at 224)
    mvit_v2_s                     16 x 224 (its positional embeddings fix the size), as
                                  torchvision writes it (the rewrites that make it run are not
                                  kept: see the comment above ARCHS' Arch)
    swin3d_t                      16 x 224
  per-frame image encoders (staged: the torchvision backbone with its classifier replaced by a
    linear layer to a 256-d token, per frame; head: temporal position + one pre-LN transformer
    block + LayerNorm + linear; NTCHW, 8 frames of 224 x 224, stride 2, a window every 4 captured
    frames, so 2 new frames per hop):
    mobilenet_v3_small, efficientnet_b0, resnet18, vit_b_16
  AST-style audio transformers on 128-bin Kaldi log-mel (AST's fbank: hanning, htk_compat, 16 kHz;
    AST's normalisation mean -4.27, std 2 x 4.57), 1.96 s = 196 mel frames as [1, 1, 196, 128],
    16 x 16 patches with AST's stride 10 (19 x 12 = 228 patches) + a CLS token, learned positions,
    nn.TransformerEncoder (pre-LN, GELU), LayerNorm, linear:
    ast (AST's size: d 768, 12 layers, 12 heads), ast_tiny (d 192, 12 layers, 3 heads).
    The runtime needs an image input (the video drives the window: runtime/model/manifest.rs), so
    these models also take a tiny video input, 2 frames of 16 x 16 (stride 8, a window every 8
    captured frames = 0.32 s), whose mean colour goes through a 3 -> 10 linear layer added to the
    logits.
  BatchNorm running statistics are calibrated on two random batches (train mode, cumulative
  average) before export: with the initial statistics (mean 0, var 1) eval-mode BatchNorm is the
  identity and randomly initialised mobilenet / efficientnet outputs shrink to 1e-9 .. 1e-14,
  which would make every max diff meaningless.

Writes OUT/bundles/<model>/ (the bundles), OUT/results.json (everything measured; with --only the
other models' earlier results are kept) and OUT/table.md (the table + notes), and prints progress.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
import types
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import export
from .blocks import Block, TemporalPosition
from .common import REPO_ROOT, rel
from .export import Audio, Preprocessing

CLASSES = [f"class_{i}" for i in range(10)]
TOKEN_DIM = 256  # per-frame encoders' token size
T0 = time.perf_counter()


def log(name: str, msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {name}: {msg}", flush=True)


# ----------------------------------------------------------------------------- models
def calibrate_batchnorm(model: nn.Module, shape: list[int], batches: int = 2, seed: int = 0) -> nn.Module:
    """Running statistics of every BatchNorm from `batches` random N(0, 1) batches of `shape`
    (train mode, cumulative average), then eval mode. Untrained statistics (0, 1) make eval-mode
    BatchNorm the identity and deep random nets collapse or blow up."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bns:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        g = torch.Generator().manual_seed(seed)
        model.train()
        with torch.no_grad():
            for _ in range(batches):
                model(torch.randn(shape, generator=g))
    return model.eval()


def kinetics_norm(weights) -> tuple[tuple, tuple]:
    """mean / std of a torchvision weights enum's transforms (builds the transform; downloads nothing)."""
    t = weights.transforms()
    return tuple(t.mean), tuple(t.std)


def clip_prep(frames: int, size: int, weights) -> Preprocessing:
    mean, std = kinetics_norm(weights)
    return Preprocessing(frames=frames, image_size=(size, size), fps=25, stride=2, hop_frames=8,
                         image_mean=mean, image_std=std, video_layout="NCTHW")


def clip_model(name: str, frames: int, size: int) -> dict:
    """A torchvision video classifier with a 10-class head: export_bundle keyword arguments."""
    import torchvision.models.video as tvv

    torch.manual_seed(0)
    m = getattr(tvv, name)(weights=None)
    if hasattr(m, "fc"):  # r3d_18, mc3_18, r2plus1d_18
        m.fc = nn.Linear(m.fc.in_features, len(CLASSES))
    elif name == "s3d":
        m.classifier[-1] = nn.Conv3d(m.classifier[-1].in_channels, len(CLASSES), 1)
    elif name == "mvit_v2_s":
        m.head[-1] = nn.Linear(m.head[-1].in_features, len(CLASSES))
    else:  # swin3d_t
        m.head = nn.Linear(m.head.in_features, len(CLASSES))
    calibrate_batchnorm(m, [2, 3, frames, size, size])
    weights = {"r3d_18": tvv.R3D_18_Weights, "mc3_18": tvv.MC3_18_Weights, "r2plus1d_18": tvv.R2Plus1D_18_Weights,
               "s3d": tvv.S3D_Weights, "mvit_v2_s": tvv.MViT_V2_S_Weights, "swin3d_t": tvv.Swin3D_T_Weights}[name]
    return dict(model=m, preprocessing=clip_prep(frames, size, weights.KINETICS400_V1))


class TemporalHead(nn.Module):
    """Per-frame tokens [1, T, d] -> logits: position embedding, one pre-LN transformer block,
    temporal mean, LayerNorm, linear (the byo_model.py head, video only)."""

    def __init__(self, dim: int, frames: int, classes: int, heads: int = 4):
        super().__init__()
        self.pos, self.block = TemporalPosition(frames, dim), Block(dim, heads, 2, 0.0)
        self.norm, self.out = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, video_tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.block(self.pos(video_tokens)).mean(1)))


def frame_model(name: str) -> dict:
    """A torchvision image backbone as the staged per-frame encoder (classifier -> linear to a
    TOKEN_DIM token) + TemporalHead; the single graph is the exporter's composition."""
    import torchvision.models as tvm

    torch.manual_seed(0)
    m = getattr(tvm, name)(weights=None)
    if name == "resnet18":
        m.fc = nn.Linear(m.fc.in_features, TOKEN_DIM)
    elif name == "vit_b_16":
        m.heads = nn.Linear(m.hidden_dim, TOKEN_DIM)
    else:  # mobilenet_v3_small, efficientnet_b0: the classifier takes the pooled features
        width = next(l for l in m.classifier if isinstance(l, nn.Linear)).in_features
        m.classifier = nn.Linear(width, TOKEN_DIM)
    calibrate_batchnorm(m, [4, 3, 224, 224])
    frames = 8
    prep = Preprocessing(frames=frames, image_size=(224, 224), fps=25, stride=2, hop_frames=4, video_layout="NTCHW")
    return dict(encoders={"video": m}, head=TemporalHead(TOKEN_DIM, frames, len(CLASSES)).eval(), preprocessing=prep)


class AudioTransformer(nn.Module):
    """AST-style: log-mel [1, 1, T, M] -> 16 x 16 patches (stride `stride`, AST: 10) -> linear
    embedding (a conv) -> [CLS ; patches] + learned positions -> nn.TransformerEncoder (pre-LN,
    GELU, no dropout) -> LayerNorm(CLS) -> linear. Plus the tiny video branch the runtime needs:
    the clip's mean colour [1, 3] -> linear, added to the logits."""

    def __init__(self, mel_frames: int, mel_bins: int, dim: int, depth: int, heads: int, classes: int,
                 patch: int = 16, stride: int = 10):
        super().__init__()
        self.embed = nn.Conv2d(1, dim, patch, stride)
        n = ((mel_frames - patch) // stride + 1) * ((mel_bins - patch) // stride + 1)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm, self.out = nn.LayerNorm(dim), nn.Linear(dim, classes)
        self.video = nn.Linear(3, classes)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        x = self.embed(audio).flatten(2).transpose(1, 2)  # [1, patches, d]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        x = self.encoder(x)
        return self.out(self.norm(x[:, 0])) + self.video(video.mean((2, 3, 4)))


def audio_model(dim: int, depth: int, heads: int) -> dict:
    torch.manual_seed(0)
    audio = Audio(context_s=1.96, num_mel_bins=128, layout="NCTM", mean=-4.2677393, std=2 * 4.5689974,
                  window="hanning", fbank={"htk_compat": True})
    prep = Preprocessing(frames=2, image_size=(16, 16), fps=25, stride=8, hop_frames=8, video_layout="NCTHW",
                         audio=audio)
    return dict(model=AudioTransformer(audio.mel_frames, 128, dim, depth, heads, len(CLASSES)).eval(),
                preprocessing=prep)


# mvit_v2_s runs once rewritten: torchvision's `tensor_split` in its pooling as two slices (no
# SequenceEmpty / Loop), and its in-place slice adds as full-tensor adds of zero-padded tensors
# (no ScatterND). Those rewrites patch torchvision's own functions, so they are not kept here
# (they would copy torchvision's code); README reports what they measured.


@dataclass
class Arch:
    name: str
    kind: str  # "clip" (one graph), "frames" (staged per-frame encoder + head), "audio"
    input: str  # the input as exported, in words
    build: Callable[[], dict]  # -> export_bundle keyword arguments
    patch: Callable | None = None  # (model) -> context manager around the export
    quick: bool = False  # in --quick
    note: str = ""


def _mvit() -> Arch:
    return Arch("mvit_v2_s", "clip", "NCTHW 16x224x224", lambda: clip_model("mvit_v2_s", 16, 224),
                note="as torchvision writes it")


ARCHS = [
    Arch("r3d_18", "clip", "NCTHW 8x112x112", lambda: clip_model("r3d_18", 8, 112), quick=True,
         note="native 16x112; 8 frames to keep the run short"),
    Arch("mc3_18", "clip", "NCTHW 8x112x112", lambda: clip_model("mc3_18", 8, 112), note="native 16x112"),
    Arch("r2plus1d_18", "clip", "NCTHW 8x112x112", lambda: clip_model("r2plus1d_18", 8, 112), note="native 16x112"),
    Arch("s3d", "clip", "NCTHW 16x224x224", lambda: clip_model("s3d", 16, 224),
         note="its last 2x7x7 average pool needs >= 14 frames at 224"),
    _mvit(),
    Arch("swin3d_t", "clip", "NCTHW 16x224x224", lambda: clip_model("swin3d_t", 16, 224), note="native 32x224"),
    Arch("mobilenet_v3_small", "frames", "NTCHW 8x224x224", lambda: frame_model("mobilenet_v3_small"), quick=True),
    Arch("efficientnet_b0", "frames", "NTCHW 8x224x224", lambda: frame_model("efficientnet_b0")),
    Arch("resnet18", "frames", "NTCHW 8x224x224", lambda: frame_model("resnet18")),
    Arch("vit_b_16", "frames", "NTCHW 8x224x224", lambda: frame_model("vit_b_16")),
    Arch("ast", "audio", "NCTM 1x1x196x128 (+ video 2x16x16)", lambda: audio_model(768, 12, 12),
         note="AST's width (ViT-B: d 768, 12 layers)"),
    Arch("ast_tiny", "audio", "NCTM 1x1x196x128 (+ video 2x16x16)", lambda: audio_model(192, 12, 3), quick=True,
         note="DeiT-tiny width (d 192, 12 layers)"),
]


# ----------------------------------------------------------------------------- measuring helpers
def first_line(text: str) -> str:
    for line in str(text).strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def ort_ms(path: Path, feed: dict, threads: int, runs: int, budget_s: float = 20.0) -> float:
    """onnxruntime, median ms of up to `runs` runs after one warm-up (fewer when slow)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    t = time.perf_counter()
    sess.run(None, feed)
    warm = time.perf_counter() - t
    times = []
    for _ in range(max(1, min(runs, int(budget_s / max(warm, 1e-3))))):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def ort_output(path: Path, feed: dict) -> np.ndarray:
    return export.session(path).run(None, feed)[0]


def have_tract() -> bool:
    try:
        import tract  # noqa: F401

        return True
    except ImportError:
        return False


def tract_error(exc: Exception) -> str:
    """A tract error without its stack backtrace."""
    return str(exc).split("Stack backtrace")[0].strip()


def tract_load(path: Path, feed: dict):
    """A Python-tract runnable (input facts from the feed's shapes)."""
    import tract

    m = tract.onnx().load(str(path))
    for i, x in enumerate(feed.values()):
        m.set_input_fact(i, ",".join(map(str, x.shape)) + ",f32")
    return m.into_model().into_runnable()


def tract_run(runnable, feed: dict, runs: int = 3, budget_s: float = 10.0) -> tuple[np.ndarray, float, float]:
    """Output, ms of the first run, median ms of up to `runs` more (none when the first is slow)."""
    args = list(feed.values())
    t = time.perf_counter()
    out = runnable.run(args)[0].to_numpy()
    first = time.perf_counter() - t
    times = []
    for _ in range(min(runs, int(budget_s / max(first, 1e-3)))):
        t = time.perf_counter()
        runnable.run(args)
        times.append(time.perf_counter() - t)
    return out, first * 1e3, float(np.median(times) * 1e3) if times else first * 1e3


def tract_profile(runnable, feed: dict, top: int = 5) -> dict:
    """tract's profile (one run): seconds per operator type, and the slowest nodes."""
    p = json.loads(runnable.profile_json(list(feed.values())))
    by_op, nodes = Counter(), []
    for n in p["nodes"]:
        s = n.get("secs_per_iter", 0.0)
        by_op[n["op_name"]] += s
        nodes.append((s, n["op_name"], n["node_name"]))
    total = p["profiling_info"]["secs_per_iter"]
    return {"total_s": total,
            "ops": [{"op": op, "s": s, "share": s / total} for op, s in by_op.most_common(top)],
            "nodes": [{"node": name, "op": op, "s": s} for s, op, name in sorted(nodes, reverse=True)[:top]]}


def verify(avaction: str, bundle: Path, repeat: int) -> dict:
    """`avaction verify <bundle> --json --repeat N`: its JSON, or the first line of its error."""
    cmd = [avaction, "verify", str(bundle), "--json", "--repeat", str(repeat)]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
    res = {"command": " ".join([Path(avaction).name, "verify", rel(bundle), "--json", "--repeat", str(repeat)]),
           "returncode": p.returncode, "wall_s": time.perf_counter() - t}
    try:
        res["report"] = json.loads(p.stdout)
    except json.JSONDecodeError:
        res["report"] = None
    if res["report"] is None:
        res["error"] = first_line(p.stderr) or first_line(p.stdout) or f"exit {p.returncode}"
        res["stderr"] = p.stderr.strip()[-4000:]
    return res


def verify_summary(v: dict) -> dict:
    """The numbers of a verify report: single / staged max diffs and ms, failed checks."""
    checks = (v.get("report") or {}).get("checks", [])
    out = {"failed_checks": [c["check"] for c in checks if not c["passed"]]}
    for c in checks:
        name = c["check"]
        if name.startswith("golden inputs -> single graph"):
            out["single_vs_torch"], out["single_ms"] = c["max_diff"], c["ms"]
        elif name.startswith("source -> single graph"):
            out["e2e_vs_torch"] = c["max_diff"]
        elif "staged, all tokens new" in name:
            out["staged_vs_torch"], out["staged_window_ms"] = c["max_diff"], c["ms"]
        elif name == "staged vs single graph":
            out["staged_vs_single"] = c["max_diff"]
        elif "(frontends)" in name:
            out.setdefault("frontends_max_diff", 0.0)
            d = c["max_diff"]
            out["frontends_max_diff"] = max(out["frontends_max_diff"], math.inf if d is None else d)
    return out


# ----------------------------------------------------------------------------- minimal reproductions
# Small torch modules that produce a failing / slow ONNX pattern the way the architectures do.
class _TensorSplit(nn.Module):
    def forward(self, x):
        a, b = torch.tensor_split(x, (1,), dim=2)
        return b * 2 + a.sum()


class _Softmax(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return x.softmax(self.dim)


class _SliceAddInplace(nn.Module):
    def forward(self, attn, rel):
        attn = attn * 1.0
        attn[:, :, 1:, 1:] += rel
        return attn


@dataclass
class Pattern:
    torch: str  # the torch code, in words
    module: Callable[[], nn.Module]
    inputs: Callable[[], tuple]
    contrast: tuple[str, Callable[[], nn.Module]] | None = None  # the same op without the slow case, timed too
    context: str = ""  # set when the model's node is not the pattern itself: why it becomes it (the node is
    # then also written in its context)


PATTERNS = {  # op type -> the smallest torch code that produces the failing / slow ONNX
    "SequenceEmpty": Pattern("a, b = torch.tensor_split(x, (1,), dim=2)", _TensorSplit, lambda: (torch.randn(1, 2, 5, 3),)),
    "Loop": Pattern("a, b = torch.tensor_split(x, (1,), dim=2)", _TensorSplit, lambda: (torch.randn(1, 2, 5, 3),)),
    "ScatterND": Pattern("attn[:, :, 1:, 1:] += rel  (attn [1, 2, 1025, 1025], rel [1, 2, 1024, 1024])",
                         _SliceAddInplace, lambda: (torch.randn(1, 2, 1025, 1025), torch.randn(1, 2, 1024, 1024))),
    "Softmax": Pattern("x.softmax(dim=2)  (x [4, 12, 392, 392]: a Softmax over a non-innermost axis)",
                       lambda: _Softmax(2), lambda: (torch.randn(4, 12, 392, 392),),
                       contrast=("x.softmax(dim=-1)", lambda: _Softmax(-1)),
                       context="the model's Softmax is over the last axis, yet takes as long as the non-innermost "
                               "case: tract's optimiser apparently moves axes around the window attention's "
                               "MatMuls (MoveAxis nodes appear next to it) so that the Softmax no longer runs "
                               "over the innermost axis"),
}


def node_repro(model_path: Path, node_name: str, out: Path) -> dict:
    """The node `node_name` of the ONNX file alone: initializer and Constant inputs kept as
    initializers, other inputs become graph inputs (types from ONNX shape inference), outputs as
    inferred. Returns a description (op, attributes, input / output types)."""
    import onnx
    from onnx import helper, shape_inference

    m = onnx.load(str(model_path))
    try:
        inferred = shape_inference.infer_shapes(m)
    except Exception:  # noqa: BLE001 - shape inference is best effort
        inferred = m
    types_ = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    inits = {i.name: i for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    node = next(n for n in m.graph.node if n.name == node_name)
    nodes, inputs, initializers = [], [], []
    for name in filter(None, node.input):
        if name in inits:
            initializers.append(inits[name])
        elif name in producer and producer[name].op_type == "Constant":
            nodes.append(producer[name])
        else:
            inputs.append(types_.get(name) or helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    outputs = [types_.get(o) or helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in node.output]
    graph = helper.make_graph(nodes + [node], f"repro_{node.op_type}", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=m.opset_import, producer_name="avaction_train.arch_table")
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))

    def typ(v):
        t = v.type
        if t.WhichOneof("value") == "sequence_type":
            return f"sequence({onnx.helper.printable_type(t.sequence_type.elem_type)})"
        return onnx.helper.printable_type(t) if t.WhichOneof("value") else "?"

    return {"file": rel(out), "op": node.op_type, "node": node_name, "opset": m.opset_import[0].version,
            "attributes": {a.name: str(helper.get_attribute_value(a))[:200] for a in node.attribute},
            "inputs": [f"{v.name}: {typ(v)}" for v in inputs] + [f"{i.name}: initializer {list(i.dims)}"
                                                                  for i in initializers],
            "outputs": [f"{v.name}: {typ(v)}" for v in outputs]}


def pattern_repro(op: str, out: Path) -> dict | None:
    """PATTERNS[op] exported as the architectures are (legacy exporter, opset 17); timed in tract
    and onnxruntime when both run it (and its contrast, in tract)."""
    pat = PATTERNS.get(op)
    if pat is None:
        return None
    args = pat.inputs()
    names = [f"x{i}" for i in range(len(args))]
    export.onnx_export(pat.module().eval(), args, out, names, ["y"], 17)
    import onnx

    feed = {n: a.numpy() for n, a in zip(names, args)}
    res = {"file": rel(out), "torch": pat.torch, "context": pat.context,
           "ops": dict(Counter(n.op_type for n in onnx.load(str(out)).graph.node))}
    try:
        res["ort_ms_1_thread"] = ort_ms(out, feed, 1, 5)
    except Exception as exc:  # noqa: BLE001
        res["ort_error"] = first_line(exc)
    if have_tract():
        try:
            y, _, res["tract_ms"] = tract_run(tract_load(out, feed), feed)
            with torch.no_grad():
                res["tract_vs_torch"] = export.max_diff(y, pat.module()(*args).numpy())
            if pat.contrast:
                path = out.with_name(out.stem + "-contrast.onnx")
                export.onnx_export(pat.contrast[1]().eval(), args, path, names, ["y"], 17)
                res["contrast"] = {"torch": pat.contrast[0], "file": rel(path),
                                   "tract_ms": tract_run(tract_load(path, feed), feed)[2],
                                   "ort_ms_1_thread": ort_ms(path, feed, 1, 5)}
        except Exception as exc:  # noqa: BLE001
            res["tract_error"] = first_line(tract_error(exc))
    return res


def block_perf_repro(model_path: Path, tract_node: str, feed: dict, op: str, out: Path, up: int = 10,
                     down: int = 1) -> dict:
    """The slow node in its context, as a graph of its own: tract's optimiser picks layouts from
    the neighbours, so the node alone is often fast. tract names its nodes after the ONNX node plus
    suffixes; the context is the ONNX nodes of the same module (name prefix, e.g.
    `/features/features.4/features.4.1/attn/`) that produce its data up to `up` steps back and
    consume it `down` steps on. Inputs of that subgraph that depend on the model input and are
    float become graph inputs; every other outside value (weights, shape computations) an
    initializer with the value onnxruntime computes on `feed`; its outputs are the float values used
    outside it. Timed in tract (with a profile: the share of `op`) and onnxruntime (1 thread)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    m = onnx.load(str(model_path))
    names = {n.name for n in m.graph.node}
    parts = tract_node.split(".")
    onnx_name = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in names), None)
    if onnx_name is None:
        return {"note": f"tract node {tract_node!r} matches no ONNX node"}
    prefix = onnx_name.rsplit("/", 1)[0] + "/"
    dep = {i.name for i in m.graph.input}  # values computed from the model's inputs
    for n in m.graph.node:
        if any(i in dep for i in n.input):
            dep.update(n.output)
    producer = {o: n for n in m.graph.node for o in n.output}
    consumers = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    chosen, frontier = {onnx_name}, [n for n in m.graph.node if n.name == onnx_name]
    for _ in range(up):  # producers of data (not of weights or shapes), inside the module
        frontier = [p for n in frontier for i in n.input if i in dep and (p := producer.get(i)) is not None
                    and p.name.startswith(prefix) and p.name not in chosen]
        chosen |= {p.name for p in frontier}
    frontier = [n for n in m.graph.node if n.name == onnx_name]
    for _ in range(down):
        frontier = [c for n in frontier for o in n.output for c in consumers.get(o, [])
                    if c.name.startswith(prefix) and c.name not in chosen]
        chosen |= {c.name for c in frontier}
    nodes = [n for n in m.graph.node if n.name in chosen]
    made = {o for n in nodes for o in n.output}
    inits = {i.name: i for i in m.graph.initializer}
    need = list(dict.fromkeys(i for n in nodes for i in n.input if i and i not in made and i not in inits))
    used_outside = {i for n in m.graph.node if n.name not in chosen for i in n.input}
    used_outside |= {o.name for o in m.graph.output}
    outs = [o for n in nodes for o in n.output if o in used_outside and o in dep]
    probe = onnx.load(str(model_path))
    probe.graph.output.extend(helper.ValueInfoProto(name=n) for n in need + outs)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    values = dict(zip(need + outs, ort.InferenceSession(probe.SerializeToString(), so,
                                                        providers=["CPUExecutionProvider"]).run(need + outs, feed)))
    del probe
    inputs, initializers, sub_feed = [], [], {}
    for k in need:
        v = values[k]
        if k in dep and v.dtype == np.float32:
            inputs.append(helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, list(v.shape)))
            sub_feed[k] = v
        else:
            initializers.append(numpy_helper.from_array(v, k))
    initializers += [inits[i] for i in dict.fromkeys(i for n in nodes for i in n.input) if i in inits]
    outs = [o for o in outs if values[o].dtype == np.float32]
    outputs = [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, list(values[o].shape)) for o in outs]
    model = helper.make_model(helper.make_graph(nodes, "repro_" + prefix.strip("/").replace("/", "_"), inputs,
                                                outputs, initializers),
                              opset_imports=m.opset_import, producer_name="avaction_train.arch_table")
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    node = next(n for n in nodes if n.name == onnx_name)
    res = {"file": rel(out), "module": prefix, "op": op, "node": onnx_name, "nodes": len(nodes), "up": up,
           "down": down, "node_op": node.op_type, "attributes": {a.name: str(helper.get_attribute_value(a))[:100] for a in node.attribute},
           "inputs": {k: list(v.shape) for k, v in sub_feed.items()},
           "outputs": {o: list(values[o].shape) for o in outs}, "mb": out.stat().st_size / 1e6,
           "ort_ms_1_thread": ort_ms(out, sub_feed, 1, 5)}
    r = tract_load(out, sub_feed)
    y, _, res["tract_ms"] = tract_run(r, sub_feed)
    res["tract_vs_ort"] = export.max_diff(y, values[outs[0]])
    prof = tract_profile(r, sub_feed)
    res["op_share"] = sum(x["share"] for x in prof["ops"] if x["op"] == op)
    res["op_ms"] = 1e3 * sum(x["s"] for x in prof["ops"] if x["op"] == op)
    return res


def failing_node(error: str) -> str | None:
    """The node a tract error names (`... node #12 "name" ...`)."""
    m = re.search(r'node #\d+ "([^"]+)"', error)
    return m.group(1) if m else None


def repro_for_failure(res: dict, graphs: list[Path], error: str, out: Path) -> None:
    """res["repro"]: the failing node (found in one of `graphs`) alone, checked in Python tract,
    and the torch pattern."""
    import onnx

    node = failing_node(error)
    holder = next((g for g in graphs if node is not None and g.exists() and any(
        n.name == node for n in onnx.load(str(g), load_external_data=False).graph.node)), None)
    if holder is None:
        res["repro"] = {"note": f"the node named in the error ({node}) is in none of the graphs"}
        return
    path = out / "repro" / f"{res['name']}.onnx"
    repro = node_repro(holder, node, path)
    repro["graph"] = rel(holder)
    if have_tract():
        # Zero inputs of the inferred shapes (unknown dims = 1): the failures seen are at load time.
        feed = {v.name: np.zeros([d.dim_value or 1 for d in v.type.tensor_type.shape.dim], np.float32)
                for v in onnx.load(str(path)).graph.input}
        try:
            tract_load(path, feed)
            repro["tract"] = "loads (the node alone does not fail: the failure needs its context)"
        except Exception as exc:  # noqa: BLE001
            repro["tract"] = "fails: `" + first_line(tract_error(exc)) + "`"
    pattern = pattern_repro(repro["op"], out / "repro" / f"{res['name']}-pattern.onnx")
    if pattern:
        repro["pattern"] = pattern
    res["repro"] = repro


# ----------------------------------------------------------------------------- one architecture
def measure(arch: Arch, out: Path, avaction: str | None, repeat: int) -> dict:
    name = arch.name
    res = {"name": name, "kind": arch.kind, "input": arch.input, "note": arch.note,
           "loadavg_1min_start": os.getloadavg()[0]}
    bundle = out / "bundles" / name
    partial = bundle.parent / f".{name}.partial"
    t0 = time.perf_counter()
    log(name, "building the model (random weights, BatchNorm calibration)")
    kwargs = arch.build()
    prep = kwargs["preprocessing"]
    res["window"] = {"frames": prep.frames, "stride": prep.stride, "hop_frames": prep.hop_frames,
                     "image_size": list(prep.image_size), "layout": prep.video_layout,
                     "audio": None if prep.audio is None else {"shape": prep.audio.shape(),
                                                               "context_s": prep.audio.context_s}}
    res["build_s"] = time.perf_counter() - t0
    module = kwargs.get("model") or kwargs["encoders"]["video"]
    patch = arch.patch(module) if arch.patch else contextlib.nullcontext()

    # 1. the exporter
    log(name, "exporting (torch.onnx legacy exporter, goldens, onnxruntime checks)")
    t = time.perf_counter()
    try:
        with patch:
            rep = export.export_bundle(bundle, name, CLASSES, description=f"{name}, RANDOM weights (arch_table)",
                                       readme="Written by `python -m avaction_train.arch_table`: random weights, "
                                              "for operator coverage and speed only.",
                                       overwrite=True, avaction=False, quiet=True, **kwargs)
        res["export"] = {"ok": True, "s": time.perf_counter() - t, "checks": rep["checks"], "params": rep["params"],
                         "onnx_bytes": rep["onnx_bytes"], "logmel_sensitivity": rep["logmel_sensitivity"]}
        graph_dir = bundle
    except Exception as exc:  # noqa: BLE001 - every failure is a result
        mod = type(exc).__module__
        stage = ("torch.onnx export" if mod.startswith("torch") else "onnxruntime" if "onnxruntime" in mod
                 else "exporter check")
        if stage == "torch.onnx export" and (partial / "model.onnx").exists():
            stage = "exporter (after the ONNX was written)"
        res["export"] = {"ok": False, "s": time.perf_counter() - t, "stage": stage,
                         "error": f"{type(exc).__name__}: {first_line(exc)}",
                         "traceback": traceback.format_exc()[-3000:],
                         "params": sum(p.numel() for p in module.parameters())}
        log(name, f"export FAILED at {stage}: {res['export']['error'][:300]}")
        graph_dir = partial
    single = graph_dir / "model.onnx"
    res["export"]["s_total"] = time.perf_counter() - t
    if not single.exists():
        return res
    res["onnx_mb"] = sum(p.stat().st_size for p in [single, *sorted((graph_dir / "stages").glob("*.onnx"))]) / 1e6
    import onnx

    res["ops"] = dict(Counter(n.op_type for n in onnx.load(str(single), load_external_data=False).graph.node))

    # The inputs: the goldens when the bundle exists, else the same reference inputs.
    if res["export"]["ok"]:
        g = json.loads((bundle / "golden" / "golden.json").read_text())
        feed = {n: export._load(bundle / "golden", e) for n, e in g["inputs"].items()}
        golden_out = export._load(bundle / "golden", g["outputs"]["logits"])
    else:
        frames, samples = export.synthetic_source(prep, 0)
        feed = export.reference_inputs(prep, frames, samples)
        golden_out = None

    # 2. onnxruntime
    log(name, "onnxruntime timing (2 threads, then 1)")
    try:
        ort_y = ort_output(single, feed)
        res["ort"] = {"ms_2_threads": ort_ms(single, feed, 2, 7), "ms_1_thread": ort_ms(single, feed, 1, 3)}
        if golden_out is not None:
            res["ort"]["vs_torch"] = export.max_diff(ort_y, golden_out)
    except Exception as exc:  # noqa: BLE001
        ort_y = None
        res["ort"] = {"error": f"{type(exc).__name__}: {first_line(exc)}"}
        log(name, f"onnxruntime FAILED: {res['ort']['error'][:300]}")
    staged = res["export"]["ok"] and (bundle / "stages" / "head.onnx").exists()
    if staged and ort_y is not None:
        enc_feed = {"image": np.ascontiguousarray(export.staged_items(prep, "video", feed["video"], None)[0])}
        head_feed = {n: export._load(bundle / "golden", e) for n, e in g["stages"].items()}
        res["ort"]["encoder_ms_2_threads"] = ort_ms(bundle / "stages" / "video_encoder.onnx", enc_feed, 2, 7)
        res["ort"]["head_ms_2_threads"] = ort_ms(bundle / "stages" / "head.onnx", head_feed, 2, 7)

    # 3. tract from Python (same version as the runtime): vs onnxruntime, staged split, profile
    tract_failed = None
    if have_tract():
        import tract

        log(name, f"tract {tract.version()} from Python: load, run, compare with onnxruntime")
        t = time.perf_counter()
        try:
            r = tract_load(single, feed)
            res["py_tract"] = {"version": tract.version(), "load_s": time.perf_counter() - t}
            y, first_ms, ms = tract_run(r, feed)
            res["py_tract"] |= {"first_ms": first_ms, "ms": ms}
            if ort_y is not None:
                res["py_tract"]["vs_ort"] = export.max_diff(y, ort_y)
            if golden_out is not None:
                res["py_tract"]["vs_torch"] = export.max_diff(y, golden_out)
            ort1 = res["ort"].get("ms_1_thread")
            if ort1 and ms > 3 * ort1 and ms > 100:
                log(name, f"tract {ms:.0f} ms vs onnxruntime {ort1:.0f} ms (1 thread): profiling tract")
                prof = tract_profile(r, feed)
                res["py_tract"]["profile"] = prof
                top = prof["ops"][0]
                if top["share"] > 0.5:
                    log(name, f"{top['op']} takes {100 * top['share']:.0f} % of tract's time: small reproduction")
                    op = {"ScatterNd": "ScatterND"}.get(top["op"], top["op"])
                    slowest = next(n["node"] for n in prof["nodes"] if n["op"] == top["op"])
                    res["perf_repro"] = rep = {"op": top["op"]}
                    try:  # a reproduction is a bonus: its failure is noted, not raised
                        rep["pattern"] = pattern_repro(op, out / "repro" / f"{name}-{op}-slow.onnx")
                        if rep["pattern"] is None or rep["pattern"]["context"]:
                            rep["block"] = block_perf_repro(single, slowest, feed, top["op"],
                                                            out / "repro" / f"{name}-{op}-slow-in-context.onnx")
                    except Exception as exc:  # noqa: BLE001
                        rep["note"] = f"no reproduction: {type(exc).__name__}: {first_line(exc)}"
            del r
            if staged:
                enc = tract_load(bundle / "stages" / "video_encoder.onnx", enc_feed)
                head = tract_load(bundle / "stages" / "head.onnx", head_feed)
                res["py_tract"]["encoder_ms"] = tract_run(enc, enc_feed, 5)[2]
                res["py_tract"]["head_ms"] = tract_run(head, head_feed, 5)[2]
        except Exception as exc:  # noqa: BLE001
            tract_failed = tract_error(exc)
            res.setdefault("py_tract", {})["error"] = first_line(tract_failed)
            log(name, f"tract (Python) FAILED: {first_line(tract_failed)[:300]}")

    # 4. the runtime: avaction verify
    if res["export"]["ok"] and avaction:
        slow = res.get("py_tract", {}).get("first_ms", 0) > 20_000
        n = 1 if slow else repeat
        log(name, f"avaction verify --json --repeat {n}" + (" (1: a run takes > 20 s)" if slow else ""))
        v = verify(avaction, bundle, n)
        v["summary"] = verify_summary(v)
        res["verify"] = v
        if v["report"] is None:
            log(name, f"verify FAILED (exit {v['returncode']}): {v['error'][:300]}")
            tract_failed = tract_failed or v["stderr"]
        else:
            s = v["summary"]
            log(name, f"verify: single {s.get('single_ms', 0):.1f} ms, max diff {s.get('single_vs_torch')}"
                + (f"; staged {s['staged_window_ms']:.1f} ms" if "staged_window_ms" in s else "")
                + (f"; failed checks: {s['failed_checks']}" if s["failed_checks"] else "; all checks passed"))
    if tract_failed:
        log(name, "writing a minimal reproduction of the tract failure")
        try:
            repro_for_failure(res, [single, *sorted((graph_dir / "stages").glob("*.onnx"))], tract_failed, out)
        except Exception as exc:  # noqa: BLE001
            res["repro"] = {"note": f"could not write a reproduction: {type(exc).__name__}: {first_line(exc)}"}
    if partial.exists():
        shutil.rmtree(partial)  # the failed export's files: the reproduction keeps what matters
    res["total_s"] = time.perf_counter() - t0
    res["loadavg_1min_end"] = os.getloadavg()[0]
    log(name, f"done in {res['total_s']:.0f} s")
    return res


# ----------------------------------------------------------------------------- table
def _g(x, fmt="{:.2g}") -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return "inf"
    return fmt.format(x)


def _ms(x) -> str:
    if x is None:
        return "–"
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def per_hop(r: dict) -> tuple[float | None, float | None]:
    """Staged per-hop cost, head + (new frames per hop) x encoder: tract (wheel, 1 thread) and
    onnxruntime (2 threads); None where not staged or not measured."""
    w, pt, o = r["window"], r.get("py_tract", {}), r.get("ort", {})
    new = w["hop_frames"] / w["stride"]
    t = pt["head_ms"] + new * pt["encoder_ms"] if "head_ms" in pt else None
    ort_ = o["head_ms_2_threads"] + new * o["encoder_ms_2_threads"] if "head_ms_2_threads" in o else None
    return t, ort_


def row(r: dict) -> str:
    e, o, pt = r["export"], r.get("ort", {}), r.get("py_tract", {})
    v = r.get("verify") or {}
    s = v.get("summary", {})
    loaded = v.get("report") is not None
    if loaded:
        loads = "yes"
    elif v:
        loads = "**no**"
    else:
        loads = "**no** (wheel)" if "error" in pt else ("yes (wheel)" if pt else "–")
    runs = "yes" if s.get("single_ms") is not None or "ms" in pt else ("**no**" if "no" in loads else "–")
    diffs = f"{_g(s.get('single_vs_torch', pt.get('vs_torch')))} / {_g(pt.get('vs_ort'))}"
    if diffs == "– / –":
        diffs = "–"
    tract_ms = f"{_ms(s.get('single_ms'))} / {_ms(pt.get('ms'))}" if (s or "ms" in pt) else "–"
    hop_t, hop_o = per_hop(r) if "window" in r else (None, None)
    staged = f"{_ms(s['staged_window_ms'])} / {_ms(hop_t)} / {_ms(hop_o)}" if "staged_window_ms" in s else "–"
    if loaded:
        ver = "pass" if v["report"].get("passed") else "**fail**: " + ", ".join(
            c.split(" (")[0] for c in s.get("failed_checks", []))
    else:
        ver = f"exit {v['returncode']}" if v else "–"
    ort_s = (f"{_ms(o.get('ms_2_threads'))} / {_ms(o.get('ms_1_thread'))}" if "ms_2_threads" in o
             else ("**fails**" if "error" in o else "–"))
    ratio = pt.get("ms") / o["ms_1_thread"] if "ms" in pt and o.get("ms_1_thread") else None
    exported = f"yes, {e['s']:.0f} s" if e["ok"] else f"**no** ({e['stage']})"
    params = e.get("params") or 0
    return (f"| {r['name']} | {r['input']} | {params / 1e6:.1f} M | {_g(r.get('onnx_mb'), '{:.0f}')} | {exported} | "
            f"{ort_s} | {loads} | {runs} | {diffs} | {tract_ms} | {_g(ratio, '{:.1f}x')} | {staged} | {ver} |")


HEADER = ("| model | input | params | ONNX MB | exported (s) | ORT ms 2 thr / 1 thr | loads in tract | runs | "
          "max diff tract vs PyTorch / vs ORT | tract ms: verify / wheel | tract ÷ ORT 1 thr | "
          "staged ms: window (verify) / per hop (wheel) / per hop ORT 2 thr | avaction verify |\n" + "|---" * 13 + "|")


def notes(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        e, o, pt, v = r["export"], r.get("ort", {}), r.get("py_tract", {}), r.get("verify") or {}
        lines = [r["note"]] if r.get("note") else []
        if not e["ok"]:
            lines.append(f"exporter failed at {e['stage']}: `{e['error'][:400]}`")
        if "error" in o and o["error"] not in e.get("error", ""):
            lines.append(f"onnxruntime fails on the exported graph: `{o['error'][:400]}`")
        if v and v.get("report") is None:
            lines.append(f"`avaction verify` exit {v['returncode']}: `{v['error'][:400]}`")
        if "error" in pt and not v:
            lines.append(f"tract 0.23.9 (wheel; no bundle to verify): `{pt['error'][:400]}`")
        s = v.get("summary", {})
        if s.get("failed_checks"):
            lines.append("verify checks over tolerance: " + "; ".join(s["failed_checks"])
                         + f" (end to end from source: {_g(s.get('e2e_vs_torch'))}; a 1e-3 log-mel error moves the "
                           f"scores by {_g(e.get('logmel_sensitivity'))})")
        if "head_ms" in pt:
            lines.append(f"tract (wheel, 1 thread): encoder {_ms(pt['encoder_ms'])} ms per frame, head "
                         f"{_ms(pt['head_ms'])} ms (8 frames + head: {_ms(8 * pt['encoder_ms'] + pt['head_ms'])} ms, "
                         f"the batch-8 single graph: {_ms(pt.get('ms'))} ms); onnxruntime 2 threads: encoder "
                         f"{_ms(o.get('encoder_ms_2_threads'))} ms, head {_ms(o.get('head_ms_2_threads'))} ms")
        if "profile" in pt:
            p = pt["profile"]
            lines.append(f"tract profile ({p['total_s']:.2f} s): " + ", ".join(
                f"{x['op']} {100 * x['share']:.0f} %" for x in p["ops"][:4]) + "; slowest nodes: " + ", ".join(
                f"`{x['node']}` {1e3 * x['s']:.0f} ms" for x in p["nodes"][:2]))
        if lines:
            out.append(f"- **{r['name']}**: " + " ".join(l.rstrip(".") + "." for l in lines))
    return out


def repro_section(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        rep, perf = r.get("repro"), r.get("perf_repro")
        if rep and "op" in rep:
            err = (r.get("verify") or {}).get("error") or r.get("py_tract", {}).get("error", "")
            out += [f"### {r['name']}: tract cannot load `{rep['op']}`", "",
                    f"tract 0.23.9 (tract-onnx), ONNX opset {rep['opset']}, exported by torch "
                    f"{torch.__version__.split('+')[0]} (legacy TorchScript exporter).", "",
                    f"- operator: `{rep['op']}` (node `{rep['node']}`), attributes: "
                    f"{json.dumps(rep['attributes']) if rep['attributes'] else 'none'}",
                    f"- inputs: {', '.join(f'`{x}`' for x in rep['inputs']) or 'none'}; outputs: "
                    f"{', '.join(f'`{x}`' for x in rep['outputs'])}",
                    f"- error: `{err[:500]}`",
                    f"- minimal ONNX: `{rep['file']}` (the node alone); tract on it: {rep.get('tract', 'not checked')}"]
            pat = rep.get("pattern")
            if pat:
                out.append(f"- the same from torch (`{pat['torch']}`): `{pat['file']}`, ops "
                           + ", ".join(f"{k} {n}" for k, n in pat["ops"].items()) + "; tract: "
                           + (f"`{pat['tract_error']}`" if "tract_error" in pat else "runs") + "; onnxruntime: "
                           + (f"`{pat['ort_error']}`" if "ort_error" in pat else "runs"))
            out.append("")
        if perf:
            prof = r["py_tract"]["profile"]
            top = prof["ops"][0]
            out += [f"### {r['name']}: tract's `{top['op']}` is slow", "",
                    f"tract 0.23.9 spends {100 * top['share']:.0f} % of a {prof['total_s']:.1f} s run of the whole "
                    f"graph in `{top['op']}` (onnxruntime, 1 thread: {_ms(r['ort'].get('ms_1_thread'))} ms for the "
                    f"whole graph).", ""]
            pat, blk = perf.get("pattern"), perf.get("block")
            if pat and pat["context"]:
                out += [f"Why: {pat['context']}.", ""]
            if pat:
                out += [f"- pattern: `{pat['torch']}` → ONNX ops " + ", ".join(f"{k} {n}" for k, n in pat["ops"].items()),
                        f"- minimal ONNX: `{pat['file']}`: tract {_ms(pat.get('tract_ms'))} ms, onnxruntime "
                        f"(1 thread) {_ms(pat.get('ort_ms_1_thread'))} ms, tract vs torch max diff "
                        f"{_g(pat.get('tract_vs_torch'))}"]
                if "contrast" in pat:
                    c = pat["contrast"]
                    out.append(f"- the same with `{c['torch']}` (`{c['file']}`): tract {_ms(c['tract_ms'])} ms, "
                               f"onnxruntime (1 thread) {_ms(c['ort_ms_1_thread'])} ms")
            if blk:
                out += [f"- in its context: `{blk['file']}` ({blk['mb']:.1f} MB): {blk['nodes']} ONNX nodes of "
                        f"`{blk['module']}`: `{blk['node']}` ({blk['node_op']} "
                        + ", ".join(f"{k}={v}" for k, v in blk["attributes"].items())
                        + f"), the nodes producing its data up to {blk['up']} steps "
                        f"back and {blk['down']} step on; inputs "
                        + ", ".join(f"`{k}` {v}" for k, v in blk["inputs"].items())
                        + "; weights and shape computations as initializers (values of the golden window)",
                        f"- there tract takes {_ms(blk['tract_ms'])} ms, `{blk['op']}` {_ms(blk['op_ms'])} ms of it "
                        f"({100 * blk['op_share']:.0f} %); onnxruntime (1 thread) {_ms(blk['ort_ms_1_thread'])} ms; "
                        f"tract vs onnxruntime max diff {_g(blk['tract_vs_ort'])}"]
            if perf.get("note"):
                out.append(f"- {perf['note']}")
            out.append("")
    return out


def render(results: list[dict], meta: dict) -> str:
    lines = [
        "# Real architectures through the exporter, measured",
        "",
        f"`python -m avaction_train.arch_table` ({meta['when']}, {meta['cpu']}, {meta['cores']} cores, shared with "
        f"other work; torch {meta['torch']}, torchvision {meta['torchvision']}, onnxruntime {meta['onnxruntime']}, "
        f"tract {meta['tract']}; {sum(r.get('total_s', 0) for r in results) / 60:.0f} min of measuring, the models' "
        "times added). Random weights (nothing downloaded): "
        "operator coverage and speed, not accuracy.",
        "",
        HEADER,
        *[row(r) for r in results],
        "",
        "- *exported*: `export_bundle` succeeded (torch.onnx legacy export, goldens, onnxruntime vs PyTorch within "
        "1e-4, bundle re-check) and its wall time; else the stage that failed.",
        "- *ORT ms*: onnxruntime 1.x on the single graph, median ms per window, 2 threads and 1 thread.",
        "- *loads / runs / vs PyTorch / tract ms verify*: `avaction verify <bundle> --json --repeat 3` (1 for graphs "
        "slower than 20 s): tract inside the runtime, 1 thread, the golden-inputs row (max diff against the PyTorch "
        "output, mean ms of the runs after the first). *(wheel)*: the Python tract 0.23.9 wheel, where no bundle exists.",
        "- *vs ORT*, *tract ms wheel*: the tract 0.23.9 Python wheel (release build, 1 thread) against onnxruntime "
        "on the same inputs; median ms. `target/debug/avaction` is a dev-profile build (dependencies at opt-level 3 "
        "but with debug assertions and overflow checks), which is the likely reason its tract is 1.1-3x slower than "
        "the wheel's on the same graphs. *tract ÷ ORT*: wheel ms / onnxruntime 1-thread ms.",
        "- *staged* (per-frame encoders): window = verify's \"staged, all tokens new\" row (the encoder on all 8 "
        "frames, then the head: a window from nothing); per hop = head + 2 new frames (hop 4 captured frames, stride 2) "
        "x encoder, the two graphs timed alone (wheel, 1 thread; onnxruntime, 2 threads): what a running pipeline pays "
        "per window once the token cache is warm.",
        "- *avaction verify*: pass = every check within its tolerance (1e-4 against the goldens, 1e-3 end to end from "
        "the golden source frames / audio through the runtime's frontends, staged vs single 1e-4).",
        "",
        "## Notes",
        *notes(results),
        "",
    ]
    rep = repro_section(results)
    if rep:
        lines += ["## tract gaps, upstream-style", "", *rep]
    return "\n".join(lines)


def meta_info() -> dict:
    import onnxruntime
    import torchvision

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    tv = None
    if have_tract():
        import tract

        tv = tract.version()
    return {"when": time.strftime("%Y-%m-%d"), "cpu": cpu, "cores": os.cpu_count(),
            "torch": torch.__version__.split("+")[0], "torchvision": torchvision.__version__.split("+")[0],
            "onnxruntime": onnxruntime.__version__, "tract": tv or "0.23.9 (runtime; Python wheel absent)"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m avaction_train.arch_table", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--avaction", default=os.environ.get("AVACTION"), help="avaction binary for `avaction verify`")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "target" / "arch")
    ap.add_argument("--only", help="comma-separated model names (the others keep their results from OUT/results.json)")
    ap.add_argument("--quick", action="store_true", help="a new table of a quick subset (a few minutes): "
                                                          + ", ".join(a.name for a in ARCHS if a.quick))
    ap.add_argument("--repeat", type=int, default=3, help="avaction verify --repeat (1 for graphs slower than 20 s)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (export, goldens)")
    ap.add_argument("--keep-bundles", action="store_true", help="keep the bundles (default: delete each after "
                                                                  "measuring it; they are 50 MB - 1 GB each)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    names = [a_.name for a_ in ARCHS]
    if a.only:
        wanted = [n.strip() for n in a.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            ap.error(f"unknown models {unknown}; known: {', '.join(names)}")
    else:
        wanted = [a_.name for a_ in ARCHS if a_.quick or not a.quick]
    if not a.avaction:
        print("no --avaction (or env AVACTION): `avaction verify` is skipped", flush=True)
    if not have_tract():
        print("the Python tract wheel is absent (pip install tract==0.23.9): no tract-vs-onnxruntime, staged split, "
              "profiles or reproduction checks", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    if not a.only:  # a new table: no reproductions left from earlier runs
        shutil.rmtree(a.out / "repro", ignore_errors=True)
    path = a.out / "results.json"
    old = json.loads(path.read_text())["results"] if path.exists() and a.only else []
    results = {r["name"]: r for r in old}
    meta = meta_info()
    for arch in (x for x in ARCHS if x.name in wanted):
        try:
            results[arch.name] = measure(arch, a.out, a.avaction, a.repeat)
        except Exception as exc:  # noqa: BLE001 - a crash of the harness itself: record it, go on
            log(arch.name, f"HARNESS ERROR {type(exc).__name__}: {exc}")
            traceback.print_exc()
            results[arch.name] = {"name": arch.name, "kind": arch.kind, "input": arch.input, "note": arch.note,
                                  "export": {"ok": False, "stage": "arch_table", "error": f"{type(exc).__name__}: "
                                             f"{first_line(exc)}", "params": 0}}
        if not a.keep_bundles:
            shutil.rmtree(a.out / "bundles" / arch.name, ignore_errors=True)
        ordered = [results[n] for n in names if n in results]
        meta["total_s"] = time.perf_counter() - T0
        path.write_text(json.dumps({"meta": meta, "results": ordered}, indent=1) + "\n")
        (a.out / "table.md").write_text(render(ordered, meta))
    print(f"done in {time.perf_counter() - T0:.0f} s: {rel(a.out / 'table.md')}, "
          f"{rel(path)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
