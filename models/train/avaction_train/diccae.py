"""DICCAE (paper 004, "Dynamic Inter-Class Confusion-Aware Encoder"): inter-class confusion degree
and the dynamically weighted confusion loss, usable with any classifier that has a window
embedding (`python -m avaction_train.train --loss diccae`; MOV and CAV-Net use their `fused` output).

Confusion degree (paper 2.1.2), computed after every epoch on an update set:
  features -> (optionally) PCA to `pca` dims (the paper fits circles after PCA; pca=2)
  per class c: centroid mu_c, radius r_c = 95th percentile of |x - mu_c| over its windows
  M_ij = max(0, r_i + r_j - d_ij) / d_ij,  d_ij = |mu_i - mu_j|   (eq. 2; i != j)
  M^ = (M - min M) / (max M - min M) * 2                         (eq. 3, over i != j)
Confusion loss (eq. 1) on every pair of windows (a, b), a != b, of a batch:
  F_p(f_a, f_b) = (1 + cos(f_a, f_b)) / 2      (the paper leaves F_p open: a similarity in [0, 1])
  L_CL = -y log F_p - (1 - y) log(1 - F_p),  y = [class a == class b]
  L_DICCAE = sum_ab w_ab L_CL(a, b) / #pairs,  w_ab = M^[c_a, c_b] for different classes (eq. 4),
             1 for same-class pairs (M_ii is undefined: d_ii = 0)
Simplifications, documented in README.md: the update set is a fixed class-balanced subset of the
*training* windows (the paper takes part of the test set, which would leak it); before the first
update all weights are 1 (a static confusion loss); the window-pair loss is computed in-batch
instead of on explicitly sampled class pairs.
"""

from __future__ import annotations

import numpy as np
import torch


def confusion_degree(feats: np.ndarray, labels: np.ndarray, k: int, pca: int = 2, coverage: float = 0.95):
    """Returns (M [k,k] raw confusion degrees, M^ [k,k] normalised to [0, 2]); classes without
    windows get 0 rows/columns (and weight 1 in M^, i.e. unweighted)."""
    x = feats.astype(np.float64)
    x = x - x.mean(0, keepdims=True)
    if pca and pca < x.shape[1]:
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        x = x @ vt[:pca].T
    present = np.array([np.any(labels == c) for c in range(k)])
    mu = np.zeros((k, x.shape[1]))
    r = np.zeros(k)
    for c in range(k):
        if present[c]:
            xc = x[labels == c]
            mu[c] = xc.mean(0)
            r[c] = np.quantile(np.linalg.norm(xc - mu[c], axis=1), coverage)
    d = np.linalg.norm(mu[:, None] - mu[None], axis=-1)
    m = np.maximum(0.0, r[:, None] + r[None] - d) / np.maximum(d, 1e-9)
    valid = present[:, None] & present[None] & ~np.eye(k, dtype=bool)
    m[~valid] = 0.0
    vals = m[valid]
    if vals.size == 0 or vals.max() - vals.min() < 1e-12:
        m_hat = np.ones((k, k))
    else:
        m_hat = (m - vals.min()) / (vals.max() - vals.min()) * 2.0
        m_hat[~valid] = 1.0
    return m, m_hat


def confusion_loss(emb: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted in-batch confusion loss (eq. 1 and 4); emb [B, D] (any norm), y [B], weights [k, k]."""
    e = torch.nn.functional.normalize(emb, dim=-1)
    p = ((1.0 + e @ e.T) * 0.5).clamp(1e-4, 1.0 - 1e-4)
    same = (y[:, None] == y[None, :]).float()
    bce = -(same * torch.log(p) + (1.0 - same) * torch.log(1.0 - p))
    w = same + (1.0 - same) * weights[y[:, None], y[None, :]]
    off = 1.0 - torch.eye(len(y))
    return (w * bce * off).sum() / off.sum().clamp(min=1.0)
