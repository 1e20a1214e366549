"""Bring your own model: a PyTorch `nn.Module` -> an avaction model bundle (manifest version 2).

Library use (see models/train/examples/byo_model.py for a complete example):

    from avaction_train.export import Audio, Decoder, Encoder, Preprocessing, export_bundle

    prep = Preprocessing(frames=8, fps=25, stride=2, hop_frames=4, image_size=(224, 224),
                         video_layout="NCTHW",
                         audio=Audio(context_s=2.0, num_mel_bins=128, layout="NCTM", mean=-4.27, std=4.57))
    export_bundle("target/byo/mine", "mine", ["background", "wave", "clap"], prep, model=my_module)
    # staged: per-frame / per-segment encoders + a head (model= optional: the single graph is then
    # the encoders and head composed in torch; given, staged == single is checked)
    export_bundle("target/byo/mine-staged", "mine", labels, prep, model=my_module,
                  encoders={"video": frame_encoder, "audio": Encoder(segment_encoder, segment=8)},
                  head=my_head)

Command line (the factory returns an nn.Module, or a dict of export_bundle's keyword arguments):

    python -m avaction_train.export --model my_pkg.my_mod:build --preprocessing prep.json \
        --labels labels.txt --name mine --out target/byo/mine [--avaction target/debug/avaction]
    python -m avaction_train.export --check target/byo/mine     # re-check a written bundle

What the model sees (the contract with the runtime: model.toml version 2, issue 16, parsed by
runtime/model/manifest.rs; its keys `stride`, `layout`, `context_s`, `[audio] downmix`,
`head_inputs`, `graph_input`, `graph_output` are written here):

  * inputs, in this order (the single graph's inputs are bound by position and checked by name):
    - video (`Preprocessing.video_name`, frontend "image"): `frames` RGB frames, every `stride`-th
      captured frame at `fps`, each `(u8 / 255 - mean[c]) / std[c]` (float32), in `video_layout`:
      "NTCHW" [1, T, 3, H, W] (default), "NCTHW" [1, 3, T, H, W] or "NTHWC" [1, T, H, W, 3].
      Frames are captured at the model size (no `[video]` resize/crop table is written).
    - audio (optional, `Audio.name`, frontend "logmel"): Kaldi log-mel frames of mono audio
      (`torchaudio.compliance.kaldi.fbank` with dither 0, snip_edges, samples in [-1, 1] unscaled),
      `(x - mean) / std`, in `Audio.layout`: "TM" [T, M] (no batch), "NTM" [1, T, M] (default) or
      "NCTM" [1, 1, T, M]. T = context_s / frame_shift; the audio ENDS at the window's end (the end
      of its last frame): mel frame j starts at t_end - (T - j) * shift and is frame_length long.
    - optical flow: NOT supported. Its reference would need OpenCV's DIS optical flow (the
      runtime's flow frontend), which this package does not have; write such bundles by hand.
  * one output (`output_name`, default "logits"): class scores [1, len(labels)], read by the
    `[decoder]` (softmax or sigmoid). Open-vocabulary outputs (`[vocabulary]`) are not written here.
  * staged (optional): an image encoder takes ONE frame, [1, 3, H, W] (NTCHW, NCTHW) or
    [1, H, W, 3] (NTHWC), and returns [1, dim]; a log-mel encoder takes ONE segment of `segment`
    mel frames in the input's rank ([segment, M], [1, segment, M] or [1, 1, segment, M]) and
    returns [1, dim]. The head takes, in this order, each encoder's tokens [1, n, dim] (n = T frames,
    or T / segment) in input order, then the inputs that have no encoder whole ("raw inputs").
    To compose the single graph the exporter runs an encoder on all frames / segments of a window
    at once (stacked on the batch axis, except layout TM): encoders must treat batch items
    independently, which staged == single checks.

Written into `out_dir`:
  model.onnx                 the single graph (opset 17, legacy TorchScript exporter, fixed shapes, batch 1)
  stages/*.onnx              (staged) `<input>_encoder.onnx` per encoder and `head.onnx`
  model.toml                 manifest_version = 2: window (with stride), [audio] downmix, [[inputs]] with
                             layout / context_s / fbank, [output], [stages] with head_inputs,
                             graph_input, graph_output, [decoder]
  labels.txt                 one label per line, output order
  golden/golden.json + *.bin "inputs" (the normalised model inputs), "stages" (tokens by head input),
                             "outputs", "tolerance", and "source": u8 frames [S, H, W, 3] and mono f32
                             audio from which `reference_inputs` computes "inputs" exactly (seeded
                             synthetic data: a moving square and a tone with a noise burst)
  README.md                  what the bundle is, its inputs, and the checks below
The bundle is built in `.<name>.partial` next to `out_dir` and moved there once every check passed.

Checks (each failure raises ExportError): onnxruntime (1 thread) runs every graph and matches
PyTorch within `tolerance` (1e-4) on the golden window and on one random window; staged (encoders per
frame / segment, then the head) matches the single graph; then `check_bundle` re-reads the written
files: the manifest parses back to the same preprocessing, the golden inputs equal the reference
preprocessing of the golden source bit for bit, and the ONNX files reproduce the golden outputs
and tokens. Finally `avaction verify <out_dir>` runs if an avaction binary is given
(`avaction=` / `--avaction PATH` / env AVACTION); without one it is skipped with a note, and its
failure is reported (and raised as VerifyError) but leaves the bundle in place.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import types
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .common import rel

VIDEO_LAYOUTS = ("NTCHW", "NCTHW", "NTHWC")
AUDIO_LAYOUTS = ("TM", "NTM", "NCTM")
DOWNMIXES = ("mean", "first", "ffmpeg", "ffmpeg-float")
WINDOWS = ("hamming", "hanning", "povey", "rectangular", "blackman")
# [inputs.fbank] keys besides the ones Audio has as fields, with torchaudio's kaldi.fbank names.
FBANK_OPTIONS = {
    "preemphasis": "preemphasis_coefficient",
    "remove_dc_offset": "remove_dc_offset",
    "low_freq": "low_freq",
    "high_freq": "high_freq",
    "round_to_power_of_two": "round_to_power_of_two",
    "use_energy": "use_energy",
    "energy_floor": "energy_floor",
    "raw_energy": "raw_energy",
    "htk_compat": "htk_compat",
    "use_log_fbank": "use_log_fbank",
    "use_power": "use_power",
}
FLOW_UNSUPPORTED = (
    "optical-flow inputs are not supported by the exporter: the reference preprocessing of the goldens "
    "would need OpenCV's DIS optical flow (the runtime's flow frontend), which avaction_train does not "
    "have. Export an image (+ log-mel) model, or write a flow bundle's model.toml and goldens by hand "
    "(see models/cavnet-small)"
)
TOLERANCE = 1e-4  # onnxruntime vs torch, staged vs single, and golden.json "tolerance"
SOURCE_TOLERANCE = 1e-3  # golden.json "source.tolerance": runtime frontends + model, end to end


class ExportError(Exception):
    """A model, preprocessing description or check that does not fit the bundle format."""


class VerifyError(ExportError):
    """`avaction verify` ran and failed (the bundle is written; the message has its output)."""


# ----------------------------------------------------------------------------- descriptions
@dataclass
class Audio:
    """The log-mel input: Kaldi fbank settings, how much audio a window sees, normalisation and
    layout. `fbank` holds any other [inputs.fbank] key of the manifest (`preemphasis`, `low_freq`,
    `high_freq`, `htk_compat`, `use_energy`, ...; see runtime/frontend/logmel.rs) with its
    manifest name; absent keys keep torchaudio's defaults, which the runtime shares."""

    context_s: float  # seconds of audio per window, ending at the window's end; a multiple of the shift
    mean: float = 0.0  # subtracted from every log-mel value
    std: float = 1.0  # then divided by
    layout: str = "NTM"  # "TM" [T, M] | "NTM" [1, T, M] | "NCTM" [1, 1, T, M]
    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_shift_ms: float = 10.0
    frame_length_ms: float = 25.0
    window: str = "hamming"  # hamming | hanning | povey | rectangular | blackman
    downmix: str = "mean"  # multi-channel -> mono: mean | first | ffmpeg | ffmpeg-float
    fbank: dict = field(default_factory=dict)
    name: str = "audio"  # the ONNX input name

    def samples(self, ms: float) -> int:
        """Samples in `ms` milliseconds, truncated as torchaudio does (int(rate * ms * 0.001))."""
        return int(self.sample_rate * ms * 0.001)

    @property
    def shift(self) -> int:
        return self.samples(self.frame_shift_ms)

    @property
    def frame_length(self) -> int:
        return self.samples(self.frame_length_ms)

    @property
    def mel_frames(self) -> int:
        """T = context_s / frame shift."""
        return round(Fraction(repr(float(self.context_s))) * 1000 / Fraction(repr(float(self.frame_shift_ms))))

    @property
    def features(self) -> int:
        """Values per mel frame: num_mel_bins, plus one with use_energy."""
        return self.num_mel_bins + int(bool(self.fbank.get("use_energy", False)))

    def shape(self) -> list[int]:
        t, m = self.mel_frames, self.features
        return {"TM": [t, m], "NTM": [1, t, m], "NCTM": [1, 1, t, m]}[self.layout]

    def segment_shape(self, segment: int) -> list[int]:
        """A log-mel encoder's input: the input's rank with T = segment."""
        return {"TM": [segment, self.features], "NTM": [1, segment, self.features],
                "NCTM": [1, 1, segment, self.features]}[self.layout]

    def check(self) -> None:
        if self.layout not in AUDIO_LAYOUTS:
            raise ExportError(f"audio layout {self.layout!r}: expected one of {AUDIO_LAYOUTS}")
        if self.window not in WINDOWS:
            raise ExportError(f"audio window {self.window!r}: expected one of {WINDOWS}")
        if self.downmix not in DOWNMIXES:
            raise ExportError(f"audio downmix {self.downmix!r}: expected one of {DOWNMIXES}")
        unknown = sorted(set(self.fbank) - set(FBANK_OPTIONS))
        if unknown:
            raise ExportError(f"audio fbank: unknown keys {unknown} (known: {sorted(FBANK_OPTIONS)})")
        exact = Fraction(repr(float(self.frame_shift_ms))) * self.sample_rate / 1000
        if exact.denominator != 1 or exact <= 0:
            raise ExportError(f"audio frame_shift_ms = {self.frame_shift_ms}: must be a positive whole number of "
                              f"samples at {self.sample_rate} Hz (so that the window's audio starts on a sample)")
        if self.frame_length < 1:
            raise ExportError(f"audio frame_length_ms = {self.frame_length_ms}: less than one sample")
        t = Fraction(repr(float(self.context_s))) * 1000 / Fraction(repr(float(self.frame_shift_ms)))
        if t.denominator != 1 or t < 1:
            raise ExportError(f"audio context_s = {self.context_s}: must be a positive multiple of the "
                              f"frame shift ({self.frame_shift_ms} ms)")
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std >= 1e-6):
            raise ExportError(f"audio mean/std = {self.mean}/{self.std}: need finite values and std >= 1e-6")


@dataclass
class Preprocessing:
    """Everything the runtime does before the model: the window (frames, rate, stride, hop), the
    image normalisation and layout, and the optional log-mel input (`audio`, None = video-only).
    `flow` exists only to say that flow inputs are not supported (True raises ExportError)."""

    frames: int  # T: frames the model sees
    image_size: tuple = (224, 224)  # (H, W)
    fps: int = 25  # capture rate
    stride: int = 1  # the model sees every stride-th captured frame
    hop_frames: int = 1  # captured frames between two windows
    image_mean: tuple = (0.485, 0.456, 0.406)
    image_std: tuple = (0.229, 0.224, 0.225)
    video_layout: str = "NTCHW"  # "NTCHW" | "NCTHW" | "NTHWC"
    video_name: str = "video"  # the ONNX input name
    audio: Audio | None = None
    audio_optional: bool = False  # the model may run with silence when no microphone is there
    flow: bool = False  # not supported

    def __post_init__(self):
        self.image_size = tuple(int(v) for v in self.image_size)
        self.image_mean = tuple(float(v) for v in self.image_mean)
        self.image_std = tuple(float(v) for v in self.image_std)
        if isinstance(self.audio, dict):
            self.audio = Audio(**self.audio)

    @property
    def captured_frames(self) -> int:
        """S = (frames - 1) * stride + 1: the captured frames one window spans."""
        return (self.frames - 1) * self.stride + 1

    def video_shape(self) -> list[int]:
        t, (h, w) = self.frames, self.image_size
        return {"NTCHW": [1, t, 3, h, w], "NCTHW": [1, 3, t, h, w], "NTHWC": [1, t, h, w, 3]}[self.video_layout]

    def frame_shape(self) -> list[int]:
        """An image encoder's input: one frame."""
        h, w = self.image_size
        return [1, h, w, 3] if self.video_layout == "NTHWC" else [1, 3, h, w]

    def is_audio(self, name: str) -> bool:
        return self.audio is not None and name == self.audio.name

    def input_names(self) -> list[str]:
        return [self.video_name] + ([self.audio.name] if self.audio else [])

    def check(self) -> None:
        if self.flow:
            raise ExportError(FLOW_UNSUPPORTED)
        if self.frames < 2 or self.fps < 1 or self.stride < 1 or self.hop_frames < 1:
            raise ExportError(f"window: need frames >= 2 and fps, stride, hop_frames >= 1 (got {self})")
        if self.hop_frames > self.captured_frames:
            raise ExportError(f"window: hop_frames {self.hop_frames} is more than the {self.captured_frames} "
                              "captured frames a window spans (frames would be skipped)")
        if self.video_layout not in VIDEO_LAYOUTS:
            raise ExportError(f"video layout {self.video_layout!r}: expected one of {VIDEO_LAYOUTS}")
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ExportError(f"image_size {self.image_size}: need (H, W), each >= 16")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) < 1e-6:
            raise ExportError("image_mean / image_std: need 3 values each (R, G, B), std >= 1e-6")
        if self.audio is not None:
            self.audio.check()
            if self.audio.name == self.video_name:
                raise ExportError(f"video and audio inputs are both named {self.video_name!r}")
        elif self.audio_optional:
            raise ExportError("audio_optional = True needs an audio input")

    @staticmethod
    def from_manifest(m: dict) -> "Preprocessing":
        """The description a (version 2) model.toml, parsed with tomllib, gives back."""
        if "video" in m:
            raise ExportError("a [video] table (capture resize/crop) is not produced by this exporter")
        video = next(i for i in m["inputs"] if i["frontend"] == "image")
        layout = video.get("layout", "NTCHW")
        shape = video["shape"]
        h, w = (shape[2], shape[3]) if layout == "NTHWC" else (shape[3], shape[4])
        win = m["window"]
        audio = None
        mel = next((i for i in m["inputs"] if i["frontend"] == "logmel"), None)
        if mel is not None:
            fb = dict(mel.get("fbank", {}))
            main = {k: fb.pop(k) for k in ("sample_rate", "num_mel_bins", "frame_shift_ms", "frame_length_ms", "window")
                    if k in fb}
            audio = Audio(context_s=mel["context_s"], mean=mel["mean"][0], std=mel["std"][0],
                          layout=mel.get("layout", "NTM"), downmix=m.get("audio", {}).get("downmix", "mean"),
                          fbank=fb, name=mel["name"], **main)
        return Preprocessing(frames=win["frames"], image_size=(h, w), fps=win["fps"], stride=win.get("stride", 1),
                             hop_frames=win["hop_frames"], image_mean=video["mean"], image_std=video["std"],
                             video_layout=layout, video_name=video["name"], audio=audio,
                             audio_optional=win.get("audio_optional", False))


@dataclass
class Decoder:
    """The `[decoder]` table: how the runtime turns scores into labels and events. `kind` is
    "softmax" (single-label classifier) or "sigmoid" (multi-label). `top_k` None = min(3, classes)."""

    kind: str = "softmax"
    background: str | None = None  # a label that never becomes an event
    top_k: int | None = None  # labels reported per prediction
    smoothing: int = 3  # moving average over windows
    enter: float = 0.6  # smoothed score at which an event starts
    exit: float = 0.4  # ... and below which it ends
    min_duration_s: float = 0.2

    def check(self, labels: list[str]) -> None:
        if self.kind not in ("softmax", "sigmoid"):
            raise ExportError(f"decoder kind {self.kind!r}: expected 'softmax' or 'sigmoid'")
        if self.background is not None and self.background not in labels:
            raise ExportError(f"decoder background {self.background!r} is not one of the labels")
        if not (0.0 <= self.exit <= self.enter <= 1.0):
            raise ExportError(f"decoder: need 0 <= exit <= enter <= 1 (got {self.enter}, {self.exit})")
        if not (1 <= self.smoothing <= 1000 and 0.0 <= self.min_duration_s <= 3600.0):
            raise ExportError("decoder: need 1 <= smoothing <= 1000 and 0 <= min_duration_s <= 3600")
        if self.top_k is not None and not 1 <= self.top_k <= min(1000, len(labels)):
            raise ExportError(f"decoder top_k {self.top_k}: need 1..={min(1000, len(labels))}")


@dataclass
class Encoder:
    """A staged encoder: `module` turns one frame (image input) or one segment of `segment` mel
    frames (log-mel input) into a token [1, dim]. `tokens` names the head input its tokens fill
    (default "<input>_tokens"). A bare nn.Module in `encoders` means Encoder(module)."""

    module: nn.Module
    segment: int | None = None
    tokens: str | None = None


# ----------------------------------------------------------------------------- reference preprocessing
def load_kaldi():
    """torchaudio.compliance.kaldi (pure torch). If torchaudio's compiled extension refuses to load
    (e.g. built for another torch), the module is loaded from its source file instead, with the
    same code: the pattern of tests/golden/make_logmel_goldens.py. torchaudio may be installed
    without its dependencies (`pip install --no-deps torchaudio`)."""
    try:
        import torchaudio.compliance.kaldi as kaldi

        return kaldi
    except Exception as exc:  # noqa: BLE001 - any import failure of the extension
        spec = importlib.util.find_spec("torchaudio")
        if spec is None or spec.submodule_search_locations is None:
            raise ExportError("the log-mel reference needs torchaudio (its compliance/kaldi.py): "
                              "pip install --no-deps torchaudio") from exc
        print(f"torchaudio import failed ({exc}); loading compliance/kaldi.py directly", file=sys.stderr)
        path = Path(list(spec.submodule_search_locations)[0]) / "compliance" / "kaldi.py"
        sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # only mfcc uses it
        kspec = importlib.util.spec_from_file_location("kaldi_from_source", path)
        kaldi = importlib.util.module_from_spec(kspec)
        kspec.loader.exec_module(kaldi)
        return kaldi


def video_input(frames: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Captured u8 frames [S, H, W, 3] -> the normalised video input in its layout (float32):
    every stride-th frame, px / 255, (x - mean[c]) / std[c], all in float32 as the runtime does."""
    s, h, w = prep.captured_frames, *prep.image_size
    if frames.dtype != np.uint8 or frames.shape != (s, h, w, 3):
        raise ExportError(f"source frames: need uint8 [{s}, {h}, {w}, 3], got {frames.dtype} {list(frames.shape)}")
    x = frames[:: prep.stride].astype(np.float32) / np.float32(255.0)  # [T, H, W, 3]
    x = (x - np.array(prep.image_mean, np.float32)) / np.array(prep.image_std, np.float32)
    layout = {"NTCHW": (0, 3, 1, 2), "NCTHW": (3, 0, 1, 2), "NTHWC": (0, 1, 2, 3)}[prep.video_layout]
    return np.ascontiguousarray(x.transpose(layout)[None], dtype=np.float32)


def fbank(samples: np.ndarray, audio: Audio) -> np.ndarray:
    """Kaldi log-mel [frames, features] of mono float32 samples in [-1, 1] (not scaled),
    torchaudio.compliance.kaldi.fbank with dither 0 and snip_edges, the call the runtime's log-mel is
    tested against (tests/golden/make_logmel_goldens.py)."""
    kwargs = {FBANK_OPTIONS[k]: v for k, v in audio.fbank.items()}
    feats = load_kaldi().fbank(
        torch.from_numpy(np.ascontiguousarray(samples, np.float32)).unsqueeze(0),
        sample_frequency=float(audio.sample_rate), frame_length=float(audio.frame_length_ms),
        frame_shift=float(audio.frame_shift_ms), num_mel_bins=audio.num_mel_bins, window_type=audio.window,
        dither=0.0, snip_edges=True, **kwargs)
    return feats.numpy().astype(np.float32)


def logmel_input(samples: np.ndarray, audio: Audio) -> np.ndarray:
    """The window's audio, exactly samples [t_end - T*shift, t_end - shift + frame_length), i.e.
    (T-1)*shift + frame_length samples -> T log-mel frames -> (x - mean) / std -> layout (float32)."""
    n = (audio.mel_frames - 1) * audio.shift + audio.frame_length
    if samples.dtype != np.float32 or samples.shape != (n,):
        raise ExportError(f"source audio: need float32 [{n}], got {samples.dtype} {list(samples.shape)}")
    x = fbank(samples, audio)
    if x.shape != (audio.mel_frames, audio.features):
        raise ExportError(f"fbank gave {list(x.shape)}, expected [{audio.mel_frames}, {audio.features}]")
    x = (x - np.float32(audio.mean)) / np.float32(audio.std)
    return np.ascontiguousarray(x.reshape(audio.shape()), dtype=np.float32)


def reference_inputs(prep: Preprocessing, frames: np.ndarray, samples: np.ndarray | None) -> dict:
    """The model inputs (by input name, in input order) computed from the raw source."""
    out = {prep.video_name: video_input(frames, prep)}
    if prep.audio is not None:
        out[prep.audio.name] = logmel_input(samples, prep.audio)
    return out


@dataclass
class SourceTiming:
    """Where the golden source sits on the timeline. The window spans S captured frames, frame k at
    frames_t0_s + k / fps, and ends at t_end = frames_t0_s + S / fps. The audio is the window's
    samples exactly: from t_end - T * shift, (T - 1) * shift + frame_length samples. t_end is put on
    a sample boundary, at or after both S / fps and T * shift, so that nothing is negative."""

    frames_t0_s: float
    t_end_s: float
    audio_t0_s: float | None
    audio_samples: int

    @staticmethod
    def of(prep: Preprocessing) -> "SourceTiming":
        span = Fraction(prep.captured_frames, prep.fps)
        a = prep.audio
        if a is None:
            return SourceTiming(0.0, float(span), None, 0)
        end_samples = math.ceil(max(span * a.sample_rate, Fraction(a.mel_frames * a.shift)))
        t_end = Fraction(end_samples, a.sample_rate)
        start = end_samples - a.mel_frames * a.shift
        return SourceTiming(float(t_end - span), float(t_end), float(Fraction(start, a.sample_rate)),
                            (a.mel_frames - 1) * a.shift + a.frame_length)


def synthetic_source(prep: Preprocessing, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Seeded raw data with some structure: a coloured square sliding across a shaded background
    (u8 [S, H, W, 3]) and, with audio, a gliding tone with a harmonic, a noise burst when the square
    crosses the middle, and a little noise (f32 mono in [-1, 1])."""
    rng = np.random.default_rng(seed)
    s, (h, w) = prep.captured_frames, prep.image_size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([40 + 50 * yy / h, 50 + 30 * xx / w, 90 - 40 * yy / h], -1)
    side = max(4, min(h, w) // 4)
    color = rng.integers(150, 256, 3)
    y0 = int(rng.integers(0, h - side))
    left_to_right = bool(rng.integers(0, 2))
    frames = np.empty((s, h, w, 3), np.uint8)
    for k in range(s):
        f = k / max(s - 1, 1)
        x0 = round((f if left_to_right else 1 - f) * (w - side))
        img = base + rng.normal(0.0, 3.0, base.shape)
        img[y0 : y0 + side, x0 : x0 + side] = color
        frames[k] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if prep.audio is None:
        return frames, None
    a, timing = prep.audio, SourceTiming.of(prep)
    t = timing.audio_t0_s + np.arange(timing.audio_samples) / a.sample_rate
    f0 = rng.uniform(200.0, 600.0)
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.3 * (t - t[0]))) / a.sample_rate
    x = 0.25 * np.sin(phase) + 0.08 * np.sin(2 * phase + 0.5)
    t_mid = timing.frames_t0_s + (s / 2) / prep.fps
    burst = np.abs(t - t_mid) < 0.03
    x[burst] += rng.normal(0.0, 0.3, int(burst.sum()))
    x += rng.normal(0.0, 0.005, x.shape)
    return frames, np.clip(x, -1.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- staged composition
def _frames_as_batch(x: torch.Tensor, layout: str) -> torch.Tensor:
    """The video input -> its T frames on the batch axis, each as an image encoder sees it."""
    if layout == "NCTHW":
        return x[0].transpose(0, 1)  # [T, C, H, W]
    return x[0]  # NTCHW: [T, C, H, W]; NTHWC: [T, H, W, C]


class ComposedModel(nn.Module):
    """The single graph of a staged model: each encoder on every frame / segment of the window,
    then the head on [tokens of each encoder..., raw inputs...]."""

    def __init__(self, prep: Preprocessing, encoders: dict[str, Encoder], head: nn.Module):
        super().__init__()
        self.prep = prep
        self.names = prep.input_names()
        self.enc_names = list(encoders)
        self.encoders = nn.ModuleList(e.module for e in encoders.values())
        self.segments = [e.segment for e in encoders.values()]
        self.head = head

    def tokens(self, name: str, module: nn.Module, segment: int | None, x: torch.Tensor) -> torch.Tensor:
        if name == self.prep.video_name:
            return module(_frames_as_batch(x, self.prep.video_layout)).unsqueeze(0)
        a = self.prep.audio
        n = a.mel_frames // segment
        if a.layout == "TM":  # an encoder on [segment, M] has no batch axis: one call per segment
            return torch.stack([module(x[i * segment : (i + 1) * segment])[0] for i in range(n)]).unsqueeze(0)
        shape = [n, segment, a.features] if a.layout == "NTM" else [n, 1, segment, a.features]
        return module(x.reshape(shape)).unsqueeze(0)

    def forward(self, *inputs):
        x = dict(zip(self.names, inputs))
        args = [self.tokens(n, m, s, x[n]) for n, m, s in zip(self.enc_names, self.encoders, self.segments)]
        args += [x[n] for n in self.names if n not in self.enc_names]
        return self.head(*args)


# ----------------------------------------------------------------------------- ONNX helpers
def onnx_export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], opset: int,
                batch_axis: bool = False) -> None:
    """Legacy TorchScript exporter (dynamo=False), constant folding (which folds BatchNorm into
    the convolutions), fixed shapes; with `batch_axis`, axis 0 of every input and output is free."""
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {n: {0: "n"} for n in inputs + outputs} if batch_axis else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(module.eval(), args, str(path), input_names=inputs, output_names=outputs,
                          opset_version=opset, do_constant_folding=True, dynamo=False, dynamic_axes=axes)


def session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def max_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return math.inf
    return float(np.abs(a - b).max()) if a.size else 0.0


def _run(module: nn.Module, args) -> np.ndarray:
    with torch.no_grad():
        out = module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in args])
    if not isinstance(out, torch.Tensor):
        raise ExportError(f"{type(module).__name__} must return one tensor (the scores), got {type(out).__name__}")
    return out.numpy()


def staged_items(prep: Preprocessing, name: str, x: np.ndarray, segment: int | None) -> list[np.ndarray]:
    """What a staged encoder is fed for one window: each frame, or each segment of mel frames."""
    if name == prep.video_name:
        if prep.video_layout == "NCTHW":
            return [np.ascontiguousarray(x[:, :, t]) for t in range(prep.frames)]
        return [np.ascontiguousarray(x[:, t]) for t in range(prep.frames)]
    a = prep.audio
    axis = {"TM": 0, "NTM": 1, "NCTM": 2}[a.layout]
    n = a.mel_frames // segment
    return [np.ascontiguousarray(np.take(x, range(i * segment, (i + 1) * segment), axis=axis)) for i in range(n)]


# ----------------------------------------------------------------------------- manifest, README
def _s(text: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML)."""
    return json.dumps(str(text), ensure_ascii=False)


def _f(value: float) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise ExportError(f"non-finite value {value} in the manifest")
    return repr(value)


def _fl(values) -> str:
    return "[" + ", ".join(_f(v) for v in values) + "]"


def _il(values) -> str:
    return "[" + ", ".join(str(int(v)) for v in values) + "]"


def manifest_toml(name: str, version: str, description: str, prep: Preprocessing, output_name: str,
                  classes: int, decoder: Decoder, stages: list[dict] | None, head_inputs: list[str] | None) -> str:
    """model.toml, manifest_version = 2 (runtime/model/manifest.rs). `stages`: one dict per
    encoder (input, graph, tokens, dim, segment, graph_input, graph_output)."""
    span = prep.captured_frames
    lines = [
        f"# {name}: {description}" if description else f"# {name}",
        "# Written by avaction_train.export (models/train) from a PyTorch module; see README.md.",
        "manifest_version = 2",
        f"name = {_s(name)}",
        f"version = {_s(version)}",
        f"description = {_s(description)}",
        'graph = "model.onnx"',
        'labels = "labels.txt"',
        "",
        "[window]",
        f"frames = {prep.frames}        # of {span} captured frames (stride {prep.stride}): "
        f"{span / prep.fps:.3g} s at {prep.fps} fps",
        f"fps = {prep.fps}",
        f"stride = {prep.stride}",
        f"hop_frames = {prep.hop_frames}    # captured frames between two windows "
        f"({prep.fps / prep.hop_frames:.3g} windows/s)",
        f"audio_optional = {str(prep.audio_optional).lower()}",
    ]
    if prep.audio is not None:
        lines += ["", "[audio]", f"downmix = {_s(prep.audio.downmix)}"]
    lines += [
        "",
        "[[inputs]]",
        f"name = {_s(prep.video_name)}",
        'frontend = "image"',
        f"layout = {_s(prep.video_layout)}",
        f"shape = {_il(prep.video_shape())}",
        f"mean = {_fl(prep.image_mean)}",
        f"std = {_fl(prep.image_std)}",
    ]
    a = prep.audio
    if a is not None:
        lines += [
            "",
            "[[inputs]]",
            f"name = {_s(a.name)}",
            'frontend = "logmel"',
            f"layout = {_s(a.layout)}",
            f"shape = {_il(a.shape())}",
            f"context_s = {_f(a.context_s)}    # {a.mel_frames} mel frames ending at the window's end",
            f"mean = {_fl([a.mean])}",
            f"std = {_fl([a.std])}",
            "",
            "[inputs.fbank]",
            f"sample_rate = {a.sample_rate}",
            f"frame_length_ms = {_f(a.frame_length_ms)}",
            f"frame_shift_ms = {_f(a.frame_shift_ms)}",
            f"num_mel_bins = {a.num_mel_bins}",
            f"window = {_s(a.window)}",
        ]
        for k, v in a.fbank.items():
            lines.append(f"{k} = {str(v).lower() if isinstance(v, bool) else _f(v)}")
    lines += ["", "[output]", f"name = {_s(output_name)}", f"shape = {_il([1, classes])}"]
    if stages:
        lines += [
            "",
            "# Staged execution: the encoders run once per new frame / segment of mel frames, their",
            "# tokens are kept, the head runs on the window's tokens (and raw inputs) every hop.",
            "[stages]",
            'head = "stages/head.onnx"',
            "head_inputs = [" + ", ".join(_s(h) for h in head_inputs) + "]",
        ]
        for e in stages:
            lines += ["", "[[stages.encoders]]", f"input = {_s(e['input'])}", f"graph = {_s(e['graph'])}",
                      f"tokens = {_s(e['tokens'])}", f"dim = {e['dim']}"]
            if e["segment"] is not None:
                lines.append(f"segment = {e['segment']}")
            lines += [f"graph_input = {_s(e['graph_input'])}", f"graph_output = {_s(e['graph_output'])}"]
    lines += ["", "[decoder]", f"kind = {_s(decoder.kind)}"]
    if decoder.background is not None:
        lines.append(f"background = {_s(decoder.background)}")
    lines += [f"top_k = {decoder.top_k}", f"smoothing = {decoder.smoothing}", f"enter = {_f(decoder.enter)}",
              f"exit = {_f(decoder.exit)}", f"min_duration_s = {_f(decoder.min_duration_s)}", ""]
    return "\n".join(lines)


def bundle_readme(name: str, description: str, prep: Preprocessing, labels: list[str], output_name: str,
                  stages: list[dict] | None, head_inputs: list[str] | None, report: dict, extra: str) -> str:
    a = prep.audio
    rows = [f"| `{prep.video_name}` | image | {prep.video_layout} | `{prep.video_shape()}` | captured frames "
            f"0, {prep.stride}, {2 * prep.stride}, ... (stride {prep.stride}) at {prep.fps} fps, `(u8/255 - mean)/std`, "
            f"mean {list(prep.image_mean)}, std {list(prep.image_std)} |"]
    if a is not None:
        rows.append(f"| `{a.name}` | logmel | {a.layout} | `{a.shape()}` | {a.context_s} s ending at the window's "
                    f"end, Kaldi fbank {a.num_mel_bins} bins, {a.frame_length_ms}/{a.frame_shift_ms} ms, "
                    f"{a.window}, {a.sample_rate} Hz" + "".join(f", {k} {v}" for k, v in a.fbank.items())
                    + f", `(x - mean)/std`, mean {a.mean}, std {a.std} |")
    text = [
        f"# {name}",
        "",
        description or "A model bundle written by `avaction_train.export`.",
        "",
        extra.strip(),
        "",
        "## Inputs and output",
        "| input | frontend | layout | shape | preprocessing |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Output `{output_name}` `[1, {len(labels)}]`: scores for the labels in `labels.txt` ({', '.join(labels)}).",
        f"Window: {prep.frames} frames, stride {prep.stride} ({prep.captured_frames} captured frames), "
        f"a window every {prep.hop_frames} captured frames.",
        "",
    ]
    if stages:
        text += ["## Stages", "| graph | input | output |", "|---|---|---|"]
        for e in stages:
            text.append(f"| `{e['graph']}` | `{e['graph_input']} {e['item_shape']}` (one "
                        f"{'frame' if e['segment'] is None else 'segment of ' + str(e['segment']) + ' mel frames'}) | "
                        f"`{e['graph_output']} [1, {e['dim']}]` → head input `{e['tokens']}` |")
        text += [f"| `stages/head.onnx` | {', '.join(f'`{h}`' for h in head_inputs)} | `{output_name}` |", ""]
    c = report["checks"]
    text += [
        "## Goldens and checks",
        "`golden/golden.json`: the normalised `inputs`, the `outputs`" + (", the head's token inputs (`stages`)"
                                                                          if stages else "")
        + ", and the `source` they come from: u8 frames `[S, H, W, 3]` and mono f32 audio (seeded synthetic "
        "data, a sliding square and a tone) that the reference preprocessing of `avaction_train.export` turns "
        "into `inputs` exactly.",
        "",
        f"- onnxruntime vs PyTorch, max abs diff: {c['ort_vs_torch']:.3g}"
        + (f"; staged vs single: {c['staged_vs_single']:.3g}" if stages else "")
        + f" (tolerance {report['tolerance']:g})",
        f"- ONNX opset {report['opset']}, files: "
        + ", ".join(f"`{k}` {v / 1e6:.2f} MB" for k, v in report["onnx_bytes"].items()),
        f"- parameters: {report['params']:,}",
        "",
        "Check again: `python -m avaction_train.export --check <bundle>` (Python) and `avaction verify <bundle>`.",
        "",
    ]
    return "\n".join(text)


# ----------------------------------------------------------------------------- golden files
def _dump(gdir: Path, name: str, arr: np.ndarray) -> dict:
    arr = np.ascontiguousarray(arr)
    kind = {np.dtype(np.float32): ("<f4", "f32"), np.dtype(np.uint8): ("u1", "u8")}[arr.dtype]
    arr.astype(kind[0]).tofile(gdir / name)
    return {"file": name, "shape": list(arr.shape), "dtype": kind[1]}


def _load(gdir: Path, entry: dict) -> np.ndarray:
    dtype = {"f32": "<f4", "u8": "u1"}[entry["dtype"]]
    return np.fromfile(gdir / entry["file"], dtype).reshape(entry["shape"])


# ----------------------------------------------------------------------------- export
def _staged_encoders(prep: Preprocessing, encoders: dict) -> tuple[dict[str, Encoder], list[str]]:
    """The encoders in input order (Encoder objects, tokens named) and the head's input names."""
    names = prep.input_names()
    unknown = sorted(set(encoders) - set(names))
    if unknown:
        raise ExportError(f"encoders for {unknown}: not inputs (the inputs are {names})")
    encs = {}
    for n in (n for n in names if n in encoders):
        e = encoders[n] if isinstance(encoders[n], Encoder) else Encoder(encoders[n])
        e = dataclasses.replace(e, tokens=e.tokens or f"{n}_tokens")
        if prep.is_audio(n) and not (e.segment and prep.audio.mel_frames % e.segment == 0):
            raise ExportError(f"encoder for {n!r}: segment = {e.segment} must divide the "
                              f"{prep.audio.mel_frames} mel frames of a window")
        if not prep.is_audio(n) and e.segment is not None:
            raise ExportError(f"encoder for {n!r}: `segment` is only for the log-mel input")
        encs[n] = e
    head_inputs = [e.tokens for e in encs.values()] + [n for n in names if n not in encs]
    if len(set(head_inputs)) != len(head_inputs):
        raise ExportError(f"head inputs {head_inputs}: names must be distinct (set Encoder.tokens)")
    return encs, head_inputs


def _export_stages(out: Path, prep: Preprocessing, encs: dict[str, Encoder], head: nn.Module, head_inputs: list[str],
                   windows: list[dict], output_name: str, opset: int) -> tuple[list[dict], dict, float]:
    """stages/*.onnx. Returns the manifest's encoder rows, the golden tokens (torch, one frame /
    segment at a time, as the runtime runs them) of windows[0], and the largest difference between
    the staged scores (torch on windows[0]; onnxruntime, encoder by encoder, on every window) and
    the single graph's (model.onnx in onnxruntime, written before)."""
    rows = []
    for n, e in encs.items():
        item = prep.audio.segment_shape(e.segment) if prep.is_audio(n) else prep.frame_shape()
        token = _run(e.module.eval(), [np.zeros(item, np.float32)])
        if token.ndim != 2 or token.shape[0] != 1:
            raise ExportError(f"encoder for {n!r}: returns {list(token.shape)} for one item {item}, expected [1, dim]")
        row = dict(input=n, graph=f"stages/{n}_encoder.onnx", tokens=e.tokens, dim=int(token.shape[1]),
                   segment=e.segment, graph_input="logmel" if prep.is_audio(n) else "image", graph_output="token",
                   item_shape=item)
        onnx_export(e.module, (torch.zeros(item),), out / row["graph"], [row["graph_input"]], ["token"], opset)
        rows.append(row)
    raw = [windows[0][n] for n in prep.input_names() if n not in encs]
    tokens = {e.tokens: np.stack([_run(e.module, [it])[0] for it in staged_items(prep, n, windows[0][n], e.segment)])[None]
              for n, e in encs.items()}
    head_args = list(tokens.values()) + raw
    onnx_export(head.eval(), tuple(torch.from_numpy(a) for a in head_args), out / "stages" / "head.onnx",
                head_inputs, [output_name], opset)
    single = session(out / "model.onnx")
    diff = max_diff(_run(head, head_args), single.run(None, windows[0])[0])
    enc_sess = [session(out / r["graph"]) for r in rows]
    head_sess = session(out / "stages" / "head.onnx")
    for x in windows:
        toks = [np.stack([s.run(None, {r["graph_input"]: it})[0][0]
                          for it in staged_items(prep, r["input"], x[r["input"]], r["segment"])])[None]
                for s, r in zip(enc_sess, rows)]
        feed = dict(zip(head_inputs, toks + [x[n] for n in prep.input_names() if n not in encs]))
        diff = max(diff, max_diff(head_sess.run(None, feed)[0], single.run(None, x)[0]))
    return rows, tokens, diff


def export_bundle(out_dir, name: str, labels: list[str], preprocessing: Preprocessing, model: nn.Module | None = None,
                  encoders: dict | None = None, head: nn.Module | None = None, *, output_name: str = "logits",
                  decoder: Decoder | None = None, description: str = "", version: str = "0.1.0", opset: int = 17,
                  seed: int = 0, tolerance: float = TOLERANCE, source_tolerance: float = SOURCE_TOLERANCE,
                  readme: str = "", overwrite: bool = False, avaction: str | None = None, quiet: bool = False) -> dict:
    """Writes the bundle `out_dir` (see the module doc) and returns a report: checks (max abs
    diffs), parameter count, ONNX sizes, the re-check of the files, and `verify` (None when skipped).

    model: an nn.Module taking the inputs in `preprocessing`'s order and layouts and returning the
        scores [1, len(labels)]. encoders + head: the staged form (`encoders` maps input names to
        an Encoder or a bare nn.Module; every input without an encoder goes to the head whole).
        With only encoders + head, the single graph is their composition (ComposedModel).
    The bundle is built in a sibling folder `.<name>.partial` and moved to `out_dir` once every
    check passed (a failed export leaves the partial folder for inspection, out_dir untouched).
    overwrite: replace an existing `out_dir` (only one that holds a model.toml).
    avaction: path of an avaction binary for `avaction verify out_dir` (default: env AVACTION;
        neither: skipped with a note; False: not run, no note). Raises VerifyError if it fails; the
        bundle stays.
    """
    log = (lambda *a: None) if quiet else print
    out = Path(out_dir)
    prep = preprocessing
    prep.check()
    labels = [str(label) for label in labels]
    if not labels or len(set(labels)) != len(labels) or any(not l.strip() or "\n" in l for l in labels):
        raise ExportError("labels: need at least one, all distinct, non-empty, one line each")
    decoder = dataclasses.replace(decoder or Decoder())
    if decoder.top_k is None:
        decoder.top_k = min(3, len(labels))
    decoder.check(labels)
    staged = encoders is not None or head is not None
    if staged and (not encoders or head is None):
        raise ExportError("staged export needs both encoders={input name: module} and head=module")
    if model is None and not staged:
        raise ExportError("give model= (single graph) and/or encoders= and head= (staged)")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out} exists and is not empty (overwrite=True / --overwrite replaces it)")
        if not (out / "model.toml").is_file():
            raise ExportError(f"{out} is not empty and holds no model.toml: not replacing it")
    encs, head_inputs = _staged_encoders(prep, encoders) if staged else ({}, None)
    single = (model if model is not None else ComposedModel(prep, encs, head)).eval()

    # The golden window (reference preprocessing of the synthetic source) and a random one.
    frames, samples = synthetic_source(prep, seed)
    inputs = reference_inputs(prep, frames, samples)
    rng = np.random.default_rng(seed + 1)
    other = {n: rng.standard_normal(x.shape).astype(np.float32) for n, x in inputs.items()}
    ref = _run(single, inputs.values())
    if ref.shape != (1, len(labels)):
        raise ExportError(f"the model returns {list(ref.shape)}, expected [1, {len(labels)}] (one score per label)")
    if not np.isfinite(ref).all():
        raise ExportError("the model returns non-finite scores on the golden window")
    # How much the scores move when the log-mel is off by the runtime's tested frontend error
    # (|Rust - torchaudio| <= 1e-3 on raw log-mel values, tests/frontend_logmel.rs): a hint whether
    # golden.json's end-to-end source.tolerance can hold.
    sensitivity = None
    if prep.audio is not None:
        x = inputs[prep.audio.name]
        nudged = dict(inputs, **{prep.audio.name: (x + rng.uniform(-1e-3, 1e-3, x.shape) / prep.audio.std)
                                 .astype(np.float32)})
        sensitivity = max_diff(_run(single, nudged.values()), ref)
        if sensitivity > source_tolerance / 2:
            log(f"warning: a 1e-3 log-mel error moves the scores by {sensitivity:.2g}; the end-to-end "
                f"source.tolerance {source_tolerance:g} may be too tight for the runtime's frontends")

    # Graphs and checks, in the partial folder.
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    onnx_export(single, tuple(torch.from_numpy(x) for x in inputs.values()), tmp / "model.onnx",
                prep.input_names(), [output_name], opset)
    sess = session(tmp / "model.onnx")
    checks = {"ort_vs_torch": max(max_diff(sess.run(None, inputs)[0], ref),
                                  max_diff(sess.run(None, other)[0], _run(single, other.values())))}
    rows, tokens = None, {}
    if staged:
        rows, tokens, checks["staged_vs_single"] = _export_stages(tmp, prep, encs, head, head_inputs, [inputs, other],
                                                                  output_name, opset)
    for what, d in checks.items():
        if not d <= tolerance:
            hint = (" (do the encoders treat batch items independently, and does the head compute what the "
                    "model does?)" if what == "staged_vs_single" else "")
            raise ExportError(f"{what}: max abs diff {d:.3g} > tolerance {tolerance:g}{hint}; files in {tmp}")

    # Manifest, labels, goldens, README.
    (tmp / "labels.txt").write_text("\n".join(labels) + "\n")
    (tmp / "model.toml").write_text(manifest_toml(name, version, description, prep, output_name, len(labels),
                                                  decoder, rows, head_inputs))
    gdir = tmp / "golden"
    gdir.mkdir()
    timing = SourceTiming.of(prep)
    source = {"frames": _dump(gdir, "source_frames.bin", frames), "frames_t0_s": timing.frames_t0_s}
    if prep.audio is not None:
        source |= {"audio": _dump(gdir, "source_audio.bin", samples), "audio_t0_s": timing.audio_t0_s}
    golden = {
        "inputs": {n: _dump(gdir, f"inputs_{n}.bin", x) for n, x in inputs.items()},
        **({"stages": {n: _dump(gdir, f"{n}.bin", t) for n, t in tokens.items()}} if staged else {}),
        "outputs": {output_name: _dump(gdir, f"{output_name}.bin", ref)},
        "tolerance": tolerance,
        "source": source | {"tolerance": source_tolerance},
        "seed": seed,
        "note": "raw little-endian arrays, C order. inputs: the normalised model inputs, computed from source "
                "by avaction_train.export.reference_inputs (every stride-th frame, /255, (x-mean)/std, layout; "
                "log-mel of the audio samples [t_end - T*shift, t_end - shift + frame_length), t_end = "
                "frames_t0_s + S/fps, (x-mean)/std, layout). outputs: PyTorch on inputs. stages: each encoder's "
                "tokens (one frame / segment at a time), the head's inputs. source: synthetic, seeded.",
    }
    (gdir / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    report = {
        "bundle": str(out),
        "checks": checks,
        "tolerance": tolerance,
        "opset": opset,
        "params": sum(p.numel() for p in single.parameters()),
        "logmel_sensitivity": sensitivity,
        "onnx_bytes": {str(p.relative_to(tmp)): p.stat().st_size
                       for p in [tmp / "model.onnx", *sorted((tmp / "stages").glob("*.onnx"))]},
    }
    (tmp / "README.md").write_text(bundle_readme(name, description, prep, labels, output_name, rows, head_inputs,
                                                 report, readme))
    # Re-read everything from the files: manifest round trip, inputs == reference(source), ORT == goldens.
    report["check_bundle"] = check_bundle(tmp, expect=prep)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(f"{rel(out)}: written; onnxruntime vs torch {checks['ort_vs_torch']:.2g}"
        + (f", staged vs single {checks['staged_vs_single']:.2g}" if staged else "") + "; files re-checked"
        + (f"; a 1e-3 log-mel error moves the scores {sensitivity:.2g}" if sensitivity is not None else ""))
    report["verify"] = run_verify(out, avaction, log)
    return report


# ----------------------------------------------------------------------------- checking a written bundle
def check_bundle(bundle, expect: Preprocessing | None = None) -> dict:
    """Checks a written bundle from its files alone (what `avaction verify` should find too):
    model.toml parses (tomllib) to a Preprocessing (equal to `expect` when given); the golden
    inputs equal reference_inputs(source) exactly; onnxruntime on the golden inputs gives the
    golden outputs (and, staged, the golden tokens and outputs) within the golden tolerance.
    Returns the max abs diffs; raises ExportError on a failure."""
    import tomllib

    bundle = Path(bundle)
    m = tomllib.loads((bundle / "model.toml").read_text())
    if m.get("manifest_version") != 2:
        raise ExportError(f"{bundle}/model.toml: manifest_version is {m.get('manifest_version')}, expected 2")
    prep = Preprocessing.from_manifest(m)
    prep.check()
    if expect is not None and prep != expect:
        raise ExportError(f"{bundle}/model.toml reads back as\n  {prep}\nnot\n  {expect}")
    gdir = bundle / "golden"
    g = json.loads((gdir / "golden.json").read_text())
    tol = g["tolerance"]
    src = g["source"]
    frames = _load(gdir, src["frames"])
    samples = _load(gdir, src["audio"]) if "audio" in src else None
    timing = SourceTiming.of(prep)
    if abs(src["frames_t0_s"] - timing.frames_t0_s) > 1e-9 or (
            samples is not None and abs(src["audio_t0_s"] - timing.audio_t0_s) > 1e-9):
        raise ExportError(f"{bundle}: golden source times differ from the window timing {timing}")
    recomputed = reference_inputs(prep, frames, samples)
    golden_in = {n: _load(gdir, e) for n, e in g["inputs"].items()}
    if list(golden_in) != prep.input_names():
        raise ExportError(f"{bundle}: golden inputs {list(golden_in)} are not the manifest's {prep.input_names()}")
    for n, x in recomputed.items():
        if x.shape != golden_in[n].shape or not np.array_equal(x, golden_in[n]):
            raise ExportError(f"{bundle}: golden input {n!r} is not reference_inputs(source): max diff "
                              f"{max_diff(x, golden_in[n]):.3g}")
    out_name = m["output"]["name"]
    want = _load(gdir, g["outputs"][out_name])
    result = {"inputs_equal_reference": True}
    single = session(bundle / m["graph"])
    if [i.name for i in single.get_inputs()] != prep.input_names():
        raise ExportError(f"{bundle}: model.onnx inputs {[i.name for i in single.get_inputs()]} are not "
                          f"{prep.input_names()}")
    result["single_max_diff"] = max_diff(single.run([out_name], golden_in)[0], want)
    result["source_max_diff"] = max_diff(single.run([out_name], recomputed)[0], want)
    if "stages" in m:
        st = m["stages"]
        toks, tok_diff = {}, 0.0
        for e in st["encoders"]:
            s = session(bundle / e["graph"])
            items = staged_items(prep, e["input"], golden_in[e["input"]], e.get("segment"))
            gin = e.get("graph_input", "logmel" if prep.audio and e["input"] == prep.audio.name else "image")
            gout = e.get("graph_output", "token")
            toks[e["tokens"]] = np.stack([s.run([gout], {gin: it})[0][0] for it in items])[None]
            tok_diff = max(tok_diff, max_diff(toks[e["tokens"]], _load(gdir, g["stages"][e["tokens"]])))
        head_inputs = st.get("head_inputs") or [e["tokens"] for e in st["encoders"]] + [
            n for n in prep.input_names() if n not in {e["input"] for e in st["encoders"]}]
        feed = {h: toks[h] if h in toks else golden_in[h] for h in head_inputs}
        head_sess = session(bundle / st["head"])
        result["tokens_max_diff"] = tok_diff
        result["staged_max_diff"] = max_diff(head_sess.run([out_name], feed)[0], want)
    bad = {k: v for k, v in result.items() if k.endswith("max_diff") and not v <= (
        src["tolerance"] if k == "source_max_diff" else tol)}
    if bad:
        raise ExportError(f"{bundle}: goldens not reproduced: {bad} (tolerance {tol:g})")
    labels = (bundle / m["labels"]).read_text().splitlines()
    if [len(labels)] != m["output"]["shape"][1:]:
        raise ExportError(f"{bundle}: {len(labels)} labels for output shape {m['output']['shape']}")
    return result


def run_verify(bundle: Path, avaction: str | None | bool, log=print) -> dict | None:
    """`avaction verify <bundle>` with the given binary (or env AVACTION); None when neither is set
    (a note is printed) or avaction is False."""
    if avaction is False:
        return None
    avaction = avaction or os.environ.get("AVACTION")
    if not avaction:
        log(f"{rel(bundle)}: `avaction verify` skipped (no binary: pass --avaction PATH or set AVACTION)")
        return None
    cmd = [str(avaction), "verify", str(bundle)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except OSError as exc:
        raise VerifyError(f"`{' '.join(cmd)}` could not run: {exc}") from exc
    output = (p.stdout + p.stderr).strip()
    if p.returncode != 0:
        hint = ""
        if "unrecognized subcommand" in output or "unexpected argument" in output:
            hint = " This avaction has no `verify` command yet (it comes with manifest v2 support)."
        raise VerifyError(f"`{' '.join(cmd)}` failed (exit {p.returncode}); the bundle stays in place.{hint} "
                          f"Its output:\n{output}")
    log(f"{rel(bundle)}: avaction verify ok" + (f"\n{output}" if output else ""))
    return {"command": cmd, "returncode": 0, "output": output}


# ----------------------------------------------------------------------------- command line
def _factory(spec: str):
    mod, _, attr = spec.partition(":")
    if not attr:
        raise SystemExit(f"--model {spec!r}: expected module:function")
    return getattr(importlib.import_module(mod), attr)()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m avaction_train.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", metavar="BUNDLE", type=Path, help="only re-check a written bundle (and verify it)")
    ap.add_argument("--model", metavar="MODULE:FUNCTION",
                    help="a function returning an nn.Module, or a dict of export_bundle keyword arguments "
                         "(model/encoders/head/preprocessing/labels/name/decoder/...); flags below override it")
    ap.add_argument("--preprocessing", type=Path, help="JSON with Preprocessing's fields (audio: Audio's fields)")
    ap.add_argument("--labels", type=Path, help="labels file, one per line")
    ap.add_argument("--decoder", type=Path, help="JSON with Decoder's fields")
    ap.add_argument("--name")
    ap.add_argument("--description")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--opset", type=int)
    ap.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    ap.add_argument("--avaction", help="avaction binary for `avaction verify` (default: env AVACTION, else skipped)")
    a = ap.parse_args(argv)
    try:
        if a.check:
            print(json.dumps(check_bundle(a.check)))
            run_verify(a.check, a.avaction)
            return 0
        if not a.model or not a.out:
            ap.error("--model and --out are required (or --check BUNDLE)")
        made = _factory(a.model)
        kwargs = dict(made) if isinstance(made, dict) else {"model": made}
        if a.preprocessing:
            kwargs["preprocessing"] = Preprocessing(**json.loads(a.preprocessing.read_text()))
        if a.labels:
            kwargs["labels"] = a.labels.read_text().splitlines()
        if a.decoder:
            kwargs["decoder"] = Decoder(**json.loads(a.decoder.read_text()))
        for key in ("name", "description", "seed", "opset", "avaction"):
            if getattr(a, key) is not None:
                kwargs[key] = getattr(a, key)
        missing = [k for k in ("preprocessing", "labels", "name") if k not in kwargs]
        if missing:
            ap.error(f"missing {', '.join(missing)}: give --{' --'.join(missing)} or return them from --model")
        overwrite = kwargs.pop("overwrite", False) or a.overwrite
        export_bundle(a.out, overwrite=overwrite, **kwargs)
        return 0
    except VerifyError as exc:
        print(f"verify failed: {exc}", file=sys.stderr)
        return 3
    except ExportError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run the importable module's main: a --model factory imports avaction_train.export, and its
    # Preprocessing / Encoder classes must be the ones export_bundle checks against.
    from avaction_train.export import main as _main

    sys.exit(_main())
