"""Best-tuned Python reference pipeline for the real-scale benchmark: runs one staged model
bundle (models/NAME with model.toml and stages/*.onnx) over one media file as fast as it can,
with the same work the Rust runtime does in its "per-frame encoders cached" setting, and
prints one JSON line with its timings.

    .venv-train/bin/python benches/reference/realscale_pipeline.py BUNDLE CLIP \
        [--threads 2] [--spin] [--resize linear|area] [--queue 2] [--realtime] [--json]

Pipeline (the timed part starts when the file is opened):
  * video: cv2.VideoCapture (FFmpeg), every frame resized to the model size (full frame,
    aspect squashed) with --resize (default INTER_LINEAR, 2 taps, the fastest and what the
    runtime's GStreamer videoscale does by default; `area` = INTER_AREA, antialiased and
    ~25x dearer from 720p), BGR->RGB. Decode + resize run in a thread that stays at most
    --queue frames ahead (0: inline, one thread). --realtime reads frame i no earlier than
    i / fps seconds after the start, as a camera delivers them, and audio sample n no earlier
    than n / rate seconds, as a microphone does (a window waits for its audio as the runtime's
    does live); latency then counts from when the window's last frame was delivered.
  * flow: OpenCV DIS (the bundle's preset) between consecutive resized gray frames, MOV
    encoding (clip to +-bound, round(255 (x + bound) / (2 bound)), zero third plane).
  * audio: an `ffmpeg` subprocess decodes the track to mono s16le at the fbank rate, read by
    a thread; samples in [-1, 1) as the runtime feeds them. Log-mel is incremental: mel frame n
    covers samples [n*shift, n*shift + frame_length) on one grid anchored at the first
    sample (kaldi snip_edges), and only frames not computed yet go through kaldi.fbank. A
    window's A mel frames are those starting at t_end - A*shift (the runtime's grid: the last
    frame looks frame_length - shift samples past t_end); frames without audio (none in the
    clip, before its start, after its end) are silence, log(FLT_EPSILON) as the runtime fills
    (what zero samples give).
  * staged encoders: each frame / flow field / audio segment (`segment` mel frames, keyed by
    its first mel frame) is encoded once and its token kept; segments that are not entirely
    real audio are recomputed per window and never cached (as the runtime). Encoders whose
    graph has a dynamic batch axis get a hop's new items in one call. The head runs per window.
Windows end at frame e where e + 1 >= T and (e + 1 - T) % hop == 0. Latency of a window: from
its last frame leaving the decoder to the head's output (with --queue > 0 this includes the
time the frame waited in the queue). Sessions are created and run once on
zeros before the timed part. Offline tooling only: nothing in the crate needs Python.
"""

import argparse
import json
import os
import queue
import resource
import subprocess
import sys
import threading
import time
import tomllib
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torchaudio.compliance.kaldi as kaldi  # noqa: E402

DIS = {"dis-ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
       "dis-fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
       "dis-medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
# [inputs.fbank] keys passed on to kaldi.fbank (besides the ones every bundle has)
FBANK_EXTRA = {"preemphasis": "preemphasis_coefficient", "remove_dc_offset": "remove_dc_offset",
               "low_freq": "low_freq", "high_freq": "high_freq", "use_energy": "use_energy",
               "round_to_power_of_two": "round_to_power_of_two", "raw_energy": "raw_energy",
               "htk_compat": "htk_compat", "use_log_fbank": "use_log_fbank", "use_power": "use_power"}
now = time.perf_counter
STAGE = defaultdict(lambda: [0.0, 0])  # stage -> [seconds, calls]


def timed(stage, t0):
    """Adds the time since `t0` to `stage`; returns now."""
    t = now()
    STAGE[stage][0] += t - t0
    STAGE[stage][1] += 1
    return t


def session(path, args):
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if args.spin else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if args.spin else "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class Encoder:
    """One per-item encoder: its session, the input it encodes and its token cache."""

    def __init__(self, spec, inp, bundle, args):
        self.spec, self.tokens, self.segment = inp, spec["tokens"], spec.get("segment", 1)
        self.stage = spec["input"] + "_encoder"
        self.sess = session(bundle / spec["graph"], args)
        i = self.sess.get_inputs()[0]
        self.input, self.output = i.name, self.sess.get_outputs()[0].name
        self.batched = not isinstance(i.shape[0], int)  # dynamic first axis: batch a hop
        item = [d if isinstance(d, int) else 1 for d in i.shape[1:]]
        self.dim = self.run(np.zeros([1, *item], np.float32)).shape[-1]  # warm-up
        self.cache = {}  # key (frame / field / first mel frame number) -> token [d]

    def run(self, x):
        """Tokens [N, d] of items x [N, ...] (one call if batched, else one per item)."""
        if self.batched or len(x) == 1:
            t0 = now()
            y = self.sess.run([self.output], {self.input: x})[0]
            timed(self.stage, t0)
            return y.reshape(len(x), -1)
        return np.concatenate([self.run(x[k:k + 1]) for k in range(len(x))])

    def encode(self, keys, items):
        """Encodes the items not cached yet (a key None: always, never cached)."""
        todo = [k for k, key in enumerate(keys) if key is None or key not in self.cache]
        out = [None] * len(keys)
        if todo:
            y = self.run(np.stack([items[k] for k in todo]))
            for k, tok in zip(todo, y):
                out[k] = tok
                if keys[k] is not None:
                    self.cache[keys[k]] = tok
        return [self.cache[key] if o is None else o for key, o in zip(keys, out)]

    def forget(self, before):
        """Drops cached tokens with keys < before."""
        for key in [k for k in self.cache if k < before]:
            del self.cache[key]


class Audio(threading.Thread):
    """The clip's audio as mono s16le from an ffmpeg subprocess, read as it comes."""

    def __init__(self, clip, rate, paced_from=None):
        super().__init__(daemon=True)
        self.rate, self.paced_from = rate, paced_from
        self.proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(clip), "-vn", "-f", "s16le",
             "-ac", "1", "-ar", str(rate), "-"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buf, self.done, self.cond = bytearray(), False, threading.Condition()
        self.start()

    def run(self):
        while chunk := self.proc.stdout.read1(1 << 16):
            with self.cond:
                self.buf += chunk
                self.cond.notify_all()
        self.proc.wait()  # no audio track: ffmpeg fails, zero samples
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def wait_for(self, n):
        """Waits until n samples are there or the stream ended; returns the samples there.
        Paced (--realtime), sample n is not there before n / rate seconds from the start, as
        from a microphone."""
        if self.paced_from is not None:
            wait = self.paced_from + n / self.rate - now()
            if wait > 0:
                time.sleep(wait)
        with self.cond:
            self.cond.wait_for(lambda: len(self.buf) >= 2 * n or self.done)
            return len(self.buf) // 2

    def samples(self, a, b):
        with self.cond:
            raw = bytes(self.buf[2 * a:2 * b])
        return np.frombuffer(raw, np.int16).astype(np.float32) * np.float32(1 / 32768)


class LogMel:
    """Incremental Kaldi log-mel on a grid anchored at sample 0, normalised."""

    def __init__(self, spec, audio):
        fb = spec["fbank"]
        rate = fb["sample_rate"]
        self.audio, self.bins = audio, fb["num_mel_bins"]
        self.shift = round(rate * fb["frame_shift_ms"] / 1000)
        self.flen = round(rate * fb["frame_length_ms"] / 1000)
        self.kw = dict(sample_frequency=float(rate), frame_length=float(fb["frame_length_ms"]),
                       frame_shift=float(fb["frame_shift_ms"]), num_mel_bins=self.bins,
                       window_type=fb.get("window", "povey"), dither=0.0, snip_edges=True,
                       **{FBANK_EXTRA[k]: v for k, v in fb.items() if k in FBANK_EXTRA})
        self.mean, self.std = np.float32(spec["mean"][0]), np.float32(spec["std"][0])
        self.silence = (np.log(np.finfo(np.float32).eps) - self.mean) / self.std
        self.mel, self.base = np.zeros((0, self.bins), np.float32), 0  # mel[i] = frame base + i

    def frames(self, lo, hi):
        """Normalised mel frames lo..hi [hi - lo, bins] and the range of them with real audio."""
        have = self.audio.wait_for(max(hi - 1, 0) * self.shift + self.flen)
        avail = 0 if have < self.flen else 1 + (have - self.flen) // self.shift
        top, start = min(hi, avail), max(self.base + len(self.mel), lo, 0)
        if top > start:  # compute only the frames not computed yet
            wave = torch.from_numpy(self.audio.samples(start * self.shift, (top - 1) * self.shift + self.flen))
            t0 = now()
            x = (kaldi.fbank(wave[None], **self.kw).numpy() - self.mean) / self.std
            timed("fbank", t0)
            if start > self.base + len(self.mel):  # skipped frames (hop longer than a window)
                self.mel, self.base = self.mel[:0], start
            self.mel = np.concatenate([self.mel, x])
        cut = max(lo - self.base, 0)  # frames before this window are never needed again
        self.mel, self.base = self.mel[cut:], self.base + cut
        out = np.full((hi - lo, self.bins), self.silence, np.float32)
        real = range(max(lo, 0), max(min(hi, self.base + len(self.mel)), max(lo, 0)))
        out[real.start - lo:real.stop - lo] = self.mel[real.start - self.base:real.stop - self.base]
        return out, real


def children_cpu() -> float:
    """User + system CPU seconds of this process's finished children (ffmpeg)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def decode(clip, size, interp, pace=None):
    """Yields (time out of the decoder, resized RGB frame). With `pace` = (t_begin, fps),
    frame i is not read before t_begin + i / fps, as a camera delivers it."""
    cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    i = 0
    while True:
        if pace:
            wait = pace[0] + i / pace[1] - now()
            if wait > 0:
                time.sleep(wait)
            i += 1
        t0 = now()
        ok, bgr = cap.read()
        if not ok:
            break
        t_out = timed("decode", t0)
        rgb = cv2.cvtColor(cv2.resize(bgr, size, interpolation=interp), cv2.COLOR_BGR2RGB)
        timed("resize", t_out)
        yield t_out, rgb
    cap.release()


def threaded(gen, depth):
    """Runs generator `gen` in a thread at most `depth` items ahead."""
    q = queue.Queue(depth)

    def pump():
        for x in gen:
            q.put(x)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while (x := q.get()) is not None:
        yield x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("clip", type=Path)
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op and OpenCV threads")
    ap.add_argument("--spin", action="store_true", help="let onnxruntime threads spin")
    ap.add_argument("--resize", choices=["area", "linear"], default="linear",
                    help="INTER_LINEAR (default: the fastest; 2 taps like GStreamer's videoscale "
                         "bilinear in the runtime) or INTER_AREA (antialiased, ~5 ms per 720p frame)")
    ap.add_argument("--realtime", action="store_true",
                    help="read frames no faster than the clip's frame rate (latency as live)")
    ap.add_argument("--queue", type=int, default=2, help="frames decoded ahead in a thread (0: inline)")
    ap.add_argument("--json", action="store_true", help="no effect: the output is always one JSON line")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(1)

    m = tomllib.loads((args.bundle / "model.toml").read_text())
    if "stages" not in m:
        sys.exit(f"{args.bundle}: no [stages] in model.toml; this pipeline runs staged bundles")
    T, fps, hop = m["window"]["frames"], m["window"]["fps"], m["window"]["hop_frames"]
    inputs = {i["name"]: i for i in m["inputs"]}
    encoders = {inputs[s["input"]]["frontend"]: Encoder(s, inputs[s["input"]], args.bundle, args)
                for s in m["stages"]["encoders"]}
    head = session(args.bundle / m["stages"]["head"], args)
    head_out = m["output"]["name"]
    img, flow, mel = encoders.get("image"), encoders.get("flow"), encoders.get("logmel")
    H, W = (img or flow).spec["shape"][-2:]
    norm = {e: (np.array(e.spec["mean"], np.float32)[:, None, None],
                np.array(e.spec["std"], np.float32)[:, None, None]) for e in (img, flow) if e}
    feed = {e.tokens: np.zeros((1, k, e.dim), np.float32)  # the head's inputs, refilled per window
            for e, k in ((img, T), (flow, T - 1), (mel, 0)) if e}
    if mel:
        A = mel.spec["shape"][1]
        feed[mel.tokens] = np.zeros((1, A // mel.segment, mel.dim), np.float32)
    head.run([head_out], feed)  # warm-up
    if flow:
        dis = cv2.DISOpticalFlow_create(DIS[flow.spec["estimator"]])
        bound = float(flow.spec.get("bound", 20.0))
    STAGE.clear()

    # ---- timed part -------------------------------------------------------------------
    t_start, cpu_start, child_start = now(), time.process_time(), children_cpu()
    audio = None
    if mel:
        audio = Audio(args.clip, mel.spec["fbank"]["sample_rate"], t_start if args.realtime else None)
        logmel = LogMel(mel.spec, audio)
        mel_per_frame = mel.spec["fbank"]["sample_rate"] / fps / logmel.shift
    frames = decode(args.clip, (W, H), cv2.INTER_AREA if args.resize == "area" else cv2.INTER_LINEAR,
                    (t_start, fps) if args.realtime else None)
    if args.queue > 0:
        frames = threaded(frames, args.queue)
    pend = {"image": ([], []), "flow": ([], [])}  # new items (keys, arrays) not encoded yet
    latencies, prev_gray, n, outputs_finite, t_last = [], None, 0, True, float("nan")
    for e, (t_out, rgb) in enumerate(frames):
        n = e + 1
        next_end = T - 1 if e < T - 1 else e + (T - 1 - e) % hop  # the next window's last frame
        if img and e > next_end - T:  # frame e is in the next window
            x = (rgb.astype(np.float32) * np.float32(1 / 255)).transpose(2, 0, 1)
            pend["image"][0].append(e)
            pend["image"][1].append((x - norm[img][0]) / norm[img][1])
        if flow:
            t0 = now()
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            if prev_gray is not None and e > next_end - T + 1:  # field e-1..e is in it
                uv = dis.calc(prev_gray, gray, None)
                q = np.rint((np.clip(uv, -bound, bound) + bound) * np.float32(255 / (2 * bound)))
                x = np.zeros((3, H, W), np.float32)
                x[:2] = q.transpose(2, 0, 1) * np.float32(1 / 255)
                pend["flow"][0].append(e)  # field keyed by its later frame, as the runtime
                pend["flow"][1].append((x - norm[flow][0]) / norm[flow][1])
                timed("flow", t0)
            prev_gray = gray
        for kind, enc in (("image", img), ("flow", flow)):  # unbatched: encode right away
            if enc and pend[kind][0] and (not enc.batched or e == next_end):
                enc.encode(*pend[kind])
                pend[kind] = ([], [])
        if e != next_end:
            continue
        # ---- window ending at frame e --------------------------------------------------
        first = e - T + 1
        if img:
            img.forget(first)
            feed[img.tokens][0] = img.encode(list(range(first, e + 1)), [])
        if flow:
            flow.forget(first + 1)
            feed[flow.tokens][0] = flow.encode(list(range(first + 1, e + 1)), [])
        if mel:
            lo = round((e + 1) * mel_per_frame) - A  # mel grid ends where the video ends
            x, real = logmel.frames(lo, lo + A)
            starts = range(lo, lo + A, mel.segment)
            keys = [s if s >= real.start and s + mel.segment <= real.stop else None for s in starts]
            mel.forget(lo)
            feed[mel.tokens][0] = mel.encode(keys, x.reshape(-1, mel.segment, x.shape[1]))
        t0 = now()
        y = head.run([head_out], feed)[0]
        t_done = timed("head", t0)
        outputs_finite &= bool(np.isfinite(y).all())
        # paced: from when the camera delivered the last frame (the runtime's live latency);
        # flat out: from when it left the decoder
        latencies.append(t_done - (t_start + e / fps if args.realtime else t_out))
        t_last = t_done
    wall = t_last - t_start  # to the last window's output
    if audio:
        audio.join()  # ffmpeg has exited: its CPU time is in children_cpu()
    cpu = time.process_time() - cpu_start + children_cpu() - child_start

    lat = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    stage_ms = {k: round(v[0] / v[1] * 1e3, 4) for k, v in STAGE.items() if v[1]}
    # encoders and head per window, as the runtime's inference_ms_per_window counts them
    infer_s = sum(v[0] for k, v in STAGE.items() if k == "head" or k.endswith("_encoder"))
    print(json.dumps({
        "bundle": args.bundle.name, "clip": str(args.clip), "frames": n, "windows": len(latencies),
        "media_s": n / fps, "wall_s": round(wall, 4), "x_realtime": round(n / fps / wall, 3),
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 3),
        "latency_p99_ms": round(float(np.percentile(lat, 99)), 3),
        "cpu_s": round(cpu, 3),
        "inference_ms_per_window": round(infer_s / max(len(latencies), 1) * 1e3, 3),
        "stage_ms": stage_ms, "stage_calls": {k: v[1] for k, v in STAGE.items()},
        "outputs_finite": outputs_finite, "threads": args.threads, "spin": args.spin,
        "resize": args.resize, "queue": args.queue,
        "batched": {e.stage: e.batched for e in encoders.values()}}))


if __name__ == "__main__":
    main()
