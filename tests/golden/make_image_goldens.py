"""Makes the image-normalisation goldens in tests/data/image/ with numpy, the way
torchvision does it (`ToTensor` then `Normalize`): float32 `(x / 255 - mean) / std`, HWC -> CHW.

Run from the repository root:  python tests/golden/make_image_goldens.py

Written files:
    <case>.rgb      packed RGB bytes, height x width x 3
    <case>.f32      expected output, raw little-endian f32, 3 x height x width
    goldens.json    per case: width, height, normalisation (as avaction's ImageNormalize), files
"""

import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "data" / "image"
SEED = 7


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


if __name__ == "__main__":
    main()
