"""The trainer: trains one model on runtime dumps (`avaction features`, or fake_dump.py), reports
held-out results, exports ONNX (single graph + staged graphs) checked with onnxruntime, and writes
goldens, normalisation, labels and metrics into --out. Deterministic for a given --seed and
--threads (CPU).

  python -m avaction_train.train --arch cavnet-small --data DUMP [--data DUMP2 ...] --val VALDUMP \\
      --out models/train/runs/cavnet --epochs 30 --seed 0 [--modalities video,flow,audio]
  python -m avaction_train.train --arch mov --data TRAIN --val VAL --novel NOVEL \\
      --text-embeddings TEXT.npy --out models/train/runs/mov --epochs 30 --seed 0 [--loss diccae]
  python -m avaction_train.train --arch avt --data TRAIN --val VAL --out models/train/runs/avt

--arch picks the task and the model:
  cavnet-small  basic task (6 classes): closed-set CAV-Net classifier, logits (cavnet.py; trained
                by basic.py); the model of models/cavnet-small
  mov, cavnet   compositional task: open-vocabulary embeddings scored against label-text
                embeddings (fusion_models.py; compositional.py); models/mov-small,
                models/cavnet-ov-small
  avt           compositional task: multi-label moderation attributes; models/avt-moderation
Options listed under "basic" or "compositional" apply to those archs only (giving one to another
arch is an error). Where the defaults differ, the help says "basic / compositional".
"""

from __future__ import annotations

import argparse
import sys

from . import basic, compositional
from .common import rel
from .fusion_models import ARCHS as COMPOSITIONAL_ARCHS

BASIC_ARCHS = ("cavnet-small",)
# Defaults per family; an option missing from a family's table does not apply to it.
SHARED = {"epochs": 30, "seed": 0, "batch_size": 32, "lr": 2e-3, "weight_decay": 0.05, "no_augment": False,
          "dim": 64, "depth": 1, "cross_depth": 1}
DEFAULTS = {
    "basic": {**SHARED, "modality_dropout": 0.0, "threads": 2, "label_smoothing": 0.05,
              "modalities": "video,flow,audio"},
    "compositional": {**SHARED, "modality_dropout": 0.3, "threads": 1, "loss": "ce", "novel": [], "extra_val": [],
                      "text_embeddings": None, "avt_layers": 2, "bottlenecks": 4, "tau": 0.01, "tau_video": 0.003,
                      "beta_base": 1.0, "beta_novel": 0.25, "mov_alpha": 0.5, "avc_weight": 0.1, "avc_tau": 0.07,
                      "diccae_weight": 0.5, "diccae_pca": 2, "diccae_update": 256},
}
# Recorded first in the training command, in this order; the rest follow in parser order.
LEADING = ("data", "val", "novel", "text_embeddings", "out", "epochs", "seed")
PATHS = ("data", "val", "novel", "text_embeddings", "out")


def family(arch: str) -> str:
    return "basic" if arch in BASIC_ARCHS else "compositional"


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m avaction_train.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=[*BASIC_ARCHS, *COMPOSITIONAL_ARCHS], required=True)
    ap.add_argument("--data", action="append", required=True,
                    help="training dump dir (repeatable; compositional: seen classes only)")
    ap.add_argument("--val", action="append", required=True,
                    help="held-out dump dir (repeatable; compositional: seen classes)")
    ap.add_argument("--out", required=True, help="run folder to write")
    ap.add_argument("--epochs", type=int, help="(30)")
    ap.add_argument("--seed", type=int, help="(0)")
    ap.add_argument("--batch-size", type=int, help="(32)")
    ap.add_argument("--lr", type=float, help="(2e-3)")
    ap.add_argument("--weight-decay", type=float, help="(0.05)")
    ap.add_argument("--modality-dropout", type=float,
                    help="p of zeroing each modality of a training window, never all three (0.0 / 0.3)")
    ap.add_argument("--no-augment", action="store_true", default=None)
    ap.add_argument("--threads", type=int, help="torch threads (2 / 1)")
    ap.add_argument("--dim", type=int, help="token width (64)")
    ap.add_argument("--depth", "--self-depth", dest="depth", type=int,
                    help="self-attention blocks per modality; MOV: temporal layers per modality (1)")
    ap.add_argument("--cross-depth", type=int, help="cross-attention block pairs; MOV: cross layers (1)")
    b = ap.add_argument_group("basic (--arch cavnet-small)")
    b.add_argument("--label-smoothing", type=float, help="(0.05)")
    b.add_argument("--modalities", help="subset of video,flow,audio; missing ones are zeroed (all three)")
    c = ap.add_argument_group("compositional (--arch mov, cavnet, avt)")
    c.add_argument("--loss", choices=["ce", "diccae"], help="diccae: + DICCAE confusion loss, mov and cavnet (ce)")
    c.add_argument("--novel", action="append", help="held-out dump of novel classes (repeatable; optional)")
    c.add_argument("--extra-val", action="append", metavar="NAME=DUMP",
                   help="also report seen-label accuracy on this held-out dump (e.g. the same scenes with "
                        "another flow estimator); repeatable")
    c.add_argument("--text-embeddings", help="float32 .npy [C,384]: label text embeddings (mov, cavnet; text_embed.py)")
    c.add_argument("--avt-layers", type=int, help="AVT bottleneck fusion layers (2)")
    c.add_argument("--bottlenecks", type=int, help="AVT bottleneck tokens (4)")
    c.add_argument("--tau", type=float, help="training temperature / tau_f (0.01)")
    c.add_argument("--tau-video", type=float, help="MOV tau_v for P_v at inference (0.003)")
    c.add_argument("--beta-base", type=float, help="MOV beta for base (seen) labels (1.0)")
    c.add_argument("--beta-novel", type=float, help="MOV beta for novel labels (0.25)")
    c.add_argument("--mov-alpha", type=float, help="MOV loss weight of fused vs video output (0.5)")
    c.add_argument("--avc-weight", type=float, help="AVT audio-video contrastive loss weight (0.1)")
    c.add_argument("--avc-tau", type=float, help="(0.07)")
    c.add_argument("--diccae-weight", type=float, help="(0.5)")
    c.add_argument("--diccae-pca", type=int, help="PCA dims before circle fitting, 0: none (2)")
    c.add_argument("--diccae-update", type=int, help="update-set windows, from the training set (256)")
    return ap


def resolve(ap: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Fills in the defaults of the arch's family; an option of the other family is an error."""
    defaults = DEFAULTS[family(args.arch)]
    for key, value in list(vars(args).items()):
        if key in ("arch", "data", "val", "out"):
            continue
        if key in defaults:
            if value is None:
                setattr(args, key, defaults[key])
        elif value is not None:
            ap.error(f"{flag(key)} does not apply to --arch {args.arch}")
        else:
            delattr(args, key)
    return args


def training_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (repository-relative paths, non-default options)."""
    defaults = DEFAULTS[family(args.arch)]
    cmd = ["python", "-m", "avaction_train.train", "--arch", args.arch]

    def add(key: str, value) -> None:
        if key in PATHS:
            value = rel(value)
        elif key == "extra_val":
            name, _, path = value.partition("=")
            value = f"{name}={rel(path)}"
        cmd.extend([flag(key)] if value is True else [flag(key), str(value)])

    for key in LEADING:
        value = getattr(args, key, None)
        for v in value if isinstance(value, list) else [] if value is None else [value]:
            add(key, v)
    for key, value in vars(args).items():
        if key in LEADING or key == "arch" or value == defaults[key]:
            continue
        for v in value if isinstance(value, list) else [value]:
            add(key, v)
    return " ".join(cmd)


def main(argv: list[str] | None = None) -> None:
    ap = parser()
    args = resolve(ap, ap.parse_args(argv))
    command = training_command(args)
    (basic if family(args.arch) == "basic" else compositional).run(args, command)


if __name__ == "__main__":
    main(sys.argv[1:])
