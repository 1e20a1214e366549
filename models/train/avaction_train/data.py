"""Training data: dumps written by `avaction features` (or fake_dump.py) loaded as numpy arrays,
the normalisation computed on the training set, and the label-preserving augmentation.

`Dump` reads the arrays every model uses (frames, flow, logmel, labels); `CompositionalDump` adds the fields
of the compositional task (attributes, class_parts, novel). See README.md for the dump format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .preprocess import normalize as normalize_frames

SHAPES = {
    "frames": ((16, 64, 64, 3), np.uint8),
    "flow": ((15, 3, 64, 64), np.uint8),
    "logmel": ((64, 128), np.float32),
}
FLOW_MEAN = [0.5, 0.5, 0.5]
FLOW_STD = [0.5, 0.5, 0.5]


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


class CompositionalDump(Dump):
    """A compositional-task dump (or several with the same label list): the arrays of Dump plus
    attributes and the task metadata (class_parts, novel)."""

    def __init__(self, dirs: list[str]):
        super().__init__(dirs)
        attrs, self.meta = [], None
        for d in dirs:
            meta = json.loads((Path(d) / "meta.json").read_text())
            for key in ("attributes", "class_parts", "novel"):
                if key not in meta:
                    raise SystemExit(f"{Path(d) / 'meta.json'}: no {key!r} (not a compositional-task dump?)")
            if len(meta["class_parts"]) != len(meta["labels"]):
                raise SystemExit(f"{Path(d) / 'meta.json'}: class_parts has {len(meta['class_parts'])} entries, "
                                 f"labels {len(meta['labels'])}")
            if self.meta is None:
                self.meta = meta
            else:
                for key in ("attributes", "class_parts", "novel"):
                    if meta[key] != self.meta[key]:
                        raise SystemExit(f"{Path(d) / 'meta.json'}: {key} differs from {dirs[0]}")
            a = np.load(Path(d) / "attributes.npy")
            n = len(np.load(Path(d) / "labels.npy", mmap_mode="r"))
            if a.dtype != np.uint8 or a.shape != (n, len(meta["attributes"])):
                raise SystemExit(f"{Path(d) / 'attributes.npy'}: expected uint8 [{n}, {len(meta['attributes'])}], "
                                 f"got {a.dtype} {list(a.shape)}")
            attrs.append(a)
        self.attributes = np.concatenate(attrs)
        self.attribute_names = list(self.meta["attributes"])
        self.class_parts = list(self.meta["class_parts"])
        self.novel = sorted(int(i) for i in self.meta["novel"])


class DumpSubset:
    """A view of some windows of a dump (for the DICCAE update set)."""

    def __init__(self, ds: CompositionalDump, idx: np.ndarray):
        self.frames, self.flow, self.logmel = ds.frames[idx], ds.flow[idx], ds.logmel[idx]
        self.labels = ds.labels[idx]

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
