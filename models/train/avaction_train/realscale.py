"""Real-scale bench bundles (issue 15): audio-video fusion models at deployment size, for timing.

    .venv-train/bin/python -m avaction_train.realscale --out target/realscale [--only cnn] [--seed 0]
        [--size 224]    (from models/train, or with PYTHONPATH=models/train)

`--size 32` writes the same models at 32x32 (`make realscale` puts them in target/realscale-test for
tests/model_staged.rs: encoders with a free batch axis on onnxruntime).

Their weights are RANDOM (seeded): these bundles measure speed, not accuracy, and are never
committed (target/ only; scripts/bench-realscale.sh builds them). Each is a MOV-style model with
video, flow and audio inputs at the scale users deploy, written twice: `<arch>-single` (one graph,
model= only) and `<arch>-staged` (the same weights as per-frame / per-flow-field / per-segment
encoders and a head, plus model=). Every bundle has goldens (random window, PyTorch outputs) so
`avaction verify` checks tract and onnxruntime against PyTorch.

Inputs (manifest version 1, the shipped bundles' layout):
  frames  [1, 8, 3, 224, 224]  RGB, ImageNet mean/std; 8 frames at 25 fps, a window every 4 frames
  flow    [1, 7, 3, 224, 224]  MOV flow images (DIS fast, bound 20 px) between consecutive frames
  logmel  [1, 200, 128]        2 s of 128-bin Kaldi log-mel ending at the window's end; the audio
                               encoder reads segments of 8 mel frames (80 ms): 25 audio tokens
Encoders (one per modality, separate weights; token d = 128):
  cnn        the issue's stand-in: 5 conv3x3 stride 2 (32-64-96-128-128) + BN + ReLU, global
             average pool, linear. ~0.28 GFLOP per 224x224 frame.
  mobilenet  MobileNet-style: conv3x3 s2 stem (16), 6 depthwise-separable blocks (dw3x3 + BN +
             ReLU6, pw1x1 + BN + ReLU6) to 160 channels, pool, linear. ~0.06 GFLOP per frame.
  vit        a small ViT: 16x16 patches (196 tokens + CLS), d 192, 4 pre-LN blocks of 3 heads,
             MLP 4x; CLS -> linear. ~0.9 GFLOP per frame.
  audio (all three): conv3x3 (1->32, stride (1,2)) + BN + ReLU, two conv3x3 stride 2 (64, 128),
             pool, linear, over one [8, 128] segment.
Head (all three, MOV's eq. 2-8 in small): temporal position + 2 pre-LN self-attention blocks per
modality (d 128, 4 heads), video tokens attend to [flow ; audio], flow and audio attend to the
video, temporal means, LayerNorm, linear to 10 logits (softmax decoder).

Encoder graphs have a dynamic batch axis (`image` [N, 3, 224, 224] -> `token` [N, 128]), so a runtime
may encode all new frames of a hop in one call. BatchNorm is folded into the convolutions by the
exporter (eval mode, constant folding).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .blocks import Block, TemporalPosition
from .export import _dump, onnx_export
from .install_bundle import fmt

ARCHS = ("cnn", "mobilenet", "vit")
LABELS = [f"action {i}" for i in range(10)]
T, FPS, HOP, SIZE = 8, 25, 4, 224
MEL_FRAMES, MEL_BINS, SEGMENT = 200, 128, 8
DIM, HEADS = 128, 4
IMAGE_MEAN, IMAGE_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
FLOW_MEAN, FLOW_STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
MEL_MEAN, MEL_STD = -4.27, 4.57  # AST's AudioSet statistics
TOLERANCE = 2e-3


def conv_bn(cin: int, cout: int, stride, groups: int = 1, act: type = nn.ReLU, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), act())


class CnnEncoder(nn.Module):
    """5 conv3x3 stride 2 + BN + ReLU, global average pool, linear: [N, 3, 224, 224] -> [N, d]."""

    def __init__(self, dim: int):
        super().__init__()
        chans = [3, 32, 64, 96, 128, 128]
        self.features = nn.Sequential(*[conv_bn(a, b, 2) for a, b in zip(chans, chans[1:])])
        self.proj = nn.Linear(chans[-1], dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x).mean(dim=(2, 3)))


class MobileNetEncoder(nn.Module):
    """Depthwise-separable blocks (MobileNet v1 style, ReLU6): [N, 3, 224, 224] -> [N, d]."""

    def __init__(self, dim: int):
        super().__init__()
        layers = [conv_bn(3, 16, 2, act=nn.ReLU6)]
        for cin, cout, stride in [(16, 32, 2), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 160, 2)]:
            layers += [conv_bn(cin, cin, stride, groups=cin, act=nn.ReLU6), conv_bn(cin, cout, 1, act=nn.ReLU6, kernel=1)]
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(160, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x).mean(dim=(2, 3)))


class VitEncoder(nn.Module):
    """A small ViT: 16x16 patches, CLS token, 4 pre-LN blocks (d 192, 3 heads, MLP 4x)."""

    def __init__(self, dim: int, width: int = 192, depth: int = 4, heads: int = 3, patch: int = 16):
        super().__init__()
        self.patch = nn.Conv2d(3, width, patch, patch)
        n = (SIZE // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = TemporalPosition(n + 1, width)
        self.blocks = nn.ModuleList(Block(width, heads, 4, 0.0) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, dim)
        nn.init.trunc_normal_(self.cls, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # [N, 196, w]
        x = self.pos(torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1))
        for b in self.blocks:
            x = b(x)
        return self.proj(self.norm(x[:, 0]))


class AudioEncoder(nn.Module):
    """One log-mel segment [N, 8, 128] -> [N, d]: three conv3x3 + BN + ReLU, pool, linear."""

    def __init__(self, dim: int):
        super().__init__()
        self.features = nn.Sequential(conv_bn(1, 32, (1, 2)), conv_bn(32, 64, 2), conv_bn(64, 128, 2))
        self.proj = nn.Linear(128, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x.unsqueeze(1)).mean(dim=(2, 3)))


ENCODERS = {"cnn": CnnEncoder, "mobilenet": MobileNetEncoder, "vit": VitEncoder}


class Head(nn.Module):
    """MOV-style fusion head over the tokens: [1, 8, d], [1, 7, d], [1, 25, d] -> logits [1, 10]."""

    def __init__(self, dim: int = DIM, heads: int = HEADS, depth: int = 2):
        super().__init__()
        self.pos = nn.ModuleList(TemporalPosition(n, dim) for n in (T, T - 1, MEL_FRAMES // SEGMENT))
        self.temporal = nn.ModuleList(nn.ModuleList(Block(dim, heads, 2, 0.0) for _ in range(depth)) for _ in range(3))
        self.cross = nn.ModuleList(Block(dim, heads, 2, 0.0) for _ in range(3))
        self.norm = nn.LayerNorm(3 * dim)
        self.out = nn.Linear(3 * dim, len(LABELS))

    def forward(self, video_tokens, flow_tokens, audio_tokens):
        streams = []
        for x, pos, layers in zip((video_tokens, flow_tokens, audio_tokens), self.pos, self.temporal):
            x = pos(x)
            for b in layers:
                x = b(x)
            streams.append(x)
        v, f, a = streams
        v2 = self.cross[0](v, torch.cat([f, a], dim=1))
        f2 = self.cross[1](f, v)
        a2 = self.cross[2](a, v)
        pooled = torch.cat([v2.mean(1), f2.mean(1), a2.mean(1)], dim=-1)
        return self.out(self.norm(pooled))


class Model(nn.Module):
    """Encoders applied per frame / flow image / segment, then the head (== the staged graphs)."""

    def __init__(self, arch: str):
        super().__init__()
        self.video = ENCODERS[arch](DIM)
        self.flow = ENCODERS[arch](DIM)
        self.audio = AudioEncoder(DIM)
        self.head = Head()

    def forward(self, frames, flow, logmel):
        vt = self.video(frames.reshape(-1, 3, SIZE, SIZE)).reshape(1, T, DIM)
        ft = self.flow(flow.reshape(-1, 3, SIZE, SIZE)).reshape(1, T - 1, DIM)
        at = self.audio(logmel.reshape(-1, SEGMENT, MEL_BINS)).reshape(1, MEL_FRAMES // SEGMENT, DIM)
        return self.head(vt, ft, at)


def randomize_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Gives every BatchNorm non-trivial running statistics, so folding them is really checked."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
           batch_axis: bool = False) -> None:
    onnx_export(module, args, path, inputs, outputs, 17, batch_axis)


def manifest(name: str, arch: str, staged: bool) -> str:
    lines = [
        f"# {name}: {'real-scale bench' if SIZE == 224 else f'{SIZE}x{SIZE} test'} bundle (RANDOM weights; issue 15).",
        "# Written by `python -m avaction_train.realscale` (models/train/avaction_train/realscale.py).",
        f'name = "{name}"', 'version = "0.1.0"',
        f'description = "MOV-style {arch} fusion model at {SIZE}x{SIZE}, random weights (bench and tests only)"',
        'graph = "model.onnx"', 'labels = "labels.txt"', "",
        "[window]", f"frames = {T}", f"fps = {FPS}", f"hop_frames = {HOP}",
        "# labels go on while the 2 s of audio context are not there yet (the stream's first second)",
        "audio_optional = true", "",
        "[[inputs]]", 'name = "frames"', 'frontend = "image"', f"shape = [1, {T}, 3, {SIZE}, {SIZE}]",
        f"mean = {fmt(IMAGE_MEAN)}", f"std = {fmt(IMAGE_STD)}", "",
        "[[inputs]]", 'name = "flow"', 'frontend = "flow"', f"shape = [1, {T - 1}, 3, {SIZE}, {SIZE}]",
        f"mean = {fmt(FLOW_MEAN)}", f"std = {fmt(FLOW_STD)}", 'estimator = "dis-fast"', "bound = 20.0", "",
        "[[inputs]]", 'name = "logmel"', 'frontend = "logmel"', f"shape = [1, {MEL_FRAMES}, {MEL_BINS}]",
        f"mean = [{MEL_MEAN}]", f"std = [{MEL_STD}]", "",
        "[inputs.fbank]", "sample_rate = 16000", "frame_length_ms = 25.0", "frame_shift_ms = 10.0",
        f"num_mel_bins = {MEL_BINS}", 'window = "hamming"', "",
        "[output]", 'name = "logits"', f"shape = [1, {len(LABELS)}]",
    ]
    if staged:
        lines += ["", "[stages]", 'head = "stages/head.onnx"']
        for inp, graph, tokens in [("frames", "video_encoder", "video_tokens"), ("flow", "flow_encoder", "flow_tokens"),
                                   ("logmel", "audio_encoder", "audio_tokens")]:
            lines += ["", "[[stages.encoders]]", f'input = "{inp}"', f'graph = "stages/{graph}.onnx"',
                      f'tokens = "{tokens}"', f"dim = {DIM}"]
            if inp == "logmel":
                lines.append(f"segment = {SEGMENT}")
    lines += ["", "[decoder]", 'kind = "softmax"', 'background = "action 0"', "top_k = 3", "smoothing = 3",
              "enter = 0.6", "exit = 0.4", "min_duration_s = 0.2", ""]
    return "\n".join(lines)


def golden(model: Model, gdir: Path, seed: int) -> dict:
    """A random window (u8 frames, u8 MOV flow, log-mel), its normalised inputs, tokens and outputs."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (T, SIZE, SIZE, 3), dtype=np.uint8)
    flow = np.clip(rng.normal(128, 20, (T - 1, 3, SIZE, SIZE)), 0, 255).astype(np.uint8)
    flow[:, 2] = 0
    logmel = rng.normal(MEL_MEAN, MEL_STD, (MEL_FRAMES, MEL_BINS)).astype(np.float32)
    mean, std = np.array(IMAGE_MEAN, np.float32), np.array(IMAGE_STD, np.float32)
    x_frames = ((frames.astype(np.float32) / 255 - mean) / std).transpose(0, 3, 1, 2)[None]
    fmean, fstd = np.array(FLOW_MEAN, np.float32)[:, None, None], np.array(FLOW_STD, np.float32)[:, None, None]
    x_flow = ((flow.astype(np.float32) / 255 - fmean) / fstd)[None]
    x_mel = ((logmel - MEL_MEAN) / MEL_STD)[None]
    args = [torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in (x_frames, x_flow, x_mel)]
    with torch.no_grad():
        vt = model.video(args[0].reshape(-1, 3, SIZE, SIZE)).reshape(1, T, DIM)
        ft = model.flow(args[1].reshape(-1, 3, SIZE, SIZE)).reshape(1, T - 1, DIM)
        at = model.audio(args[2].reshape(-1, SEGMENT, MEL_BINS)).reshape(1, -1, DIM)
        out = model(*args).numpy()
    gdir.mkdir(parents=True, exist_ok=True)
    return {
        "inputs": {n: _dump(gdir, f"inputs_{n}.bin", a.numpy()) for n, a in zip(("frames", "flow", "logmel"), args)},
        "stages": {n: _dump(gdir, f"{n}.bin", a.numpy()) for n, a in
                   (("video_tokens", vt), ("flow_tokens", ft), ("audio_tokens", at))},
        "outputs": {"logits": _dump(gdir, "logits.bin", out)},
        "raw": {"frames": _dump(gdir, "raw_frames.bin", frames), "flow": _dump(gdir, "raw_flow.bin", flow),
                "logmel": _dump(gdir, "raw_logmel.bin", logmel)},
        "tolerance": TOLERANCE,
        "note": "random window and random weights (bench bundle); outputs from PyTorch",
    }, out, args


def check(bundle: Path, golden_json: dict, expect: np.ndarray, args) -> float:
    """onnxruntime reproduces PyTorch on the single graph and (when staged) on encoders + head."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    feeds = {n: a.numpy() for n, a in zip(("frames", "flow", "logmel"), args)}
    worst = float(np.abs(ort.InferenceSession(str(bundle / "model.onnx"), so).run(None, feeds)[0] - expect).max())
    if (bundle / "stages").exists():
        def enc(name: str, inp: str, x: np.ndarray) -> np.ndarray:
            s = ort.InferenceSession(str(bundle / "stages" / f"{name}.onnx"), so)
            return s.run(None, {inp: x})[0]
        vt = enc("video_encoder", "image", feeds["frames"].reshape(-1, 3, SIZE, SIZE))[None]
        ft = enc("flow_encoder", "image", feeds["flow"].reshape(-1, 3, SIZE, SIZE))[None]
        at = enc("audio_encoder", "logmel", feeds["logmel"].reshape(-1, SEGMENT, MEL_BINS))[None]
        head = ort.InferenceSession(str(bundle / "stages" / "head.onnx"), so)
        staged = head.run(None, {"video_tokens": vt, "flow_tokens": ft, "audio_tokens": at})[0]
        worst = max(worst, float(np.abs(staged - expect).max()))
    if not worst <= TOLERANCE:
        raise SystemExit(f"{bundle}: onnxruntime differs from PyTorch by {worst:.3g} (tolerance {TOLERANCE})")
    return worst


def build(arch: str, out: Path, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Model(arch)
    randomize_bn(model, gen)
    model.eval()
    for staged in (False, True):
        name = f"{arch}-{'staged' if staged else 'single'}"
        bundle = out / name
        started = time.time()
        if bundle.exists():
            shutil.rmtree(bundle)
        bundle.mkdir(parents=True)
        g, expect, args = golden(model, bundle / "golden", seed + 1)
        export(model, tuple(args), bundle / "model.onnx", ["frames", "flow", "logmel"], ["logits"])
        if staged:
            image = torch.zeros(1, 3, SIZE, SIZE)
            export(model.video, (image,), bundle / "stages/video_encoder.onnx", ["image"], ["token"], True)
            export(model.flow, (image,), bundle / "stages/flow_encoder.onnx", ["image"], ["token"], True)
            export(model.audio, (torch.zeros(1, SEGMENT, MEL_BINS),), bundle / "stages/audio_encoder.onnx",
                   ["logmel"], ["token"], True)
            tokens = [torch.zeros(1, n, DIM) for n in (T, T - 1, MEL_FRAMES // SEGMENT)]
            export(model.head, tuple(tokens), bundle / "stages/head.onnx",
                   ["video_tokens", "flow_tokens", "audio_tokens"], ["logits"])
        else:
            del g["stages"]
        (bundle / "golden/golden.json").write_text(json.dumps(g, indent=1))
        (bundle / "model.toml").write_text(manifest(name, arch, staged))
        (bundle / "labels.txt").write_text("\n".join(LABELS) + "\n")
        diff = check(bundle, g, expect, args)
        params = sum(p.numel() for p in model.parameters())
        print(f"realscale: {bundle} ({params / 1e6:.1f} M parameters, onnxruntime vs PyTorch {diff:.2g}, "
              f"{time.time() - started:.0f} s)", file=sys.stderr)


def main() -> None:
    global SIZE
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("target/realscale"))
    p.add_argument("--only", choices=ARCHS, action="append", help="build only these (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=SIZE,
                   help="image side (default 224; a multiple of 32: tests/data/bundles/realscale-tiny is 32)")
    a = p.parse_args()
    if a.size % 32:
        raise SystemExit(f"--size {a.size}: must be a multiple of 32")
    SIZE = a.size
    torch.set_num_threads(2)
    for arch in a.only or ARCHS:
        build(arch, a.out, a.seed)


if __name__ == "__main__":
    main()
