"""Worked example: bring your own PyTorch model to avaction (avaction_train.export).

A small MOV-style audio-video fusion model: a per-frame CNN encoder, a CNN over each 40-80 ms
segment of the log-mel, and a little transformer head (self-attention per modality, then video
tokens attend to audio tokens and audio tokens to the video tokens). Its weights are RANDOM (seeded):
the point is the path from an nn.Module to bundles the runtime loads and `avaction verify` checks,
not what the scores mean. Train your model as you like; what matters for the bundle is the
`Preprocessing` it was trained with.

    .venv-train/bin/python models/train/examples/byo_model.py                 # tiny, into target/byo/tiny
    .venv-train/bin/python models/train/examples/byo_model.py --size 224      # real size, target/byo/224
        [--out DIR] [--avaction target/debug/avaction] [--threads 2] [--seed 0]

Sizes:
  tiny (default, --size 64): 8 frames of 64x64 (stride 2: a window spans 15 captured frames, 0.6 s at
        25 fps), 1.0 s of 64-bin log-mel [1, 1, 100, 64] in 25 segments of 4 mel frames, d = 32
  224 (--size 224):          8 frames of 224x224 (stride 2), 2.0 s of 128-bin log-mel [1, 1, 200, 128]
                             in 25 segments of 8 mel frames, d = 128
Video input "video" NCTHW [1, 3, 8, H, W], ImageNet mean/std; audio "audio" NCTM, AST's mean/std.

Bundles written under OUT/<size>/ (OUT defaults to target/byo in the repository):
  mov-single        model= only: the whole module as one graph
  mov-staged        model= and encoders= + head=: the same weights staged (frame encoder, audio segment
                    encoder, head); the exporter checks staged == single
  mov-raw-audio     (tiny) only the video is staged; the whole log-mel goes to the head ("raw input",
                    head_inputs = ["video_tokens", "audio"])
  video-only-nthwc  (tiny) a video-only model (input "frames", layout NTHWC, sigmoid decoder), staged, no
                    model=: its single graph is the exporter's composition of encoder and head
Then a self-check (no pytest): each bundle re-checked from its files (export.check_bundle: onnxruntime loads
every graph and reproduces the goldens), the golden inputs recomputed from the golden source by a second,
independent implementation of the spec's preprocessing (must be bit-identical), and the three MOV bundles
(same weights, same source) giving the same scores. `--avaction PATH` also runs `avaction verify` on each.

The command-line exporter can build the tiny staged bundle from this file too:
    PYTHONPATH=models/train:models/train/examples .venv-train/bin/python -m avaction_train.export \
        --model byo_model:export_kwargs --out target/byo/cli --overwrite
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

TRAIN = Path(__file__).resolve().parents[1]  # models/train: the package avaction_train, uninstalled
if str(TRAIN) not in sys.path:
    sys.path.insert(0, str(TRAIN))

from avaction_train import export  # noqa: E402
from avaction_train.blocks import Block, TemporalPosition  # noqa: E402
from avaction_train.export import Audio, Decoder, Encoder, Preprocessing, export_bundle  # noqa: E402

REPO = TRAIN.parents[1]
LABELS = ["background", "wave", "clap", "knock", "jump"]


@dataclass
class Size:
    image: int
    context_s: float
    mel_bins: int
    segment: int  # mel frames per audio token
    dim: int
    frames: int = 8
    stride: int = 2
    hop_frames: int = 4  # 160 ms = 16 mel frames: a multiple of the segment, so audio tokens are reused

    @property
    def mel_frames(self) -> int:
        return round(self.context_s * 100)


SIZES = {64: Size(image=64, context_s=1.0, mel_bins=64, segment=4, dim=32),
         224: Size(image=224, context_s=2.0, mel_bins=128, segment=8, dim=128)}


# ----------------------------------------------------------------------------- the model
class FrameEncoder(nn.Module):
    """One RGB frame [B, 3, H, W] ([B, H, W, 3] with channels_last) -> token [B, dim]: a 4x4/4 patchify
    conv, two 3x3/2 convs, global average, linear. Each batch item on its own (staging needs that)."""

    def __init__(self, dim: int, channels_last: bool = False):
        super().__init__()
        self.channels_last = channels_last
        self.net = nn.Sequential(nn.Conv2d(3, 16, 4, 4), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                                 nn.Conv2d(32, dim, 3, 2, 1), nn.ReLU())
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.proj(self.net(x).mean(dim=(2, 3)))


class SegmentAudioEncoder(nn.Module):
    """One log-mel segment [B, 1, segment, M] -> token [B, dim]: a conv covering the whole segment in
    time (and 4 mel bins), a 1x3/2 conv over frequency, flatten, linear (the spectral shape stays)."""

    def __init__(self, dim: int, segment: int, mel_bins: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 16, (segment, 4), (segment, 4)), nn.ReLU(),
                                 nn.Conv2d(16, 32, (1, 3), (1, 2), (0, 1)), nn.ReLU())
        self.proj = nn.Linear(32 * (mel_bins // 8), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.net(x).flatten(1))


class FusionHead(nn.Module):
    """video_tokens [1, T, d] (+ audio_tokens [1, n, d]) -> logits [1, classes]. Temporal position
    embeddings and one self-attention block per modality; MOV-style cross-attention: the video tokens
    query the audio tokens, the audio tokens query the raw video tokens; temporal means, LayerNorm,
    linear. With audio_tokens = 0 it is a video-only head."""

    def __init__(self, dim: int, frames: int, audio_tokens: int, classes: int, heads: int = 4):
        super().__init__()
        self.pos_v, self.self_v = TemporalPosition(frames, dim), Block(dim, heads, 2, 0.0)
        self.audio = audio_tokens > 0
        if self.audio:
            self.pos_a, self.self_a = TemporalPosition(audio_tokens, dim), Block(dim, heads, 2, 0.0)
            self.v_from_a, self.a_from_v = Block(dim, heads, 2, 0.0), Block(dim, heads, 2, 0.0)
        width = dim * (2 if self.audio else 1)
        self.norm, self.out = nn.LayerNorm(width), nn.Linear(width, classes)

    def forward(self, video_tokens: torch.Tensor, audio_tokens: torch.Tensor | None = None) -> torch.Tensor:
        v = self.self_v(self.pos_v(video_tokens))
        if not self.audio:
            return self.out(self.norm(v.mean(1)))
        a = self.self_a(self.pos_a(audio_tokens))
        z = torch.cat([self.v_from_a(v, a).mean(1), self.a_from_v(a, video_tokens).mean(1)], -1)
        return self.out(self.norm(z))


class MovFusion(nn.Module):
    """The whole model as it would be trained: video NCTHW [1, 3, T, H, W], audio NCTM [1, 1, A, M]
    -> logits [1, classes]. Frames and audio segments are encoded on the batch axis."""

    def __init__(self, s: Size, classes: int):
        super().__init__()
        self.segment, self.mel_bins = s.segment, s.mel_bins
        self.frame_encoder = FrameEncoder(s.dim)
        self.audio_encoder = SegmentAudioEncoder(s.dim, s.segment, s.mel_bins)
        self.head = FusionHead(s.dim, s.frames, s.mel_frames // s.segment, classes)

    def video_tokens(self, video: torch.Tensor) -> torch.Tensor:
        return self.frame_encoder(video[0].transpose(0, 1)).unsqueeze(0)  # [1, T, d]

    def audio_tokens(self, audio: torch.Tensor) -> torch.Tensor:
        n = audio.shape[2] // self.segment
        return self.audio_encoder(audio.reshape(n, 1, self.segment, self.mel_bins)).unsqueeze(0)  # [1, n, d]

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.head(self.video_tokens(video), self.audio_tokens(audio))


class RawAudioHead(nn.Module):
    """The head of the mov-raw-audio bundle: cached video tokens plus the window's whole log-mel."""

    def __init__(self, model: MovFusion):
        super().__init__()
        self.model = model

    def forward(self, video_tokens: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.model.head(video_tokens, self.model.audio_tokens(audio))


# ----------------------------------------------------------------------------- the bundles
def mov_preprocessing(s: Size) -> Preprocessing:
    return Preprocessing(
        frames=s.frames, image_size=(s.image, s.image), fps=25, stride=s.stride, hop_frames=s.hop_frames,
        image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225), video_layout="NCTHW",
        audio=Audio(context_s=s.context_s, num_mel_bins=s.mel_bins, layout="NCTM", mean=-4.27, std=4.57,
                    window="hanning", fbank={"htk_compat": True}),  # AST-style fbank settings
    )


def mov_model(s: Size, seed: int) -> MovFusion:
    torch.manual_seed(seed)
    return MovFusion(s, len(LABELS)).eval()


DESCRIPTION = "MOV-style video+audio fusion, RANDOM weights (byo_model.py example)"
NOTE = ("Written by `models/train/examples/byo_model.py`: the weights are random (seeded), so the scores "
        "mean nothing; the bundle shows and tests the path from a PyTorch module to a bundle.")


def export_kwargs() -> dict:
    """The tiny staged MOV bundle as keyword arguments of export_bundle (for the command line)."""
    s = SIZES[64]
    m = mov_model(s, 0)
    return dict(name="byo-mov-tiny-cli", labels=LABELS, preprocessing=mov_preprocessing(s), model=m,
                encoders={"video": m.frame_encoder, "audio": Encoder(m.audio_encoder, segment=s.segment)},
                head=m.head, decoder=Decoder(background="background"), description=DESCRIPTION, readme=NOTE)


def bundles(size: int, seed: int) -> dict[str, dict]:
    """Bundle folder name -> export_bundle keyword arguments."""
    s = SIZES[size]
    m = mov_model(s, seed)
    tag = "tiny" if size == 64 else str(size)
    common = dict(labels=LABELS, preprocessing=mov_preprocessing(s), decoder=Decoder(background="background"),
                  description=DESCRIPTION, readme=NOTE, seed=seed)
    out = {
        "mov-single": dict(common, name=f"byo-mov-{tag}", model=m),
        "mov-staged": dict(common, name=f"byo-mov-{tag}-staged", model=m,
                           encoders={"video": m.frame_encoder, "audio": Encoder(m.audio_encoder, segment=s.segment)},
                           head=m.head),
    }
    if size != 64:
        return out
    out["mov-raw-audio"] = dict(common, name=f"byo-mov-{tag}-raw-audio", model=m,
                                encoders={"video": m.frame_encoder}, head=RawAudioHead(m))
    torch.manual_seed(seed + 1)
    video_only = Preprocessing(frames=8, image_size=(s.image, s.image), fps=25, stride=1, hop_frames=2,
                               image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.25, 0.25), video_layout="NTHWC",
                               video_name="frames")
    out["video-only-nthwc"] = dict(
        name=f"byo-video-{tag}-nthwc", labels=["person", "dog", "car"], preprocessing=video_only,
        encoders={"frames": Encoder(FrameEncoder(s.dim, channels_last=True).eval(), tokens="frame_tokens")},
        head=FusionHead(s.dim, 8, 0, 3).eval(), decoder=Decoder(kind="sigmoid", top_k=3, enter=0.5, exit=0.3),
        description="video-only per-frame CNN + transformer, NTHWC input, RANDOM weights (byo_model.py example)",
        readme=NOTE, seed=seed)
    return out


# ----------------------------------------------------------------------------- self-check
def independent_inputs(bundle: Path) -> dict[str, np.ndarray]:
    """The golden inputs recomputed from golden.json's source by a second implementation of the
    spec's preprocessing (torch for the frames, the spec's timing formula for the audio span),
    reading the settings from model.toml."""
    import tomllib

    m = tomllib.loads((bundle / "model.toml").read_text())
    g = json.loads((bundle / "golden" / "golden.json").read_text())
    src, gdir, w = g["source"], bundle / "golden", m["window"]
    frames = np.fromfile(gdir / src["frames"]["file"], np.uint8).reshape(src["frames"]["shape"])
    out = {}
    for spec in m["inputs"]:
        if spec["frontend"] == "image":
            x = torch.from_numpy(frames[:: w.get("stride", 1)].copy()).float() / 255.0  # [T, H, W, 3]
            x = (x - torch.tensor(spec["mean"])) / torch.tensor(spec["std"])
            x = {"NTCHW": x.permute(0, 3, 1, 2), "NCTHW": x.permute(3, 0, 1, 2), "NTHWC": x}[spec["layout"]]
            out[spec["name"]] = x.unsqueeze(0).numpy()
        else:
            fb = spec["fbank"]
            rate, shift_s, length_s = fb["sample_rate"], fb["frame_shift_ms"] / 1000, fb["frame_length_ms"] / 1000
            t_mel = round(spec["context_s"] / shift_s)
            t_end = src["frames_t0_s"] + ((w["frames"] - 1) * w.get("stride", 1) + 1) / w["fps"]
            audio = np.fromfile(gdir / src["audio"]["file"], "<f4")
            first = round((t_end - t_mel * shift_s - src["audio_t0_s"]) * rate)
            last = round((t_end - shift_s + length_s - src["audio_t0_s"]) * rate)
            assert (first, last) == (0, len(audio)), f"{bundle}: source audio is not exactly the window's span"
            feats = export.load_kaldi().fbank(
                torch.from_numpy(audio).unsqueeze(0), sample_frequency=float(rate), frame_length=fb["frame_length_ms"],
                frame_shift=fb["frame_shift_ms"], num_mel_bins=fb["num_mel_bins"], window_type=fb["window"],
                htk_compat=fb.get("htk_compat", False), dither=0.0, snip_edges=True)
            x = (feats - spec["mean"][0]) / spec["std"][0]
            out[spec["name"]] = x.reshape(spec["shape"]).numpy()
    return out


def self_check(root: Path, names: list[str]) -> None:
    import onnx

    outputs = {}
    for name in names:
        bundle = root / name
        res = export.check_bundle(bundle)
        g = json.loads((bundle / "golden" / "golden.json").read_text())
        for n, x in independent_inputs(bundle).items():
            e = g["inputs"][n]
            want = np.fromfile(bundle / "golden" / e["file"], "<f4").reshape(e["shape"])
            assert x.dtype == np.float32 and np.array_equal(x, want), \
                f"{name}: golden input {n} != independent reference (max diff {np.abs(x - want).max():.3g})"
        ops = set()
        for p in [bundle / "model.onnx", *sorted((bundle / "stages").glob("*.onnx"))]:
            model = onnx.load(str(p))
            onnx.checker.check_model(model)
            ops |= {node.op_type for node in model.graph.node}
        out = g["outputs"]["logits"]
        outputs[name] = np.fromfile(bundle / "golden" / out["file"], "<f4")
        diffs = ", ".join(f"{k} {v:.2g}" for k, v in res.items() if k.endswith("max_diff"))
        print(f"  ok {name}: inputs == independent reference (bitwise); onnxruntime vs goldens: {diffs}")
        print(f"     ops: {' '.join(sorted(ops))}")
    movs = [n for n in names if n.startswith("mov-")]
    spread = max(float(np.abs(outputs[n] - outputs[movs[0]]).max()) for n in movs)
    assert spread <= export.TOLERANCE, f"MOV bundles disagree by {spread:.3g}"
    print(f"  ok {', '.join(movs)}: same scores (max diff {spread:.2g}): "
          f"[{', '.join(f'{v:.4f}' for v in outputs[movs[0]])}]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, choices=sorted(SIZES), default=64, help="frame side: 64 (tiny) or 224")
    ap.add_argument("--out", type=Path, default=REPO / "target" / "byo", help="bundles go to OUT/tiny or OUT/224")
    ap.add_argument("--avaction", help="avaction binary: run `avaction verify` on each bundle (default: env AVACTION)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    avaction = a.avaction or os.environ.get("AVACTION") or False
    root = a.out / ("tiny" if a.size == 64 else str(a.size))
    t0 = time.perf_counter()
    failed = []
    todo = bundles(a.size, a.seed)
    for name, kwargs in todo.items():
        t = time.perf_counter()
        try:
            rep = export_bundle(root / name, overwrite=True, avaction=avaction, **kwargs)
        except export.VerifyError as exc:
            print(f"{name}: VERIFY FAILED\n{exc}")
            failed.append(name)
            continue
        mb = sum(rep["onnx_bytes"].values()) / 1e6
        print(f"  {name}: {rep['params']:,} params, {mb:.2f} MB of ONNX "
              f"({', '.join(rep['onnx_bytes'])}), {time.perf_counter() - t:.1f} s")
    t_export = time.perf_counter() - t0
    print(f"self-check of {export.rel(root)}:")
    self_check(root, list(todo))
    print(f"done: {len(todo)} bundles in {export.rel(root)} (export {t_export:.1f} s, total {time.perf_counter() - t0:.1f} s)")
    if not avaction:
        print("avaction verify: not run here (--avaction PATH or env AVACTION runs it on each bundle)")
    if failed:
        print(f"avaction verify FAILED for: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
