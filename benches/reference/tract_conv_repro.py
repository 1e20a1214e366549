"""Minimal reproduction of where tract trails onnxruntime on the real-scale encoders (issue 15),
for a report upstream: each convolution of the stand-in's frame encoder
(models/train/avaction_train/realscale.py `CnnEncoder`: 3x3, stride 2, padding 1, at 224x224) as
a one-node ONNX graph, timed in tract (its Python wheel, the version the runtime links) and in
onnxruntime, one thread each, same process, interleaved; with tract's own profile of the node
(how much is the matrix product, the padding copy, the im2col).

    .venv-train/bin/python benches/reference/tract_conv_repro.py [--runs 30] [--out target/tract-repro]

Writes the ONNX files to --out (not committed) and prints one table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import tract
from onnx import TensorProto, helper, numpy_helper

# (input channels, output channels, input side): the five convolutions of CnnEncoder at 224
LAYERS = [(3, 32, 224), (32, 64, 112), (64, 96, 56), (96, 128, 28), (128, 128, 14)]


def conv_graph(cin: int, cout: int, side: int, path: Path) -> None:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.1, (cout, cin, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, (cout,)).astype(np.float32), "b")
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                            pads=[1, 1, 1, 1])
    out = side // 2
    g = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, side, side])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, out, out])], [w, b])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("target/tract-repro"))
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    print(f"tract {tract.version()} vs onnxruntime {ort.__version__}, 1 thread, median of {a.runs} interleaved runs")
    print("| conv (3x3 s2 p1) | MMAC | tract ms | onnxruntime ms | tract / ort | tract GFLOP/s | tract profile (ms) |")
    print("|---|---|---|---|---|---|---|")
    totals = [0.0, 0.0]
    for cin, cout, side in LAYERS:
        path = a.out / f"conv_{cin}x{cout}_{side}.onnx"
        conv_graph(cin, cout, side, path)
        x = np.random.default_rng(1).random((1, cin, side, side), dtype=np.float32)
        m = tract.onnx().load(str(path))
        m.set_input_fact(0, f"1,{cin},{side},{side},f32")
        r = m.into_model().into_runnable()
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        yt, yo = r.run([x])[0].to_numpy(), s.run(None, {"x": x})[0]
        assert np.abs(yt - yo).max() < 1e-3, "tract and onnxruntime disagree"
        tt, to = [], []
        for _ in range(a.runs):
            t = time.perf_counter()
            r.run([x])
            tt.append(time.perf_counter() - t)
            t = time.perf_counter()
            s.run(None, {"x": x})
            to.append(time.perf_counter() - t)
        mt, mo = np.median(tt) * 1e3, np.median(to) * 1e3
        totals[0] += mt
        totals[1] += mo
        mmac = cin * 9 * cout * (side // 2) ** 2 / 1e6
        prof = json.loads(r.profile_json([x]))
        ops = Counter()
        for n in prof["nodes"]:
            ops[n["op_name"]] += n.get("secs_per_iter", 0.0) * 1e3
        shown = ", ".join(f"{op} {ms:.2f}" for op, ms in ops.most_common(3) if ms >= 0.01)
        print(f"| {cin}->{cout} at {side}x{side} | {mmac:.1f} | {mt:.2f} | {mo:.2f} | {mt / mo:.1f}x | "
              f"{2 * mmac / mt:.0f} | {shown} |")
    print(f"| all five | | {totals[0]:.2f} | {totals[1]:.2f} | {totals[0] / totals[1]:.1f}x | | |")


if __name__ == "__main__":
    main()
