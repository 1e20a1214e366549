"""Writes a compositional-task bundle's README.md from the metrics of its training run (and of
comparison runs): what it is (--about), the results table (single modalities, fusion, confusable
pairs, novel classes, params, head time), per-class and novel-class results, streaming results
(--streaming) and how it was made. Numbers are copied from metrics.json files, never typed by hand.

  python -m avaction_train.bundle_readme models/mov-small --run models/train/runs/c5/mov \
      --compare "DICCAE loss=models/train/runs/c5/mov_diccae" --head-ms 0.41 \
      --streaming streaming.md --about models/train/about/mov-small.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def pct(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def row(name: str, m: dict, head_ms: str) -> str:
    s = m.get("single_modality", {})
    if m["arch"] == "avt":
        conf, novel = "-", pct(m["attributes"].get("novel", {}).get("mAP"))
        fusion = f"mAP {m['fusion']:.3f}"
    else:
        conf = pct(m["seen"]["confusable_pairs"]["acc"])
        n = m.get("novel", {})
        novel = f"{pct(n.get('acc_among_novel_labels'))} / {pct(n.get('acc_among_all_labels'))}"
        fusion = pct(m["fusion"])
    return (f"| {name} | {pct(s.get('video'))} | {pct(s.get('flow'))} | {pct(s.get('audio'))} | {fusion} | "
            f"{conf} | {novel} | {m['params_exported']:,} | {head_ms} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=RUN")
    ap.add_argument("--head-ms", default="-", help="tract 1-thread head ms/hop from `cargo bench --bench stages`")
    ap.add_argument("--about", type=Path, required=True, help="markdown: what the model is (top of the README)")
    ap.add_argument("--streaming", type=Path, help="markdown: streaming results from tests/e2e.rs")
    a = ap.parse_args()
    m = json.loads((a.run / "metrics.json").read_text())
    name = a.bundle.name
    ov = m["arch"] != "avt"
    out = [a.about.read_text().rstrip(), ""]
    out += ["## Measured", "",
            "Held-out scenes (seeds never used in training: validation 100-105 for seen classes, "
            "200-205 for the held-out classes); windows of 16 frames every 8 frames. "
            + ("Accuracy is top-1 among the 27 seen labels (26 classes + \"nothing happens\"); "
               "novel = top-1 among the 6 held-out labels / among all 33 labels. "
               "\"X only\" is the same model with the other two inputs replaced by their absent value "
               "(the model is trained with modality dropout 0.3 for this). "
               "Confusable pairs: two-way accuracy on the class pairs that differ in only one of "
               "object, motion or sound." if ov else
               "Numbers are mean average precision over the 6 attributes (video/flow/audio only: same "
               "model, other inputs absent); novel = mAP on the scenes of held-out classes.")
            + " Head ms/hop: tract, 1 thread, median (`cargo bench --bench stages`).", "",
            "| model | video only | flow only | audio only | fusion | confusable pairs acc. | "
            "novel (held-out) classes acc. (among novel / among all) | params | head ms/hop (tract, 1 core) |",
            "|---|---|---|---|---|---|---|---|---|",
            row(f"**{name}**", m, a.head_ms)]
    for spec in a.compare:
        label, _, run = spec.partition("=")
        out.append(row(label, json.loads((Path(run) / "metrics.json").read_text()), "-"))
    out.append("")
    if ov:
        c = m["seen"]["confusable_pairs"]
        out += [f"Confusable pairs by the part that differs: "
                + ", ".join(f"{k} {v:.3f}" for k, v in c["acc_by_part"].items())
                + f" ({c['pairs']} pairs, {c['decisions']} decisions).", ""]
        if m.get("extra_val"):
            for k, v in m["extra_val"].items():
                out.append(f"Same validation scenes with {v['flow_estimator']} flow instead of "
                           f"{m.get('flow_estimator', 'dis-fast')}: {v['acc_among_seen_labels']:.3f}.")
            out.append("")
        n = m.get("novel", {})
        if n:
            out += ["Held-out classes (never in a training scene), accuracy among the 6 held-out labels"
                    + (f" with β_novel = {n['beta_novel']}" if m["arch"] == "mov" else "") + ":", ""]
            out += [f"- {k}: {v:.3f}" for k, v in n["per_class_acc_among_novel"].items()]
            if "acc_among_novel_labels_fused_only" in n:
                out += ["", f"With the fused branch only (β = 1): {n['acc_among_novel_labels_fused_only']:.3f}."]
            out.append("")
        out += ["Per-class accuracy (seen classes, validation windows):", "", "| class | acc. |", "|---|---|"]
        out += [f"| {k} | {v:.3f} |" for k, v in m["seen"]["per_class_acc"].items()]
    else:
        out += ["Per-attribute average precision (validation windows of seen-class scenes / scenes of "
                "held-out classes):", "", "| attribute | AP (val) | AP (novel scenes) |", "|---|---|---|"]
        novel_ap = m["attributes"].get("novel", {}).get("ap", {})
        for k, v in m["attributes"]["val"]["ap"].items():
            out.append(f"| {k} | {pct(v)} | {pct(novel_ap.get(k))} |")
    out.append("")
    if a.streaming:
        out += [a.streaming.read_text().rstrip(), ""]
    out += ["## How it was made", "",
            f"`models/train/build_compositional.sh` (data, all runs, install). This run: `{m['training_command']}` "
            f"(seed {m['seed']}, {m['epochs']} epochs, {m['train_windows']} training windows, "
            f"{m['train_seconds']:.0f} s on 1 CPU thread, torch {m['torch_version']}). "
            "Flow and log-mel come from the runtime's own frontends (`avaction features`), so training "
            "saw exactly what the device computes. Files: `model.onnx` (single graph, for checks), "
            "`stages/` (what the runtime runs), `golden/` (PyTorch inputs, stage tokens and outputs that "
            "tests/model_staged.rs checks tract against, ≤ 1e-4), `metrics.json` (everything above and the "
            "training history)"
            + (", `labels.txt` (the seen labels), `novel_labels.txt` (the held-out sentences), "
               "`sentences.txt` + `text_embeddings.f32` (all-MiniLM-L6-v2 embeddings of all 33 sentences)."
               if ov else ", `labels.txt` (the attributes)."), "",
            "The synthetic scenes and these weights are ours (generated and trained here); "
            "all-MiniLM-L6-v2 is Apache-2.0.", ""]
    (a.bundle / "README.md").write_text("\n".join(out))
    print(f"wrote {a.bundle / 'README.md'}")


if __name__ == "__main__":
    main()
