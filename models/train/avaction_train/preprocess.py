"""Image preprocessing reference: how a frame of any size becomes a model's image input.

This is the transform a model trained with torchvision sees, and the semantics the Rust runtime's
`Preprocess` (runtime/frontend/image.rs) reproduces; tests/golden/make_image_goldens.py runs it to
make the goldens of tests/frontend_image.rs. Training in this package does not resize: the trainer
reads frames the runtime already dumped at the model size (`avaction features`), and only the
normalisation below (`normalize`) is applied to them. The resize and crop matter for models that
ask the runtime to capture larger frames (manifest `[video]`, e.g. capture 640x480, short side 256,
centre crop 224), and for models trained elsewhere on full-size images.

Steps, all in float32 (no rounding to uint8 in between):
  1. resize, two filters:
     - "bilinear": torch `F.interpolate(mode="bilinear", antialias=True, align_corners=False)`,
       which is what torchvision `Resize(size, antialias=True)` does on tensors and what PIL's
       `BILINEAR` does on images: a triangle filter whose half-width is one source pixel when
       upscaling and `in/out` source pixels when downscaling (so downscaling averages instead of
       aliasing), weights renormalised per output pixel.
     - "area": OpenCV `cv2.resize(interpolation=cv2.INTER_AREA)`: box averaging over the covered
       source area when no side grows; OpenCV's INTER_AREA upscaling rule otherwise. (torch's
       `mode="area"` is adaptive average pooling, a different filter for non-integer factors.)
     The resized size is `resize_to`: None = exactly the output size, an int = the shorter side
     (the other side keeps the aspect ratio, rounded down, as torchvision `Resize(int)`), or
     `(width, height)`.
  2. crop to the output size: "center" (torchvision `CenterCrop`: offsets round((resized - out)/2),
     Python rounding), "top-left", "top-right", "bottom-left", "bottom-right" (`FiveCrop`'s
     corners), or "none" (the resized image must be the output size).
  3. `ToTensor` + `Normalize`: `(px / 255 - mean) / std` per channel, HWC -> CHW.

The runtime stores frames as uint8 at the model size (the flow and the training dumps need them),
so its model inputs carry one extra rounding to the nearest byte after step 2, as torchvision's
uint8 tensor path and PIL do: at most 0.5 / 255 / std off the float pipeline here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

FILTERS = ("bilinear", "area")
CROPS = ("center", "top-left", "top-right", "bottom-left", "bottom-right", "none")


def resized_size(width: int, height: int, resize_to, output: tuple[int, int]) -> tuple[int, int]:
    """(width, height) after the resize, as torchvision computes it for `Resize(resize_to)`."""
    if resize_to is None:
        return tuple(output)
    if isinstance(resize_to, int):
        if width <= height:
            return resize_to, int(resize_to * height / width)
        return int(resize_to * width / height), resize_to
    w, h = resize_to
    return int(w), int(h)


def crop_offset(resized: tuple[int, int], output: tuple[int, int], crop: str) -> tuple[int, int]:
    """(x, y) of the crop's top-left corner in the resized image."""
    (rw, rh), (ow, oh) = resized, output
    if rw < ow or rh < oh:
        raise ValueError(f"resized {rw}x{rh} is smaller than the {ow}x{oh} output")
    dx, dy = rw - ow, rh - oh
    if crop == "center":
        return int(round(dx / 2.0)), int(round(dy / 2.0))  # torchvision CenterCrop
    if crop == "none":
        if dx or dy:
            raise ValueError(f'crop "none" but resized {rw}x{rh} is not the {ow}x{oh} output')
        return 0, 0
    corners = {"top-left": (0, 0), "top-right": (dx, 0), "bottom-left": (0, dy), "bottom-right": (dx, dy)}
    return corners[crop]


def resize(rgb: np.ndarray, size: tuple[int, int], filter: str) -> np.ndarray:
    """Resizes an HxWx3 image (any dtype) to `size` = (width, height); float32 HxWx3 out."""
    x = np.ascontiguousarray(rgb, dtype=np.float32)
    w, h = size
    if filter == "bilinear":
        t = torch.from_numpy(x).permute(2, 0, 1)[None]
        t = F.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        return t[0].permute(1, 2, 0).contiguous().numpy()
    if filter == "area":
        import cv2  # only this filter needs OpenCV

        return cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA)
    raise ValueError(f"unknown filter {filter!r}, expected one of {FILTERS}")


def preprocess(rgb: np.ndarray, output: tuple[int, int], resize_filter: str = "bilinear",
               resize_to=None, crop: str = "center", mean=(0.0, 0.0, 0.0),
               std=(1.0, 1.0, 1.0)) -> np.ndarray:
    """uint8 HxWx3 RGB frame -> float32 3 x out_h x out_w model input (resize, crop, normalise)."""
    height, width = rgb.shape[:2]
    resized = resized_size(width, height, resize_to, output)
    x0, y0 = crop_offset(resized, output, crop)
    x = resize(rgb, resized, resize_filter)
    ow, oh = output
    x = x[y0:y0 + oh, x0:x0 + ow]
    x = x / np.float32(255.0)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def normalize(u8: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 [..., H, W, 3] frames already at the model size -> float32 [..., 3, H, W] tensor,
    `(px / 255 - mean) / std` per channel (torchvision `ToTensor` + `Normalize`)."""
    x = torch.from_numpy(np.ascontiguousarray(u8)).movedim(-1, -3).float() / 255.0
    shape = (3, 1, 1)
    mean = torch.as_tensor(mean, dtype=torch.float32).reshape(shape)
    std = torch.as_tensor(std, dtype=torch.float32).reshape(shape)
    return (x - mean) / std
