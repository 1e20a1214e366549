"""Installs a training run (`python -m avaction_train.train ... --out RUN`) as a model bundle
the runtime loads.

  python -m avaction_train.install_bundle RUN models/cavnet-small
  python -m avaction_train.install_bundle RUN models/mov-small --name mov-small \
      --description "..." [--readme BODY.md]

Basic-task runs (--arch cavnet-small; their metrics.json has no "arch"): the bundle folder with
its hand-written model.toml must exist. model.onnx, labels.txt, metrics.json and golden/ are
copied from the run, and the run's normalisation constants replace the `mean` / `std` of each
[[inputs]] block of model.toml (image, flow, else the log-mel); nothing else changes. --name,
--description and --readme do not apply.

Compositional-task runs (--arch mov, cavnet, avt): the bundle folder is written anew (an existing
one is removed first): model.toml (window, inputs with the run's normalisation, [stages],
[vocabulary] or the attribute labels, decoder), model.onnx, stages/*.onnx, labels.txt,
novel_labels.txt + sentences.txt + text_embeddings.f32 (open vocabulary), golden/, metrics.json,
and README.md when --readme is given (bundle_readme.py writes the shipped ones). --name and
--description are required. MOV's two outputs (`fused`, `video`) are joined into one
`embeddings [1, 2, 384]` output (branch axis) in model.onnx and stages/head.onnx, because the
runtime reads one output; the golden gets the joined tensor too. Nothing else in the graphs
changes.
"""

from __future__ import annotations

import argparse
import json
import re
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
        "# Trained by `python -m avaction_train.train` (models/train) on the compositional synthetic task; "
        "see README.md.",
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
        "audio_optional = true  # trained with modality dropout 0.3: labels video+flow-only when audio is missing",
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


def install_basic(run: Path, bundle: Path) -> None:
    """Basic-task run into an existing bundle: copies the graph, labels, metrics and goldens and
    writes the run's normalisation into the bundle's own model.toml."""
    norm = json.loads((run / "norm.json").read_text())
    for name in ["model.onnx", "labels.txt", "metrics.json"]:
        shutil.copy(run / name, bundle / name)
    if (bundle / "golden").exists():
        shutil.rmtree(bundle / "golden")
    shutil.copytree(run / "golden", bundle / "golden")
    text = (bundle / "model.toml").read_text()
    blocks = text.split("[[inputs]]")
    out = [blocks[0]]
    for block in blocks[1:]:
        if 'frontend = "image"' in block:
            mean, std = norm["image_mean"], norm["image_std"]
        elif 'frontend = "flow"' in block:
            mean, std = norm["flow_mean"], norm["flow_std"]
        else:
            mean, std = [norm["mel_mean"]], [norm["mel_std"]]
        block = re.sub(r"(?m)^mean = .*$", "mean = " + fmt(mean), block, count=1)
        block = re.sub(r"(?m)^std = .*$", "std = " + fmt(std), block, count=1)
        out.append(block)
    (bundle / "model.toml").write_text("[[inputs]]".join(out))


def install_compositional(run: Path, bundle: Path, metrics: dict, name: str, description: str,
                          readme: Path | None) -> None:
    """Compositional-task run into a new bundle folder (see the module doc)."""
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
    (bundle / "model.toml").write_text(manifest(name, description, arch, norm, cfg, ov, out_name, out_shape,
                                                branches, "labels.txt", background, estimator)
                                       .replace("top_k = ALL", f"top_k = {n_labels}  # every attribute, every window"))
    if readme:
        shutil.copy(readme, bundle / "README.md")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m avaction_train.install_bundle", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="the trainer's --out folder")
    ap.add_argument("bundle", type=Path, help="the bundle folder, e.g. models/mov-small")
    ap.add_argument("--name", help="(compositional) bundle name in model.toml")
    ap.add_argument("--description", help="(compositional) one line for model.toml")
    ap.add_argument("--readme", type=Path, help="(compositional) a README.md to copy into the bundle")
    a = ap.parse_args()
    metrics = json.loads((a.run / "metrics.json").read_text())
    if "arch" in metrics:
        if a.name is None or a.description is None:
            ap.error(f"{a.run} is a compositional-task run ({metrics['arch']}): --name and --description are required")
        install_compositional(a.run, a.bundle, metrics, a.name, a.description, a.readme)
    else:
        given = [f for f, v in (("--name", a.name), ("--description", a.description), ("--readme", a.readme)) if v]
        if given:
            ap.error(f"{a.run} is a basic-task run: {', '.join(given)} {'does' if len(given) == 1 else 'do'} not "
                     "apply (the bundle's model.toml and README.md are kept)")
        install_basic(a.run, a.bundle)
    print(f"installed {a.run} into {a.bundle}")


if __name__ == "__main__":
    main()
