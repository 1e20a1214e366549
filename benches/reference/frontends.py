"""Reference side of `scripts/bench-frontends.sh`: times OpenCV (DIS presets, DualTVL1,
resize), torchaudio (`kaldi.fbank`) and librosa (`melspectrogram` + log) on the same
data the Rust bench `benches/frontends.rs` used, one thread each, with the same protocol
(batches of ~20 ms for a time budget; best batch and mean), then prints one table of
ratios ours / reference next to the targets of issue 4.

    python benches/reference/frontends.py --data DIR --ours DIR/ours.json [--seconds S]

Offline tooling only: nothing in the crate or its tests needs Python.
"""

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

FLOW_SIZES = [(224, 224), (320, 240)]


def measure(budget, f):
    """Seconds per call of `f`: (best batch, mean), batches of about 20 ms."""
    f()
    t = time.perf_counter()
    f()
    once = max(time.perf_counter() - t, 1e-7)
    batch = int(min(max(0.02 / once, 1), 10_000))
    best, total, calls = float("inf"), 0.0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < budget or calls == 0:
        t = time.perf_counter()
        for _ in range(batch):
            f()
        dt = time.perf_counter() - t
        best = min(best, dt / batch)
        total += dt
        calls += batch
    return best, total / calls


def flow_refs(data, budget, rows):
    cv2.setNumThreads(1)
    presets = {
        "dis-ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        "dis-fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
        "dis-medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }
    for w, h in FLOW_SIZES:
        prev = np.fromfile(data / f"gray_{w}x{h}_0.u8", dtype=np.uint8).reshape(h, w)
        nxt = np.fromfile(data / f"gray_{w}x{h}_1.u8", dtype=np.uint8).reshape(h, w)
        for name, preset in presets.items():
            dis = cv2.DISOpticalFlow_create(preset)
            rows[f"flow/{name}/{w}x{h}"] = measure(budget, lambda: dis.calc(prev, nxt, None))
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        rows[f"flow/tvl1/{w}x{h}"] = measure(max(budget, 3.0), lambda: tvl1.calc(prev, nxt, None))


def logmel_refs(data, budget, rows):
    import torch
    import torchaudio.compliance.kaldi as kaldi
    import librosa

    torch.set_num_threads(1)
    # 128 mel bins over a 512-point FFT leave librosa's lowest filters empty; it warns.
    warnings.filterwarnings("ignore", message="Empty filters detected")
    audio = np.fromfile(data / "audio_16k.f32", dtype="<f4")
    seconds = len(audio) / 16000
    wave = torch.from_numpy(audio).unsqueeze(0)
    configs = {"ast128": dict(window_type="hanning", num_mel_bins=128), "kaldi80": dict(window_type="povey", num_mel_bins=80)}
    for name, kw in configs.items():
        def fbank():
            with torch.inference_mode():
                kaldi.fbank(wave, sample_frequency=16000.0, dither=0.0, htk_compat=True, use_energy=False, **kw)

        best, mean = measure(budget, fbank)
        rows[f"logmel/{name}/second@torchaudio"] = (best / seconds, mean / seconds)

        def mel():
            s = librosa.feature.melspectrogram(
                y=audio, sr=16000, n_fft=512, win_length=400, hop_length=160, n_mels=kw["num_mel_bins"],
                window="hann", center=False, power=2.0, htk=True, fmin=20.0,
            )
            np.log(np.maximum(s, 1.1920929e-07))

        best, mean = measure(budget, mel)
        rows[f"logmel/{name}/second@librosa"] = (best / seconds, mean / seconds)


def preprocess_refs(data, budget, rows):
    """OpenCV resize of a 640x480 RGB frame to the model size (short side 224, then the
    224x224 centre crop), the same plus normalisation to CHW float (blobFromImage), and
    torch's antialiased bilinear resize (the semantics our bilinear follows)."""
    import torch
    import torch.nn.functional as F

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    frame = np.fromfile(data / "rgb_640x480.u8", dtype=np.uint8).reshape(480, 640, 3)
    as_u8 = torch.from_numpy(frame).permute(2, 0, 1)[None]
    as_f32 = as_u8.float().contiguous()
    for kind, tensor in [("uint8", as_u8), ("float", as_f32)]:
        rows[f"preprocess/bilinear/640x480->224@torch antialias {kind}"] = measure(
            budget,
            lambda: F.interpolate(tensor, size=(224, 298), mode="bilinear", antialias=True)[..., 37:261],
        )
    mean = np.array([0.485, 0.456, 0.406]) * 255
    for name, interp in [("area", cv2.INTER_AREA), ("bilinear", cv2.INTER_LINEAR)]:
        rows[f"preprocess/{name}/640x480->224@cv2.resize"] = measure(
            budget, lambda: cv2.resize(frame, (298, 224), interpolation=interp)[:, 37:261]
        )
    rows["preprocess/bilinear/640x480->224@cv2.dnn.blobFromImage"] = measure(
        budget, lambda: cv2.dnn.blobFromImage(frame, 1 / 255 / 0.226, (224, 224), mean, swapRB=False, crop=True)
    )


def table(ours, refs):
    """One line per (our case, reference): times, ratio ours/reference, target."""
    targets = {
        "flow/dis": ("<= 1.5x OpenCV DIS", 1.5),
        "flow/tvl1": ("<= 2x OpenCV TV-L1", 2.0),
        "logmel": ("< 1x torchaudio", 1.0),
        "preprocess": ("<= 1.5x cv2.resize", 1.5),
    }
    lines = []
    header = f"{'case':<34} {'reference':<26} {'ours ms':>10} {'ref ms':>10} {'ours/ref':>9}  target"
    lines.append(header)
    lines.append("-" * len(header))
    for key, (ref_best, _ref_mean) in sorted(refs.items()):
        case, _, lib = key.partition("@")
        lib = lib or ("OpenCV DIS" if "/dis-" in case else "OpenCV TV-L1" if "tvl1" in case else "")
        # Our preprocessing rows (resize + crop + normalise + CHW in one pass) are compared
        # with OpenCV doing the resize and crop alone, and with blobFromImage doing it all.
        if case not in ours:
            lines.append(f"{case:<34} {lib:<26} {'-':>10} {1e3 * ref_best:>10.3f} {'-':>9}  (not measured on our side)")
            continue
        mine = ours[case]["best_s"]
        ratio = mine / ref_best
        target = next((t for p, t in targets.items() if case.startswith(p)), None)
        verdict = ""
        if target is not None:
            text, limit = target
            if lib == "librosa" or lib.startswith("torch antialias") or "blobFromImage" in lib:
                text, limit = "(for information)", None
            verdict = text if limit is None else f"{text}: {'met' if ratio <= limit else 'MISSED'}"
        lines.append(f"{case:<34} {lib:<26} {1e3 * mine:>10.3f} {1e3 * ref_best:>10.3f} {ratio:>9.2f}  {verdict}")
    # Absolute targets.
    extra = []
    uf = ours.get("flow/dis-ultrafast/224x224")
    if uf:
        fps = 1 / uf["best_s"]
        extra.append(f"dis-ultrafast 224x224: {fps:.0f} fields/s (target >= 300): {'met' if fps >= 300 else 'MISSED'}")
    hop = ours.get("logmel/ast128/hop")
    if hop:
        ms = 1e3 * hop["best_s"]
        extra.append(f"log-mel AST 128 bins: {ms:.4f} ms per 10 ms hop (target <= 0.1): {'met' if ms <= 0.1 else 'MISSED'}")
    return "\n".join(lines + [""] + extra)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--ours", type=Path, required=True, help="JSON written by benches/frontends.rs --json")
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    rows = {}
    flow_refs(args.data, args.seconds, rows)
    logmel_refs(args.data, args.seconds, rows)
    if (args.data / "rgb_640x480.u8").exists():
        preprocess_refs(args.data, args.seconds, rows)
    ours = json.loads(args.ours.read_text())
    print(table(ours, rows))
    (args.data / "reference.json").write_text(json.dumps({k: {"best_s": b, "mean_s": m} for k, (b, m) in rows.items()}, indent=1))
    print(f"\nOpenCV {cv2.__version__}; one thread on each side; 'best' batch times (see benches/frontends.rs).", file=sys.stderr)


if __name__ == "__main__":
    main()
