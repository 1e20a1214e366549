"""Building blocks shared by the fusion models (cavnet.py, fusion_models.py).

  ImageEncoder         one RGB frame (or one 2-channel flow image) [B, C, 64, 64] -> token [B, d]
  FlowEncoder          one MOV flow image [B, 3, 64, 64] -> token [B, d] (u, v only, times a gain)
  SegmentAudioEncoder  one log-mel segment [B, 4, 128] (4 mel frames = one video frame) -> [B, d]
  Attention, Block     multi-head B(S, T) in a pre-LN transformer block (self or cross attention)
  TemporalPosition     learned position embedding added to a token sequence
  GatedPooling         z = sum_i r_i(X) X_i with a softmax gate over the tokens

All per-item encoders see exactly one frame / flow image / audio segment, so a runtime can run them
once per new frame and cache the tokens: the staged graphs then compute exactly what the single
graph computes. Only ops that tract runs are produced (Conv, Relu, Flatten, Gemm, MatMul,
Softmax, LayerNormalization, Erf, Reshape, Transpose, Slice, Concat, Add, Mul, Div, ReduceSum,
ReduceMean).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def conv_relu(cin: int, cout: int, kernel, stride, padding=0) -> nn.Sequential:
    """Conv + ReLU. No BatchNorm: with few steps per epoch its running statistics lag the weights
    and eval-mode accuracy trails train-mode accuracy by tens of points; the tokens are
    LayerNorm-ed right after the encoders instead (pre-LN blocks), which has no running state."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding), nn.ReLU(inplace=True))


class ImageEncoder(nn.Module):
    """Tiny per-image CNN: [B, C, 64, 64] -> [B, d].

    A 4x4 stride-4 "patchify" conv (16 ch, 16x16) then two 3x3 stride-2 convs (32 ch, 8x8 then
    4x4); the 4x4x32 map is flattened and projected to d. A flatten (not a global average) keeps
    *where* things are, so position over time (slide left vs right) is visible from RGB frames
    alone, not only from flow. The patchify stem is ~2x cheaper to train on CPU than a 3x3
    stride-2 stem for the same accuracy on these scenes.
    """

    def __init__(self, dim: int, image_size: int = 64, in_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            conv_relu(in_channels, 16, 4, 4),  # [16, 16, 16]
            conv_relu(16, 32, 3, 2, 1),  # [32, 8, 8]
            conv_relu(32, 32, 3, 2, 1),  # [32, 4, 4]
        )
        side = image_size // 16
        self.proj = nn.Linear(32 * side * side, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.proj(x.flatten(1))


class FlowEncoder(nn.Module):
    """One normalised MOV flow image [B, 3, H, W] -> token [B, d].

    The input is normalised as the manifest says ((u8/255 - 0.5)/0.5, so +-20 px -> +-1); typical
    motion of 1-8 px/frame is then only 0.05-0.4 and sparse, which a flow encoder barely learns
    from. The encoder therefore reads u, v only (the third plane is constant) and scales them by
    `gain` (default 5: +-1 px -> +-0.25).
    """

    def __init__(self, dim: int, image_size: int = 64, gain: float = 5.0):
        super().__init__()
        self.gain = gain
        self.enc = ImageEncoder(dim, image_size, in_channels=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x[:, :2] * self.gain)


class SegmentAudioEncoder(nn.Module):
    """One log-mel segment [B, 4 time, 128 mel] -> token [B, d] (4 mel frames = 40 ms = 1 frame).

    A 4x4 stride-4 conv covering the whole segment in time (16 ch, 32 mel), then two 1x3 convs
    striding frequency (32 ch, 16 then 8 mel); the 32x8 map is flattened and projected to d, so
    the spectral shape (click = high bands, thud = low bands, harmonic stacks) reaches the token.
    Nothing mixes neighbouring segments: temporal context comes from the head's attention, and a
    runtime can encode each 40 ms segment once and cache it.
    """

    def __init__(self, dim: int, segment_frames: int = 4, mel_bins: int = 128):
        super().__init__()
        self.features = nn.Sequential(
            conv_relu(1, 16, (segment_frames, 4), (segment_frames, 4)),  # [16, 1, 32]
            conv_relu(16, 32, (1, 3), (1, 2), (0, 1)),  # [32, 1, 16]
            conv_relu(32, 32, (1, 3), (1, 2), (0, 1)),  # [32, 1, 8]
        )
        self.proj = nn.Linear(32 * (mel_bins // 16), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x.unsqueeze(1)).flatten(1))


class Attention(nn.Module):
    """Multi-head B(S, T) = softmax((Wq S)(Wk T)^T / sqrt(dh)) (Wv T), then an output projection."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)  # [B, H, N, dh]

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        b, n, d = source.shape
        q = self.split(self.q(source)) * (1.0 / math.sqrt(self.head_dim))
        k = self.split(self.k(target))
        v = self.split(self.v(target))
        attn = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        x = self.drop(attn) @ v  # [B, H, N, dh]
        x = x.transpose(1, 2).reshape(b, n, d)
        return self.out(x)


class Block(nn.Module):
    """Pre-LN transformer block around B(S, T): S + B(LN S, LN' T), then + MLP(LN .).

    With target None it is self-attention B(S, S); with a target it is cross-attention, the query
    and key/value inputs having separate LayerNorms (as in MOV's cross-attention head).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.norm_s = nn.LayerNorm(dim)
        self.norm_t = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim * mlp_ratio),
            nn.GELU(),
            nn.Linear(dim * mlp_ratio, dim),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, source: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        s = self.norm_s(source)
        t = s if target is None else self.norm_t(target)
        x = source + self.drop(self.attn(s, t))
        return x + self.drop(self.mlp(self.norm_mlp(x)))


def blocks(n: int, dim: int, heads: int, mlp_ratio: int, dropout: float) -> nn.ModuleList:
    return nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(n))


class TemporalPosition(nn.Module):
    """Learned position embedding [1, n, d] added to a token sequence [B, n, d] (one table per
    stream, so it also marks the modality)."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, n, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos


class GatedPooling(nn.Module):
    """Gated adaptive pooling z = sum_i r_i(X) X_i, r = softmax_i(w2 . GELU(W1 LN X_i))."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.gate = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.softmax(self.gate(self.norm(x)), dim=1)  # [B, N, 1]
        return (r * x).sum(dim=1), r.squeeze(-1)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
