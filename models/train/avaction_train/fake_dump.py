"""Writes a small synthetic stand-in for a training dump, in the dump format v2 that
`avaction features` writes (runtime/cli/features.rs), for developing and checking the training
pipeline without rendering scenes through the runtime. Each window is its own crude but learnable
scene (numpy drawing, no GStreamer, no Rust frontends), with the confusions of the real tasks.

--task basic (default): the 6 labels of the basic task
  background     static square, ambient noise
  slide_left     square moving left,  broadband whoosh          (differs from slide_right only in motion)
  slide_right    square moving right, broadband whoosh
  drop_click     square falling, short high-band click at impact (differs from drop_thud only in sound)
  drop_thud      square falling, longer low-band thud at impact
  collide_thud   two squares meeting, low-band thud at contact   (differs from drop_thud only in motion)
--task compositional: 33 labels, "nothing happens" + {square, disc} x {slides to the left/right,
  falls, two ... collide} x {click, thud, whoosh, scream-like tone}; 6 novel combinations
  (FAKE_NOVEL_PARTS) that `--classes seen` scenes never draw (see scene_compositional). Same
  structure as the runtime's task (runtime/synth/compositional.rs), not the same lists: the
  runtime's sentences end in "a scream" instead of "a scream-like tone", and its novel set
  differs, so a model trained on fake dumps does not fit the runtime's vocabulary.
Labels cycle through the chosen classes (window i has class pool[i % len(pool)]).

Output directory (N = --n windows):
  frames.npy      uint8   [N, 16, 64, 64, 3]  RGB, 25 fps
  flow.npy        uint8   [N, 15, 3, 64, 64]  MOV encoding: u, v clipped to +-20 px -> 0..255, third channel 0
  logmel.npy      float32 [N, 64, 128]        log-mel, 10 ms hop (4 mel frames per video frame)
  labels.npy      int64   [N]                 index into meta.json "labels"
  attributes.npy  uint8   [N, 6]              multi-hot over meta.json "attributes" (impact, fast_motion,
                                              falling_object, scream_like, crowd_noise, out_of_sync);
                                              the basic task sets only impact (falls, collisions),
                                              falling_object (falls) and fast_motion (> 3 px/frame)
  times.npy       float64 [N, 3]              window start 0.0, end 0.64 (s) and the scene seed
  meta.json       "task", "labels", "attributes", "scene_seeds", "flow_estimator" ("fake"),
                  "windows"; compositional adds "class_parts", "novel", "classes"; and, unlike a
                  runtime dump, "fake": true, "generator", "seed", "fps", "window_frames",
                  "mel_hop_ms" (no "duration_s", "hop_frames" or "manifest": there is no scene
                  timeline or bundle)

  python -m avaction_train.fake_dump --out models/train/data/fake_train --n 240 --seed 1
  D=models/train/data
  python -m avaction_train.fake_dump --task compositional --classes seen  --out $D/comp_train --n 810 --seed 1
  python -m avaction_train.fake_dump --task compositional --classes seen  --out $D/comp_val   --n 162 --seed 100
  python -m avaction_train.fake_dump --task compositional --classes novel --out $D/comp_novel --n 120 --seed 200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

BASIC_LABELS = ["background", "slide_left", "slide_right", "drop_click", "drop_thud", "collide_thud"]
T, H, W = 16, 64, 64
MEL_T, MEL_F = 64, 128
FLOW_CLIP = 20.0
# runtime/synth/compositional.rs ATTRIBUTES (the same list for both tasks)
ATTRIBUTES = ["impact", "fast_motion", "falling_object", "scream_like", "crowd_noise", "out_of_sync"]


def encode_flow(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """MOV flow image: clip to +-20, map linearly to 0..255, zero third channel -> [3, H, W] uint8."""
    def q(x):
        return np.round((np.clip(x, -FLOW_CLIP, FLOW_CLIP) + FLOW_CLIP) * (255.0 / (2 * FLOW_CLIP)))

    return np.stack([q(u), q(v), np.zeros_like(u)]).astype(np.uint8)


def add_event(mel: np.ndarray, t0: float, dur: float, lo: int, hi: int, level: float, rng) -> None:
    """Add energy in mel bands [lo, hi) from mel frame t0 with exponential decay, in the log domain."""
    t = np.arange(MEL_T, dtype=np.float64)
    env = np.where(t >= t0, np.exp(-(t - t0) / max(dur, 1e-3)), 0.0)
    bands = np.zeros(MEL_F)
    bands[lo:hi] = 1.0 + 0.2 * rng.standard_normal(hi - lo)
    energy = level * env[:, None] * np.clip(bands, 0, None)[None, :]
    mel[:] = np.log(np.exp(mel) + energy)


def scene_basic(label: int, seed: int):
    """One basic-task scene: (frames, flow, logmel, attributes multi-hot over ATTRIBUTES)."""
    rng = np.random.default_rng(seed)
    bg = rng.uniform(0, 120, 3)
    base = np.empty((H, W, 3))
    base[:] = bg
    base += rng.normal(0, 6, (H, W, 3))  # static texture
    frames = np.empty((T, H, W, 3))
    flows = np.empty((T - 1, 3, H, W), np.uint8)
    mel = rng.normal(-6.0, 0.6, (MEL_T, MEL_F)) - np.linspace(0, 2, MEL_F)[None, :]
    if rng.random() < 0.5:  # ambient hum, any class
        add_event(mel, 0, 1e6, 2, 10, rng.uniform(0.0, 0.01), rng)

    size = int(rng.integers(8, 15))
    # per object: list of (x, y) over T frames and a colour
    objs = []
    impact = None
    name = BASIC_LABELS[label]
    if name == "background":
        x, y = rng.uniform(4, W - size - 4), rng.uniform(4, H - size - 4)
        objs.append(np.tile([x, y], (T, 1)))
    elif name in ("slide_left", "slide_right"):
        speed = rng.uniform(1.5, 3.0) * (-1 if name == "slide_left" else 1)
        x0 = (W - size - 2 - rng.uniform(0, 6)) if speed < 0 else (2 + rng.uniform(0, 6))
        y = rng.uniform(4, H - size - 4)
        xs = np.clip(x0 + speed * np.arange(T), 0, W - size)
        objs.append(np.stack([xs, np.full(T, y)], 1))
        t0 = rng.uniform(0, 8)
        add_event(mel, t0, rng.uniform(20, 40), 30, 120, rng.uniform(0.02, 0.05), rng)
    elif name in ("drop_click", "drop_thud"):
        x = rng.uniform(4, W - size - 4)
        floor = H - size - 1
        k = int(rng.integers(6, 13))  # impact frame
        g = (floor - 2) / (k * k)
        ys = np.minimum(2 + g * np.arange(T) ** 2, floor)
        objs.append(np.stack([np.full(T, x), ys], 1))
        impact = k
    else:  # collide_thud
        y = rng.uniform(4, H - size - 4)
        k = int(rng.integers(6, 13))
        meet = rng.uniform(W / 2 - 8, W / 2 + 8)
        xl0, xr0 = rng.uniform(0, 6), W - size - rng.uniform(0, 6)
        t = np.minimum(np.arange(T), k) / k
        xl = xl0 + (meet - size - xl0) * t
        xr = xr0 + (meet - xr0) * t
        objs.append(np.stack([xl, np.full(T, y)], 1))
        objs.append(np.stack([xr, np.full(T, y + rng.uniform(-2, 2))], 1))
        impact = k
    if impact is not None:
        t0 = impact * 4 + rng.uniform(-1, 1)
        if name == "drop_click":
            add_event(mel, t0, rng.uniform(1.0, 2.5), 80, 128, rng.uniform(0.05, 0.2), rng)
        else:
            add_event(mel, t0, rng.uniform(6, 12), 0, 30, rng.uniform(0.05, 0.2), rng)

    colours = [rng.uniform(120, 255, 3) for _ in objs]
    for t in range(T):
        img = base.copy()
        for pos, c in zip(objs, colours):
            x, y = int(round(pos[t, 0])), int(round(pos[t, 1]))
            img[y : y + size, x : x + size] = c
        frames[t] = img
    for t in range(T - 1):
        u = np.zeros((H, W))
        v = np.zeros((H, W))
        for pos in objs:
            x, y = int(round(pos[t, 0])), int(round(pos[t, 1]))
            d = pos[t + 1] - pos[t]
            u[y : y + size, x : x + size] = d[0]
            v[y : y + size, x : x + size] = d[1]
        u += rng.normal(0, 0.15, (H, W))
        v += rng.normal(0, 0.15, (H, W))
        flows[t] = encode_flow(u, v)
    frames = np.clip(frames + rng.normal(0, 3, frames.shape), 0, 255).astype(np.uint8)
    attrs = dict.fromkeys(ATTRIBUTES, 0)
    attrs["impact"] = int(impact is not None)
    attrs["falling_object"] = int(name in ("drop_click", "drop_thud"))
    attrs["fast_motion"] = int(max(float(np.abs(np.diff(p, axis=0)).max()) for p in objs) > 3.0)
    return frames, flows, mel.astype(np.float32), np.array([attrs[a] for a in ATTRIBUTES], np.uint8)


# ----------------------------------------------------------------------------- compositional task
OBJECTS = ["square", "disc"]
MOTIONS = ["slide_left", "slide_right", "fall", "collide"]
SOUNDS = ["click", "thud", "whoosh", "scream"]
_MOTION_TEXT = {"slide_left": "slides to the left", "slide_right": "slides to the right", "fall": "falls"}
_SOUND_TEXT = {"click": "a click", "thud": "a thud", "whoosh": "a whoosh", "scream": "a scream-like tone"}
# held out of `seen` scenes; every object, motion and sound value still occurs in other seen classes
FAKE_NOVEL_PARTS = [
    ("disc", "fall", "whoosh"),
    ("square", "collide", "click"),
    ("square", "slide_left", "scream"),
    ("disc", "slide_right", "thud"),
    ("disc", "collide", "scream"),
    ("square", "fall", "thud"),
]


def sentence(obj: str | None, motion: str | None, sound: str | None) -> str:
    if obj is None:
        return "nothing happens"
    if motion == "collide":
        return f"two {obj}s collide with {_SOUND_TEXT[sound]}"
    return f"a {obj} {_MOTION_TEXT[motion]} with {_SOUND_TEXT[sound]}"


def compositional_classes() -> tuple[list[str], list[dict], list[int]]:
    """Labels (background first, then object x motion x sound), their parts, novel indices."""
    parts = [{"object": None, "motion": None, "sound": None}]
    for o in OBJECTS:
        for m in MOTIONS:
            for s in SOUNDS:
                parts.append({"object": o, "motion": m, "sound": s})
    labels = [sentence(p["object"], p["motion"], p["sound"]) for p in parts]
    novel = [i for i, p in enumerate(parts) if (p["object"], p["motion"], p["sound"]) in FAKE_NOVEL_PARTS]
    return labels, parts, novel


def _shape_mask(shape: str, size: int) -> np.ndarray:
    if shape == "square":
        return np.ones((size, size), bool)
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - c) ** 2 + (xx - c) ** 2 <= (size / 2) ** 2


def _add_sound(mel: np.ndarray, sound: str, t0: float, rng) -> None:
    if sound == "click":  # short, high bands
        add_event(mel, t0, rng.uniform(1.0, 2.5), 80, 128, rng.uniform(0.05, 0.2), rng)
    elif sound == "thud":  # longer, low bands
        add_event(mel, t0, rng.uniform(6, 12), 0, 30, rng.uniform(0.05, 0.2), rng)
    elif sound == "whoosh":  # long broadband
        add_event(mel, t0, rng.uniform(15, 30), 30, 110, rng.uniform(0.02, 0.05), rng)
    else:  # scream-like tone: sustained harmonic stack
        f0 = int(rng.integers(18, 28))
        dur = rng.uniform(25, 40)
        level = rng.uniform(0.05, 0.15)
        for h in (1, 2, 3, 4):
            lo = min(f0 * h, MEL_F - 3)
            add_event(mel, t0, dur, lo, lo + 2, level / h, rng)


def scene_compositional(parts: dict, seed: int):
    """One compositional scene: (frames, flow, logmel, attributes multi-hot over ATTRIBUTES).

    object shape (square / disc) is visible in frames (and the flow's support), motion in frames and
    flow, the sound type only in the log-mel. Sound at the impact frame (fall, collide) or while the
    object slides; out_of_sync (impact motions, p 0.3) delays it by 0.30-0.40 s; crowd_noise
    (p 0.3) adds babble-like mid-band bursts anywhere.
    """
    rng = np.random.default_rng(seed)
    base = np.empty((H, W, 3))
    base[:] = rng.uniform(0, 120, 3)
    base += rng.normal(0, 6, (H, W, 3))
    mel = rng.normal(-6.0, 0.6, (MEL_T, MEL_F)) - np.linspace(0, 2, MEL_F)[None, :]
    attrs = dict.fromkeys(ATTRIBUTES, 0)
    if rng.random() < 0.3:
        attrs["crowd_noise"] = 1
        for _ in range(int(rng.integers(10, 16))):
            lo = int(rng.integers(15, 50))
            add_event(mel, rng.uniform(0, MEL_T), rng.uniform(2, 5), lo, lo + int(rng.integers(8, 20)),
                      rng.uniform(0.01, 0.03), rng)
    size = int(rng.integers(12, 19))
    obj, motion, sound = parts["object"], parts["motion"], parts["sound"]
    shape = obj or ("square" if rng.random() < 0.5 else "disc")
    objs = []
    impact = None
    if obj is None:  # background: a still object, no event
        objs.append(np.tile([rng.uniform(4, W - size - 4), rng.uniform(4, H - size - 4)], (T, 1)))
    elif motion in ("slide_left", "slide_right"):
        speed = rng.uniform(1.5, 4.5) * (-1 if motion == "slide_left" else 1)
        x0 = (W - size - 2 - rng.uniform(0, 4)) if speed < 0 else (2 + rng.uniform(0, 4))
        xs = np.clip(x0 + speed * np.arange(T), 0, W - size)
        objs.append(np.stack([xs, np.full(T, rng.uniform(4, H - size - 4))], 1))
        _add_sound(mel, sound, rng.uniform(0, 30), rng)
    else:
        late = rng.random() < 0.3
        k = int(rng.integers(3, 6)) if late else int(rng.integers(3, 13))
        if motion == "fall":
            floor = H - size - 1
            g = (floor - 2) / (k * k)
            ys = np.minimum(2 + g * np.arange(T) ** 2, floor)
            objs.append(np.stack([np.full(T, rng.uniform(4, W - size - 4)), ys], 1))
            attrs["falling_object"] = 1
        else:
            y = rng.uniform(4, H - size - 4)
            meet = rng.uniform(W / 2 - 6, W / 2 + 6)
            xl0, xr0 = rng.uniform(0, 6), W - size - rng.uniform(0, 6)
            t = np.minimum(np.arange(T), k) / k
            objs.append(np.stack([xl0 + (meet - size - xl0) * t, np.full(T, y)], 1))
            objs.append(np.stack([xr0 + (meet - xr0) * t, np.full(T, y + rng.uniform(-2, 2))], 1))
        attrs["impact"] = 1
        attrs["out_of_sync"] = int(late)
        impact = k
        _add_sound(mel, sound, impact * 4 + rng.uniform(-1, 1) + (rng.uniform(30, 40) if late else 0.0), rng)
    if sound == "scream":
        attrs["scream_like"] = 1
    speed = max(float(np.abs(np.diff(p, axis=0)).max()) for p in objs)
    attrs["fast_motion"] = int(speed > 3.0)

    mask = _shape_mask(shape, size)
    colours = [rng.uniform(120, 255, 3) for _ in objs]
    frames = np.empty((T, H, W, 3))
    for t in range(T):
        img = base.copy()
        for pos, c in zip(objs, colours):
            x, y = int(round(pos[t, 0])), int(round(pos[t, 1]))
            img[y : y + size, x : x + size][mask] = c
        frames[t] = img
    flows = np.empty((T - 1, 3, H, W), np.uint8)
    for t in range(T - 1):
        u = np.zeros((H, W))
        v = np.zeros((H, W))
        for pos in objs:
            x, y = int(round(pos[t, 0])), int(round(pos[t, 1]))
            d = pos[t + 1] - pos[t]
            u[y : y + size, x : x + size][mask] = d[0]
            v[y : y + size, x : x + size][mask] = d[1]
        u += rng.normal(0, 0.15, (H, W))
        v += rng.normal(0, 0.15, (H, W))
        flows[t] = encode_flow(u, v)
    frames = np.clip(frames + rng.normal(0, 3, frames.shape), 0, 255).astype(np.uint8)
    attr_vec = np.array([attrs[a] for a in ATTRIBUTES], np.uint8)
    return frames, flows, mel.astype(np.float32), attr_vec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=240, help="windows (spread evenly over the classes)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--task", choices=["basic", "compositional"], default="basic")
    ap.add_argument("--classes", choices=["seen", "novel", "all"],
                    help="(compositional) which classes the scenes draw from (default seen)")
    args = ap.parse_args()
    if args.classes is not None and args.task != "compositional":
        ap.error("--classes only applies to --task compositional")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = args.n
    frames = np.empty((n, T, H, W, 3), np.uint8)
    flow = np.empty((n, T - 1, 3, H, W), np.uint8)
    logmel = np.empty((n, MEL_T, MEL_F), np.float32)
    attributes = np.empty((n, len(ATTRIBUTES)), np.uint8)
    rng = np.random.default_rng(args.seed)
    seeds = rng.integers(0, 2**31 - 1, n).tolist()
    meta = {"task": args.task}
    if args.task == "compositional":
        classes = args.classes or "seen"
        names, parts, novel = compositional_classes()
        pool = {
            "seen": [i for i in range(len(names)) if i not in novel],
            "novel": novel,
            "all": list(range(len(names))),
        }[classes]
        labels = np.array([pool[i % len(pool)] for i in range(n)], np.int64)
        for i in range(n):
            frames[i], flow[i], logmel[i], attributes[i] = scene_compositional(parts[labels[i]], seeds[i])
        extra = {"class_parts": parts, "novel": novel, "classes": classes}
    else:
        names = BASIC_LABELS
        labels = np.arange(n, dtype=np.int64) % len(BASIC_LABELS)
        for i in range(n):
            frames[i], flow[i], logmel[i], attributes[i] = scene_basic(int(labels[i]), seeds[i])
        extra = {}
    meta.update({
        "labels": names,
        "attributes": ATTRIBUTES,
        "scene_seeds": seeds,
        "flow_estimator": "fake",
        "windows": n,
        **extra,
        "fake": True,
        "generator": "avaction_train.fake_dump",
        "seed": args.seed,
        "fps": 25,
        "window_frames": T,
        "mel_hop_ms": 10,
    })
    times = np.array([[0.0, T / 25, s] for s in seeds], np.float64).reshape(n, 3)
    np.save(out / "frames.npy", frames)
    np.save(out / "flow.npy", flow)
    np.save(out / "logmel.npy", logmel)
    np.save(out / "labels.npy", labels)
    np.save(out / "attributes.npy", attributes)
    np.save(out / "times.npy", times)
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(f"wrote {n} windows to {out}")


if __name__ == "__main__":
    main()
