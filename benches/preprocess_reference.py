"""Reference timings for benches/preprocess.rs: OpenCV and torch on the frame the Rust bench
uses (640x480 RGB -> short side 224 = 298x224, centre crop 224x224), one thread each.

    python benches/preprocess_reference.py [SECONDS]

Prints `name best_us mean_us` lines. Run by `cargo bench --bench preprocess` when
AVACTION_BENCH_PYTHON names a Python with numpy, opencv-python and torch.
"""

import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

W, H, SIDE = 640, 480, 224
RESIZED = (298, 224)  # torchvision / our short side 224 of 640x480
MEAN = np.array([0.485, 0.456, 0.406]) * 255
STD = np.array([0.229, 0.224, 0.225]) * 255


def frame() -> np.ndarray:
    """The Rust bench's frame, byte for byte."""
    y, x = np.mgrid[0:H, 0:W]
    t = ((x * 7 + y * 13) % 32).astype(np.uint8)
    r = (x * 255 // (W - 1)).astype(np.uint8) ^ t
    g = (y * 255 // (H - 1)).astype(np.uint8) ^ t
    b = ((x + y) % 256).astype(np.uint8)
    return np.ascontiguousarray(np.stack([r, g, b], axis=-1))


def measure(seconds: float, f) -> tuple[float, float]:
    for _ in range(5):
        f()
    batch, count, best = 10, 0, float("inf")
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or count == 0:
        t = time.perf_counter()
        for _ in range(batch):
            f()
        best = min(best, (time.perf_counter() - t) / batch)
        count += batch
    return best * 1e6, (time.perf_counter() - start) / count * 1e6


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    img = frame()
    img_f = img.astype(np.float32)
    timt = torch.from_numpy(img_f).permute(2, 0, 1)[None].contiguous()
    timt_u8 = torch.from_numpy(img).permute(2, 0, 1)[None]  # channels-last uint8, as decoded
    cases = {
        "cv2.resize_INTER_LINEAR": lambda: cv2.resize(img, RESIZED, interpolation=cv2.INTER_LINEAR),
        "cv2.resize_INTER_AREA": lambda: cv2.resize(img, RESIZED, interpolation=cv2.INTER_AREA),
        "cv2.resize_INTER_AREA_float": lambda: cv2.resize(img_f, RESIZED, interpolation=cv2.INTER_AREA),
        # resize (INTER_LINEAR, short side) + centre crop + mean/scale + HWC -> NCHW float.
        "cv2.dnn.blobFromImage": lambda: cv2.dnn.blobFromImage(
            img, 1 / 57.6, (SIDE, SIDE), tuple(MEAN), swapRB=False, crop=True),
        "torch_bilinear_aa_float": lambda: F.interpolate(
            timt, size=(RESIZED[1], RESIZED[0]), mode="bilinear", antialias=True, align_corners=False),
        "torch_bilinear_aa_uint8": lambda: F.interpolate(
            timt_u8, size=(RESIZED[1], RESIZED[0]), mode="bilinear", antialias=True, align_corners=False),
    }
    print(f"opencv {cv2.__version__}, torch {torch.__version__}, 1 thread")
    for name, f in cases.items():
        best, mean = measure(seconds, f)
        print(f"{name} {best:.1f} {mean:.1f}")


if __name__ == "__main__":
    main()
