"""Turns a train5.py run into a model bundle the runtime loads: models/<name>/ with
model.toml (window, inputs with the run's normalisation, [stages], [vocabulary] or the
attribute labels, decoder), model.onnx, stages/*.onnx, labels.txt, sentences.txt +
text_embeddings.f32 (open vocabulary), golden/, metrics.json and README.md (the table).

  python models/train/install_bundle5.py RUN_DIR models/mov-small --name mov-small \
      --description "..." [--streaming STREAMING.json] [--extra-metrics OTHER_RUN=label ...]

MOV's two outputs (`fused`, `video`) are joined into one `embeddings [1, 2, 384]` output
(branch axis) in model.onnx and stages/head.onnx, because the runtime reads one output;
the golden gets the joined tensor too. Nothing else in the graphs changes.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def fmt(values) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def join_outputs(path: Path, names: list[str], joined: str) -> None:
    """Replaces outputs `names` ([1, D] each) by `joined` [1, len(names), D]."""
    model = onnx.load(str(path))
    g = model.graph
    outs = {o.name: o for o in g.output}
    dim = outs[names[0]].type.tensor_type.shape.dim[-1].dim_value
    axes = "join_axes_1"
    g.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), axes))
    expanded = []
    for n in names:
        e = f"{n}_unsqueezed"
        g.node.append(helper.make_node("Unsqueeze", [n, axes], [e]))
        expanded.append(e)
    g.node.append(helper.make_node("Concat", expanded, [joined], axis=1))
    for n in names:
        g.output.remove(outs[n])
    g.output.append(helper.make_tensor_value_info(joined, TensorProto.FLOAT, [1, len(names), dim]))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def manifest(name: str, desc: str, arch: str, norm: dict, cfg: dict, ov: bool, out_name: str,
             out_shape: list[int], branches: list[dict], labels_file: str, background: str | None,
             estimator: str) -> str:
    d = cfg["dim"]
    lines = [
        f"# {name}: {desc}",
        "# Trained by models/train/train5.py on the compositional synthetic task; see README.md.",
        f'name = "{name}"',
        'version = "0.2.0"',
        f'description = "{desc}"',
        'graph = "model.onnx"',
        f'labels = "{labels_file}"',
        "",
        "[window]",
        "frames = 16        # 0.64 s at 25 fps",
        "fps = 25",
        "hop_frames = 2     # a window every 80 ms",
        "audio_optional = false",
        "",
        "[[inputs]]",
        'name = "frames"',
        'frontend = "image"',
        "shape = [1, 16, 3, 64, 64]",
        f"mean = {fmt(norm['image_mean'])}",
        f"std = {fmt(norm['image_std'])}",
        "",
        "[[inputs]]",
        'name = "flow"',
        'frontend = "flow"',
        "shape = [1, 15, 3, 64, 64]",
        f"mean = {fmt(norm['flow_mean'])}",
        f"std = {fmt(norm['flow_std'])}",
        f'estimator = "{estimator}"',
        "bound = 20.0",
        "",
        "[[inputs]]",
        'name = "logmel"',
        'frontend = "logmel"',
        "shape = [1, 64, 128]",
        f"mean = [{norm['mel_mean']:.6g}]",
        f"std = [{norm['mel_std']:.6g}]",
        "",
        "[inputs.fbank]",
        "sample_rate = 16000",
        "frame_length_ms = 25.0",
        "frame_shift_ms = 10.0",
        "num_mel_bins = 128",
        'window = "hamming"',
        "",
        "[output]",
        f'name = "{out_name}"',
        f"shape = {out_shape}",
        "",
        "# Staged execution: encoders run once per new frame / flow field / 40 ms of audio,",
        "# their tokens are kept in rings, the head runs on the window's tokens every hop.",
        "[stages]",
        'head = "stages/head.onnx"',
    ]
    for inp, graph, tokens, seg in [("frames", "video_encoder", "video_tokens", None),
                                    ("flow", "flow_encoder", "flow_tokens", None),
                                    ("logmel", "audio_encoder", "audio_tokens", cfg["segment_frames"])]:
        lines += ["", "[[stages.encoders]]", f'input = "{inp}"', f'graph = "stages/{graph}.onnx"',
                  f'tokens = "{tokens}"', f"dim = {d}"]
        if seg:
            lines.append(f"segment = {seg}")
    if ov:
        lines += ["", "# Open vocabulary: labels are sentences matched to the output by cosine similarity.",
                  "[vocabulary]", 'text_model = "all-MiniLM-L6-v2"', 'sentences = "sentences.txt"',
                  'embeddings = "text_embeddings.f32"']
        for b in branches:
            lines += ["", "[[vocabulary.branches]]", f'name = "{b["name"]}"', f"temperature = {b['temperature']}",
                      f"weight_base = {b['weight_base']}", f"weight_novel = {b['weight_novel']}"]
    lines += ["", "[decoder]", f'kind = "{"softmax" if ov else "sigmoid"}"']
    if background:
        lines.append(f'background = "{background}"')
    lines += [f"top_k = {3 if ov else 'ALL'}", "smoothing = 3", "enter = 0.6", "exit = 0.4",
              "min_duration_s = 0.2", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--description", required=True)
    ap.add_argument("--readme", type=Path, help="a README.md body to put under the generated header/table")
    a = ap.parse_args()
    run, bundle = a.run, a.bundle
    metrics = json.loads((run / "metrics.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    norm = json.loads((run / "norm.json").read_text())
    arch = metrics["arch"]
    ov = arch in ("mov", "cavnet")
    if bundle.exists():
        shutil.rmtree(bundle)
    (bundle / "stages").mkdir(parents=True)
    shutil.copy(run / "model.onnx", bundle / "model.onnx")
    for f in (run / "stages").glob("*.onnx"):
        shutil.copy(f, bundle / "stages" / f.name)
    shutil.copytree(run / "golden", bundle / "golden")
    shutil.copy(run / "metrics.json", bundle / "metrics.json")
    golden = json.loads((bundle / "golden" / "golden.json").read_text())
    branches: list[dict] = []
    if arch == "mov":
        for p in (bundle / "model.onnx", bundle / "stages" / "head.onnx"):
            join_outputs(p, ["fused", "video"], "embeddings")
        parts = [np.fromfile(bundle / "golden" / golden["outputs"][n]["file"], "<f4") for n in ("fused", "video")]
        np.stack(parts)[None].astype("<f4").tofile(bundle / "golden" / "embeddings.bin")
        golden["outputs"] = {"embeddings": {"file": "embeddings.bin", "shape": [1, 2, len(parts[0])], "dtype": "f32"}}
        s = metrics["scoring"]
        branches = [dict(name="fused", temperature=s["tau_f"], weight_base=s["beta_base"], weight_novel=s["beta_novel"]),
                    dict(name="video", temperature=s["tau_v"], weight_base=round(1 - s["beta_base"], 6),
                         weight_novel=round(1 - s["beta_novel"], 6))]
        out_name, out_shape = "embeddings", [1, 2, len(parts[0])]
    elif arch == "cavnet":
        branches = [dict(name="fused", temperature=metrics["scoring"]["tau_f"], weight_base=1.0, weight_novel=1.0)]
        out_name, out_shape = "fused", golden["outputs"]["fused"]["shape"]
    else:
        out_name, out_shape = "attributes", golden["outputs"]["attributes"]["shape"]
    (bundle / "golden" / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    labels = json.loads((run / "labels.json").read_text())
    if ov:
        all_labels = labels["labels"]
        novel = set(labels["novel"])
        seen = [l for i, l in enumerate(all_labels) if i not in novel]
        (bundle / "labels.txt").write_text("\n".join(seen) + "\n")
        (bundle / "novel_labels.txt").write_text("\n".join(all_labels[i] for i in sorted(novel)) + "\n")
        (bundle / "sentences.txt").write_text("\n".join(all_labels) + "\n")
        shutil.copy(run / "text_embeddings.bin", bundle / "text_embeddings.f32")
        background = all_labels[0]
    else:
        shutil.copy(run / "attributes.txt", bundle / "labels.txt")
        background = None
    estimator = metrics.get("flow_estimator", "dis-fast")
    n_labels = len((bundle / "labels.txt").read_text().split("\n")) - 1
    (bundle / "model.toml").write_text(manifest(a.name, a.description, arch, norm, cfg, ov, out_name, out_shape,
                                                branches, "labels.txt", background, estimator)
                                       .replace("top_k = ALL", f"top_k = {n_labels}  # every attribute, every window"))
    if a.readme:
        shutil.copy(a.readme, bundle / "README.md")
    print(f"installed {run} into {bundle}")


if __name__ == "__main__":
    main()
