"""The compositional task's models, MOV, CAV-Net (open vocabulary) and AVT (attributes)
(fusion_models.py): training (cross-entropy against label-text embeddings, optionally with DICCAE,
diccae.py; AVT: BCE + audio-video contrastive loss), evaluation (seen / novel classes, confusable
pairs, single modalities, attribute AP), staged ONNX export (video/flow/audio encoders + head)
with onnxruntime checks, goldens and metrics. Run through the trainer:
`python -m avaction_train.train --arch mov|cavnet|avt ...` (train.py). See README.md for the
outputs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .common import (
    ORT_TOLERANCE,
    confusion,
    deterministic,
    onnx_ops,
    ort_times_ms,
    print_confusion,
    rel,
    training_setup,
    write_json,
)
from .data import DumpSubset, CompositionalDump, Normaliser, augment, compute_norm
from .diccae import confusion_degree, confusion_loss
from .fusion_models import MODALITIES, FusionConfig, build, count_params

PARTS = ("object", "motion", "sound")


# ----------------------------------------------------------------------------- data
def zero_modalities(batch, keep: set[str]):
    f, fl, m = batch
    return (f if "video" in keep else f * 0.0, fl if "flow" in keep else fl * 0.0, m if "audio" in keep else m * 0.0)


@torch.no_grad()
def run_model(model, ds: CompositionalDump, norm: Normaliser, keep=frozenset(MODALITIES), bs: int = 64) -> dict:
    model.eval()
    outs = {n: [] for n in model.OUTPUTS}
    for s in range(0, len(ds), bs):
        idx = np.arange(s, min(s + bs, len(ds)))
        for n, o in zip(model.OUTPUTS, model(*zero_modalities(norm.batch(ds, idx), set(keep)))):
            outs[n].append(o.numpy())
    return {n: np.concatenate(v) for n, v in outs.items()}


# ----------------------------------------------------------------------------- scoring
def softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(1, keepdims=True)


def ov_scores(outs: dict, text: np.ndarray, cands: list[int], beta: np.ndarray, tau_f: float, tau_v: float):
    """P over the candidate labels `cands` (columns in that order).
    CAV-Net: softmax(cos(fused, t)/tau_f). MOV (eq. 11-12): beta_j P_f(j) + (1 - beta_j) P_v(j)."""
    t = text[cands]
    p = softmax(outs["fused"] @ t.T / tau_f)
    if "video" in outs:
        pv = softmax(outs["video"] @ t.T / tau_v)
        p = beta[None, :] * p + (1.0 - beta[None, :]) * pv
    return p


def one_part_pairs(parts: list[dict], classes: list[int]) -> list[tuple[int, int, str]]:
    """Pairs of classes (non-background) that differ in exactly one of object, motion, sound."""
    out = []
    for a_i, a in enumerate(classes):
        for b in classes[a_i + 1 :]:
            pa, pb = parts[a], parts[b]
            if pa["object"] is None or pb["object"] is None:
                continue
            diff = [k for k in PARTS if pa[k] != pb[k]]
            if len(diff) == 1:
                out.append((a, b, diff[0]))
    return out


def confusable_report(p: np.ndarray, y: np.ndarray, cands: list[int], parts: list[dict]) -> dict:
    """Two-way accuracy on one-attribute-apart pairs: for every pair {i, j} of candidate classes
    differing in exactly one part and every window of class i (or j), is P(true) > P(other)?
    Pooled over all (window, pair) decisions, and per differing part. Also the one-part error rate:
    the fraction of windows whose top-1 is wrong *and* one part away from the truth."""
    col = {c: k for k, c in enumerate(cands)}
    pairs = one_part_pairs(parts, cands)
    hits = {k: [0, 0] for k in (*PARTS, "all")}
    for a, b, part in pairs:
        for true, other in ((a, b), (b, a)):
            rows = np.nonzero(y == true)[0]
            if len(rows) == 0:
                continue
            ok = int((p[rows, col[true]] > p[rows, col[other]]).sum())
            for key in (part, "all"):
                hits[key][0] += ok
                hits[key][1] += len(rows)
    pred = np.array(cands)[p.argmax(1)]
    near = {(a, b) for a, b, _ in pairs} | {(b, a) for a, b, _ in pairs}
    one_part_err = float(np.mean([(int(t), int(q)) in near for t, q in zip(y, pred)]))
    return {
        "definition": "2-way acc P(true) > P(other) over class pairs differing in exactly one of object/motion/sound",
        "pairs": len(pairs),
        "acc": round(hits["all"][0] / max(hits["all"][1], 1), 4),
        "acc_by_part": {k: round(hits[k][0] / max(hits[k][1], 1), 4) for k in PARTS},
        "decisions": hits["all"][1],
        "one_part_error_rate": round(one_part_err, 4),
    }


def average_precision(score: np.ndarray, target: np.ndarray) -> float | None:
    if target.sum() == 0:
        return None
    order = np.argsort(-score, kind="stable")
    t = target[order].astype(np.float64)
    prec = np.cumsum(t) / np.arange(1, len(t) + 1)
    return float((prec * t).sum() / t.sum())


def ap_report(logits: np.ndarray, target: np.ndarray, names: list[str]) -> dict:
    aps = {n: average_precision(logits[:, i], target[:, i]) for i, n in enumerate(names)}
    valid = [v for v in aps.values() if v is not None]
    return {
        "ap": {n: (None if v is None else round(v, 4)) for n, v in aps.items()},
        "mAP": round(float(np.mean(valid)), 4) if valid else None,
    }


# ----------------------------------------------------------------------------- export
class _Encoder(torch.nn.Module):
    def __init__(self, model, which: str):
        super().__init__()
        self.model, self.which = model, which

    def forward(self, x):
        return getattr(self.model, f"encode_{self.which}")(x)


class _Head(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, video_tokens, flow_tokens, audio_tokens):
        return self.model.head(video_tokens, flow_tokens, audio_tokens)


def _export(module, args, path: Path, inputs: list[str], outputs: list[str]) -> None:
    torch.onnx.export(module.eval(), args, str(path), input_names=inputs, output_names=outputs,
                      opset_version=17, do_constant_folding=True, dynamo=False)


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _median_ms(sess, feed: dict, runs: int = 50) -> float:
    return round(float(np.median(ort_times_ms(sess, feed, runs))), 3)


def staged_tokens(sess: dict, f: np.ndarray, fl: np.ndarray, m: np.ndarray, seg: int):
    vt = np.stack([sess["video_encoder"].run(None, {"image": f[:, t]})[0] for t in range(f.shape[1])], 1)
    ft = np.stack([sess["flow_encoder"].run(None, {"image": fl[:, t]})[0] for t in range(fl.shape[1])], 1)
    at = np.stack([sess["audio_encoder"].run(None, {"logmel": m[:, seg * t : seg * t + seg]})[0]
                   for t in range(m.shape[1] // seg)], 1)
    return vt, ft, at


def export_all(model, cfg: FusionConfig, out: Path, samples: list[tuple]) -> dict:
    """model.onnx + stages/*.onnx; checks onnxruntime == torch and staged == single (<= 1e-4)."""
    model.eval()
    outs = list(model.OUTPUTS)
    im = cfg.image_size
    _export(model, (torch.zeros(1, cfg.num_frames, 3, im, im), torch.zeros(1, cfg.num_flow, 3, im, im),
                    torch.zeros(1, cfg.mel_frames, cfg.mel_bins)), out / "model.onnx", ["frames", "flow", "logmel"], outs)
    sdir = out / "stages"
    sdir.mkdir(parents=True, exist_ok=True)
    img = torch.zeros(1, 3, im, im)
    _export(_Encoder(model, "video"), (img,), sdir / "video_encoder.onnx", ["image"], ["token"])
    _export(_Encoder(model, "flow"), (img,), sdir / "flow_encoder.onnx", ["image"], ["token"])
    _export(_Encoder(model, "audio"), (torch.zeros(1, cfg.segment_frames, cfg.mel_bins),),
            sdir / "audio_encoder.onnx", ["logmel"], ["token"])
    d = cfg.dim
    _export(_Head(model), (torch.zeros(1, cfg.num_frames, d), torch.zeros(1, cfg.num_flow, d),
                           torch.zeros(1, cfg.audio_tokens, d)),
            sdir / "head.onnx", ["video_tokens", "flow_tokens", "audio_tokens"], outs)
    single = _session(out / "model.onnx")
    sess = {n: _session(sdir / f"{n}.onnx") for n in ("video_encoder", "flow_encoder", "audio_encoder", "head")}
    diff_torch, diff_staged = 0.0, 0.0
    for f, fl, m in samples:
        with torch.no_grad():
            ref = [o.numpy() for o in model(f, fl, m)]
        got = single.run(outs, {"frames": f.numpy(), "flow": fl.numpy(), "logmel": m.numpy()})
        vt, ft, at = staged_tokens(sess, f.numpy(), fl.numpy(), m.numpy(), cfg.segment_frames)
        st = sess["head"].run(outs, {"video_tokens": vt, "flow_tokens": ft, "audio_tokens": at})
        diff_torch = max(diff_torch, max(float(np.abs(r - g).max()) for r, g in zip(ref, got)))
        diff_staged = max(diff_staged, max(float(np.abs(s - g).max()) for s, g in zip(st, got)))
    if not diff_torch <= ORT_TOLERANCE:
        raise SystemExit(f"{out / 'model.onnx'}: onnxruntime differs from torch by {diff_torch:.3g} > {ORT_TOLERANCE}")
    if not diff_staged <= ORT_TOLERANCE:
        raise SystemExit(f"{sdir}: staged graphs differ from model.onnx by {diff_staged:.3g} > {ORT_TOLERANCE}")
    f, fl, m = (x.numpy() for x in samples[0])
    vt, ft, at = staged_tokens(sess, f, fl, m, cfg.segment_frames)
    times = {
        "model": _median_ms(single, {"frames": f, "flow": fl, "logmel": m}),
        "video_encoder": _median_ms(sess["video_encoder"], {"image": f[:, 0]}),
        "flow_encoder": _median_ms(sess["flow_encoder"], {"image": fl[:, 0]}),
        "audio_encoder": _median_ms(sess["audio_encoder"], {"logmel": m[:, : cfg.segment_frames]}),
        "head": _median_ms(sess["head"], {"video_tokens": vt, "flow_tokens": ft, "audio_tokens": at}),
    }
    out_shapes = {n: list(o.shape) for n, o in zip(outs, sess["head"].run(
        outs, {"video_tokens": vt, "flow_tokens": ft, "audio_tokens": at}))}
    return {
        "samples_checked": len(samples),
        "max_abs_diff_ort_vs_torch": diff_torch,
        "max_abs_diff_staged_vs_single": diff_staged,
        "ort_ms_median_1_thread": times,
        "files": {
            "model.onnx": f"frames [1,16,3,64,64], flow [1,15,3,64,64], logmel [1,64,128] -> {out_shapes}",
            "stages/video_encoder.onnx": f"image [1,3,64,64] -> token [1,{d}] (one RGB frame)",
            "stages/flow_encoder.onnx": f"image [1,3,64,64] -> token [1,{d}] (one MOV flow image)",
            "stages/audio_encoder.onnx": f"logmel [1,4,128] -> token [1,{d}] (mel frames 4t..4t+3)",
            "stages/head.onnx": f"video_tokens [1,16,{d}], flow_tokens [1,15,{d}], audio_tokens [1,16,{d}] -> {out_shapes}",
        },
        "onnx_bytes": {p.name: p.stat().st_size for p in [out / "model.onnx", *sorted(sdir.glob("*.onnx"))]},
    }


def write_golden(out: Path, model, ds: CompositionalDump, norm: Normaliser, i: int) -> dict:
    """One held-out window: normalised inputs, per-stage outputs (tokens), final outputs, raw values."""
    f, fl, m = norm.batch(ds, np.array([i]))
    model.eval()
    with torch.no_grad():
        vt, ft, at = model.tokens(f, fl, m)
        outs = model.head(vt, ft, at)
    gdir = out / "golden"
    gdir.mkdir(parents=True, exist_ok=True)

    def dump(name: str, arr, dtype: str) -> dict:
        arr = np.ascontiguousarray(np.asarray(arr)).astype(dtype)
        arr.tofile(gdir / name)
        return {"file": name, "shape": list(arr.shape), "dtype": "f32" if dtype == "<f4" else "u8"}

    entries = {
        "inputs": {
            "frames": dump("inputs_frames.bin", f.numpy(), "<f4"),
            "flow": dump("inputs_flow.bin", fl.numpy(), "<f4"),
            "logmel": dump("inputs_logmel.bin", m.numpy(), "<f4"),
        },
        "stages": {
            "video_tokens": dump("video_tokens.bin", vt.numpy(), "<f4"),
            "flow_tokens": dump("flow_tokens.bin", ft.numpy(), "<f4"),
            "audio_tokens": dump("audio_tokens.bin", at.numpy(), "<f4"),
        },
        "outputs": {n: dump(f"{n}.bin", o.numpy(), "<f4") for n, o in zip(model.OUTPUTS, outs)},
        "raw": {
            "frames": dump("raw_frames.bin", ds.frames[i], "u1"),
            "flow": dump("raw_flow.bin", ds.flow[i], "u1"),
            "logmel": dump("raw_logmel.bin", ds.logmel[i], "<f4"),
        },
        "window_index": i,
        "label": int(ds.labels[i]),
        "label_text": ds.labels_names[int(ds.labels[i])],
        "attributes": ds.attributes[i].tolist(),
        "tolerance": ORT_TOLERANCE,
        "note": "raw little-endian arrays, C order; inputs_* are the normalised model inputs; stages: the "
                "encoders' tokens (video_encoder per frame t -> video_tokens[0,t], audio_encoder on "
                "inputs_logmel[0,4t:4t+4] -> audio_tokens[0,t]), the head's inputs",
    }
    write_json(gdir / "golden.json", entries)
    return entries


# ----------------------------------------------------------------------------- run
def run(args, command: str) -> None:
    """Trains --arch mov, cavnet or avt with the options of train.py (all filled in); `command` is
    the training command recorded in metrics.json."""
    t_start = time.time()
    deterministic(args.seed, args.threads)
    ov = args.arch in ("mov", "cavnet")
    if args.loss == "diccae" and not ov:
        raise SystemExit("--loss diccae needs a classifier (--arch mov or cavnet)")

    train, val = CompositionalDump(args.data), CompositionalDump(args.val)
    novel_ds = CompositionalDump(args.novel) if args.novel else None
    for name, ds in (("val", val), ("novel", novel_ds)):
        if ds is not None and (ds.labels_names != train.labels_names or ds.novel != train.novel
                               or ds.attribute_names != train.attribute_names):
            raise SystemExit(f"{name} dump: labels / novel / attributes differ from the training dump")
    names = train.labels_names
    k = len(names)
    novel = train.novel
    seen = [c for c in range(k) if c not in novel]
    if any(int(c) in novel for c in np.unique(train.labels)):
        raise SystemExit("training dump contains novel-class windows")
    seen_pos = np.full(k, -1, np.int64)
    seen_pos[seen] = np.arange(len(seen))
    text = None
    if ov:
        if not args.text_embeddings:
            raise SystemExit(f"--arch {args.arch} needs --text-embeddings (python -m avaction_train.text_embed)")
        text = np.load(args.text_embeddings).astype(np.float32)
        if text.shape != (k, 384):
            raise SystemExit(f"{args.text_embeddings}: expected [{k}, 384] (one row per label), got {list(text.shape)}")
        text = text / np.linalg.norm(text, axis=1, keepdims=True)
    text_seen = torch.from_numpy(text[seen]) if ov else None
    overlap = set(train.scene_seeds) & (set(val.scene_seeds) | set(novel_ds.scene_seeds if novel_ds else []))
    print(f"train {len(train)} windows, val {len(val)}, novel {len(novel_ds) if novel_ds else 0}; "
          f"{k} labels ({len(novel)} novel), {len(train.attribute_names)} attributes")
    if overlap:
        print(f"WARNING: {len(overlap)} scene seeds appear in both train and held-out dumps")

    norm_d = compute_norm(train)
    norm = Normaliser(norm_d)
    cfg = FusionConfig(arch=args.arch, dim=args.dim, depth=args.depth, cross_depth=args.cross_depth,
                       avt_layers=args.avt_layers, bottlenecks=args.bottlenecks,
                       num_attributes=len(train.attribute_names))
    model = build(cfg)
    n_params = count_params(model)
    n_export = n_params - (sum(p.numel() for n, p in model.named_parameters() if n.startswith("g_")))
    print(f"{args.arch} params {n_params} (exported {n_export})")

    opt, sched, sample_w, gen = training_setup(model, args, train.labels, k)
    # DICCAE update set: a fixed class-balanced subset of the training windows
    rng = np.random.default_rng(args.seed)
    upd = np.sort(np.concatenate([rng.permutation(np.nonzero(train.labels == c)[0])[: max(2, args.diccae_update // len(seen))]
                                  for c in seen]))
    m_hat = torch.ones(len(seen), len(seen))
    m_raw = None
    history = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        model.train()
        order = torch.multinomial(sample_w, len(train), replacement=True, generator=gen).numpy()
        sums = {"loss": 0.0, "aux": 0.0}
        correct, seen_n = 0, 0
        for s in range(0, len(order), args.batch_size):
            idx = np.sort(order[s : s + args.batch_size])
            f, fl, m = norm.batch(train, idx)
            if not args.no_augment:
                f, fl, m = augment(f, fl, m, gen, norm.mel_std, args.modality_dropout)
            vt, ft, at = model.tokens(f, fl, m)
            outs = model.head(vt, ft, at)
            aux = torch.zeros(())
            if ov:
                y = torch.from_numpy(seen_pos[train.labels[idx]])
                logits = outs[0] @ text_seen.T / args.tau
                loss = F.cross_entropy(logits, y)
                if args.arch == "mov":
                    lv = F.cross_entropy(outs[1] @ text_seen.T / args.tau, y)
                    loss = args.mov_alpha * loss + (1 - args.mov_alpha) * lv
                if args.loss == "diccae":
                    aux = confusion_loss(outs[0], y, m_hat)
                    loss = loss + args.diccae_weight * aux
                correct += int((logits.argmax(1) == y).sum())
            else:
                target = torch.from_numpy(train.attributes[idx]).float()
                loss = F.binary_cross_entropy_with_logits(outs[0], target)
                if args.avc_weight > 0:
                    # windows whose visual or audio input was dropped carry no pair; skip them
                    ok = ((f.flatten(1).abs().sum(1) + fl.flatten(1).abs().sum(1)) > 0) & (m.flatten(1).abs().sum(1) > 0)
                    if int(ok.sum()) >= 2:
                        gv, ga = model.avc_embeddings(vt[ok], ft[ok], at[ok])
                        sim = gv @ ga.T / args.avc_tau
                        lab = torch.arange(len(sim))
                        aux = 0.5 * (F.cross_entropy(sim, lab) + F.cross_entropy(sim.T, lab))
                        loss = loss + args.avc_weight * aux
                correct += int(((outs[0] > 0).float() == target).float().mean(1).sum())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            sums["loss"] += loss.item() * len(idx)
            sums["aux"] += aux.item() * len(idx)
            seen_n += len(idx)
        rec = {"epoch": epoch, "loss": round(sums["loss"] / seen_n, 4), "aux_loss": round(sums["aux"] / seen_n, 4),
               "train_acc": round(correct / seen_n, 4)}
        if args.loss == "diccae":
            sub = DumpSubset(train, upd)
            emb = run_model(model, sub, norm)["fused"]
            m_raw, mh = confusion_degree(emb, seen_pos[sub.labels], len(seen), pca=args.diccae_pca)
            m_hat = torch.from_numpy(mh).float()
            off = m_raw[~np.eye(len(seen), dtype=bool)]
            rec["confusion_degree_mean"] = round(float(off.mean()), 4)
        vo = run_model(model, val, norm)
        if ov:
            p = ov_scores(vo, text, seen, np.full(len(seen), args.beta_base), args.tau, args.tau_video)
            rec["val_acc"] = round(float((np.array(seen)[p.argmax(1)] == val.labels).mean()), 4)
        else:
            rec["val_mAP"] = ap_report(vo["attributes"], val.attributes, val.attribute_names)["mAP"]
        rec["seconds"] = round(time.time() - t0, 1)
        history.append(rec)
        print("  ".join(f"{k_} {v}" for k_, v in rec.items()), flush=True)
    train_seconds = time.time() - t_start

    # ------------------------------------------------------------------ evaluation (final weights)
    metrics: dict = {"arch": args.arch, "loss": args.loss}
    single = {}
    if ov:
        beta_all = np.array([args.beta_novel if c in novel else args.beta_base for c in range(k)])
        beta_seen = np.full(len(seen), args.beta_base)
        vo = run_model(model, val, norm)
        p = ov_scores(vo, text, seen, beta_seen, args.tau, args.tau_video)
        pred = np.array(seen)[p.argmax(1)]
        acc = float((pred == val.labels).mean())
        cm = confusion(seen_pos[val.labels], seen_pos[pred], len(seen))
        seen_names = [names[c] for c in seen]
        print(f"held-out seen windows: accuracy {acc:.4f} among {len(seen)} seen labels")
        print_confusion(cm, seen_names)
        p_all = ov_scores(vo, text, list(range(k)), beta_all, args.tau, args.tau_video)
        metrics["seen"] = {
            "windows": len(val),
            "acc_among_seen_labels": round(acc, 4),
            "acc_among_all_labels": round(float((p_all.argmax(1) == val.labels).mean()), 4),
            "per_class_acc": {seen_names[i]: round(float(cm[i, i] / max(cm[i].sum(), 1)), 4) for i in range(len(seen))},
            "confusion_matrix": {"rows_true_cols_pred": seen_names, "matrix": cm.tolist()},
            "confusable_pairs": confusable_report(p, val.labels, seen, val.class_parts),
        }
        for keep in MODALITIES:
            po = ov_scores(run_model(model, val, norm, {keep}), text, seen, beta_seen, args.tau, args.tau_video)
            single[keep] = round(float((np.array(seen)[po.argmax(1)] == val.labels).mean()), 4)
        if novel_ds is not None:
            no = run_model(model, novel_ds, norm)
            pa = ov_scores(no, text, list(range(k)), beta_all, args.tau, args.tau_video)
            pn = ov_scores(no, text, novel, np.full(len(novel), args.beta_novel), args.tau, args.tau_video)
            pred_n = np.array(novel)[pn.argmax(1)]
            metrics["novel"] = {
                "windows": len(novel_ds),
                "acc_among_all_labels": round(float((pa.argmax(1) == novel_ds.labels).mean()), 4),
                "acc_among_novel_labels": round(float((pred_n == novel_ds.labels).mean()), 4),
                "per_class_acc_among_novel": {
                    names[c]: round(float((pred_n[novel_ds.labels == c] == c).mean()), 4)
                    for c in novel if np.any(novel_ds.labels == c)},
                "beta_novel": args.beta_novel,
            }
            if args.arch == "mov":  # fused-only (beta = 1) for comparison with eq. 12
                pf = ov_scores(no, text, novel, np.ones(len(novel)), args.tau, args.tau_video)
                metrics["novel"]["acc_among_novel_labels_fused_only"] = round(
                    float((np.array(novel)[pf.argmax(1)] == novel_ds.labels).mean()), 4)
            print(f"novel windows: acc {metrics['novel']['acc_among_all_labels']} among all labels, "
                  f"{metrics['novel']['acc_among_novel_labels']} among novel labels")
        metrics["extra_val"] = {}
        for spec in args.extra_val:
            name, _, path = spec.partition("=")
            ds = CompositionalDump([path])
            if ds.labels_names != names:
                raise SystemExit(f"--extra-val {spec}: labels differ from the training dump")
            pe = ov_scores(run_model(model, ds, norm), text, seen, beta_seen, args.tau, args.tau_video)
            acc_e = round(float((np.array(seen)[pe.argmax(1)] == ds.labels).mean()), 4)
            metrics["extra_val"][name] = {"dump": path, "windows": len(ds), "acc_among_seen_labels": acc_e,
                                          "flow_estimator": ds.meta.get("flow_estimator")}
            print(f"extra val {name}: accuracy {acc_e} among seen labels")
        metrics["flow_estimator"] = train.meta.get("flow_estimator", "dis-fast")
        metrics["fusion"] = metrics["seen"]["acc_among_seen_labels"]
        metrics["scoring"] = {"tau_f": args.tau, "tau_v": args.tau_video, "beta_base": args.beta_base,
                              "beta_novel": args.beta_novel}
        if m_raw is not None:
            off = ~np.eye(len(seen), dtype=bool)
            top = np.dstack(np.unravel_index(np.argsort(-np.where(off, m_raw, -1), axis=None)[:10], m_raw.shape))[0]
            metrics["diccae"] = {
                "final_confusion_degree_mean": round(float(m_raw[off].mean()), 4),
                "final_confusion_degree_std": round(float(m_raw[off].std()), 4),
                "top_pairs": [[names[seen[i]], names[seen[j]], round(float(m_raw[i, j]), 4)] for i, j in top if i < j],
                "weight": args.diccae_weight, "pca": args.diccae_pca, "update_windows": len(upd),
            }
    else:
        vo = run_model(model, val, norm)
        metrics["attributes"] = {"val": ap_report(vo["attributes"], val.attributes, val.attribute_names)}
        if novel_ds is not None:
            metrics["attributes"]["novel"] = ap_report(run_model(model, novel_ds, norm)["attributes"],
                                                       novel_ds.attributes, novel_ds.attribute_names)
        for keep in MODALITIES:
            single[keep] = ap_report(run_model(model, val, norm, {keep})["attributes"], val.attributes,
                                     val.attribute_names)["mAP"]
        metrics["fusion"] = metrics["attributes"]["val"]["mAP"]
        print("per-attribute AP (val)", metrics["attributes"]["val"])
    metrics["single_modality"] = single
    metrics["metric"] = "top-1 acc among seen labels" if ov else "attribute mAP"
    print(f"fusion {metrics['fusion']}  single modality {single}")

    # ------------------------------------------------------------------ export
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    write_json(out / "config.json", cfg.to_dict())
    write_json(out / "norm.json", norm_d)
    (out / "labels.txt").write_text("".join(n + "\n" for n in names))
    (out / "attributes.txt").write_text("".join(n + "\n" for n in train.attribute_names))
    if ov:
        np.ascontiguousarray(text, "<f4").tofile(out / "text_embeddings.bin")
    write_json(out / "labels.json", {
        "labels": names, "novel": novel, "class_parts": train.class_parts, "attributes": train.attribute_names,
        "text_embeddings": {"file": "text_embeddings.bin", "shape": [k, 384], "dtype": "f32",
                            "model": "all-MiniLM-L6-v2, mean pooling, L2 norm"} if ov else None,
        "scoring": metrics.get("scoring"),
    })
    check_idx = np.linspace(0, len(val) - 1, min(len(val), 4)).astype(np.int64)
    samples = [norm.batch(val, np.array([i])) for i in check_idx]
    onnx_report = export_all(model, cfg, out, samples)
    onnx_report["ops"] = onnx_ops(out / "model.onnx")
    print(f"onnxruntime == torch: {onnx_report['max_abs_diff_ort_vs_torch']:.2e}; staged == single: "
          f"{onnx_report['max_abs_diff_staged_vs_single']:.2e}; ms (1 thread) {onnx_report['ort_ms_median_1_thread']}")
    gi = int(np.nonzero(val.labels != 0)[0][0]) if np.any(val.labels != 0) else 0
    golden = write_golden(out, model, val, norm, gi)

    metrics.update({
        "params": n_params,
        "params_exported": n_export,
        "head_ms_ort_1_thread": onnx_report["ort_ms_median_1_thread"]["head"],
        "onnx": onnx_report,
        "golden": {"window_index": golden["window_index"], "label": golden["label_text"]},
        "training_command": command,
        "seed": args.seed,
        "epochs": args.epochs,
        "train_data": [rel(d) for d in args.data],
        "val_data": [rel(d) for d in args.val],
        "novel_data": [rel(d) for d in args.novel],
        "train_windows": len(train),
        "train_seconds": round(train_seconds, 1),
        "torch_threads": args.threads,
        "torch_version": torch.__version__,
        "fake_data": bool(train.fake or val.fake),
        "history": history,
    })
    write_json(out / "metrics.json", metrics)
    print(f"wrote {out} in {time.time() - t_start:.0f} s")

