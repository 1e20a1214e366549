"""Copies a training run (model.onnx, golden/, metrics.json, labels.txt) into a model
bundle and writes the run's normalisation constants into the bundle's model.toml."""
import json
import re
import shutil
import sys
from pathlib import Path


def fmt(values):
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def main(run: Path, bundle: Path):
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
    print(f"installed {run} into {bundle}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
