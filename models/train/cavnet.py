"""Small CAV-Net-style audio-video fusion model (PyTorch), sized to run fast on CPU with tract.

Three token streams, each from a tiny per-item CNN:
  * video: one token per RGB frame      (16 frames  -> 16 tokens)
  * flow:  one token per MOV flow image  (15 images  -> 15 tokens)
  * audio: log-mel [64 time x 128 mel]   (CNN, stride 4 in time -> 16 tokens)
Learned temporal position embeddings (one table per modality, so they also mark the modality)
are added, then
  self-attention per modality      V_self = B(V, V), F_self = B(F, F), A_self = B(A, A)
  cross-attention (CAV-Net eq.4-5) Vis_fuse = B(Vis_self, A_self), A_fuse = B(A_self, Vis_self)
                                   with Vis = [video tokens ; flow tokens]
  gated adaptive pooling (eq.6-8)  X = [Vis_fuse ; A_fuse], z = sum_i r_i(X) * X_i
  linear classifier                logits = W LN(z) + b
B(S, T) is the paper's attention softmax((Wq S)(Wk T)^T / N_d)(Wv T), used here multi-head with
N_d = sqrt(head dim), inside a pre-LayerNorm residual block with an MLP (standard transformer block).
The gate r is a small MLP giving one score per token, normalised with a softmax over the tokens
(the paper uses a sigmoid; the softmax keeps z on the scale of one token whatever the token count).

Only ops that tract runs on CPU are produced: Conv, Relu, Flatten, Gemm, Slice, Reshape, Transpose,
MatMul, Add, Mul, Div, Softmax, LayerNormalization, Erf (exact GELU), ReduceSum. Shapes are fixed (batch 1 at export).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

MODALITIES = ("video", "flow", "audio")


@dataclass
class CavNetConfig:
    """Hyper-parameters of the model; saved next to the weights so a run can be rebuilt."""

    num_classes: int = 6
    num_frames: int = 16  # RGB frames per window
    num_flow: int = 15  # flow images per window (between consecutive frames)
    image_size: int = 64  # square frames and flow images
    mel_frames: int = 64  # log-mel time frames per window (10 ms hop)
    mel_bins: int = 128  # mel bands
    # The flow input is normalised as the manifest says ((u8/255 - 0.5)/0.5, so +-20 px -> +-1);
    # typical motion of 1-8 px/frame is then only 0.05-0.4 and sparse, which the flow encoder
    # barely learned from (flow-only accuracy stayed at chance). The encoder therefore scales
    # u, v by this gain (+-1 px -> +-0.25) and drops the constant third channel.
    flow_gain: float = 5.0
    dim: int = 64  # token width d
    heads: int = 4
    mlp_ratio: int = 2
    self_depth: int = 1  # self-attention blocks per modality
    cross_depth: int = 1  # cross-attention block pairs (visual<-audio, audio<-visual)
    dropout: float = 0.1
    modalities: list = field(default_factory=lambda: list(MODALITIES))

    def to_dict(self) -> dict:
        return asdict(self)


def conv_relu(cin: int, cout: int, kernel, stride, padding=0) -> nn.Sequential:
    """Conv + ReLU. No BatchNorm: with few steps per epoch its running statistics lag the weights
    and eval-mode accuracy trails train-mode accuracy by tens of points; the tokens are
    LayerNorm-ed right after the encoders instead (pre-LN blocks), which has no running state."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding), nn.ReLU(inplace=True))


class ImageEncoder(nn.Module):
    """Tiny per-image CNN: [B, 3, 64, 64] -> [B, d].

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


class AudioEncoder(nn.Module):
    """Tiny CNN over the log-mel "image": [B, 64 time, 128 mel] -> [B, 16 tokens, d].

    A 4x4 stride-4 patchify conv, then two convs striding frequency only: time is downsampled 4x
    (one token per 40 ms = one video frame), frequency 16x; each time step's
    (channels x remaining mel) vector is projected to one token, so the spectral shape
    (click = high bands, thud = low bands) reaches the token.
    """

    def __init__(self, dim: int, mel_frames: int = 64, mel_bins: int = 128):
        super().__init__()
        self.features = nn.Sequential(
            conv_relu(1, 16, 4, 4),  # [16, 16 time, 32 mel]
            conv_relu(16, 32, 3, (1, 2), 1),  # [32, 16, 16]
            conv_relu(32, 32, 3, (1, 2), 1),  # [32, 16, 8]
        )
        self.tokens = mel_frames // 4
        self.proj = nn.Linear(32 * (mel_bins // 16), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = self.features(x.unsqueeze(1))  # [B, C, T', M']
        x = x.permute(0, 2, 1, 3).reshape(b, self.tokens, -1)  # [B, T', C*M']
        return self.proj(x)


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
    """Pre-LN transformer block around B(S, T): S + B(LN S, LN T), then + MLP(LN .).

    With target None it is self-attention B(S, S).
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


class GatedPooling(nn.Module):
    """Gated adaptive pooling z = sum_i r_i(X) X_i, r = softmax_i(w2 . GELU(W1 LN X_i))."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.gate = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.softmax(self.gate(self.norm(x)), dim=1)  # [B, N, 1]
        return (r * x).sum(dim=1), r.squeeze(-1)


class CavNet(nn.Module):
    """The fusion model. forward(frames, flow, logmel) -> logits [B, num_classes].

    Inputs are already normalised float32:
      frames [B, 16, 3, 64, 64], flow [B, 15, 3, 64, 64], logmel [B, 64, 128].
    Modalities not in config.modalities are multiplied by zero at the input (ablation), so
    the exported graph keeps the same three inputs whatever subset was trained.
    """

    def __init__(self, cfg: CavNetConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.video_enc = ImageEncoder(d, cfg.image_size)
        self.flow_enc = ImageEncoder(d, cfg.image_size, in_channels=2)
        self.audio_enc = AudioEncoder(d, cfg.mel_frames, cfg.mel_bins)
        self.audio_tokens = cfg.mel_frames // 4
        self.pos_video = nn.Parameter(torch.zeros(1, cfg.num_frames, d))
        self.pos_flow = nn.Parameter(torch.zeros(1, cfg.num_flow, d))
        self.pos_audio = nn.Parameter(torch.zeros(1, self.audio_tokens, d))
        for p in (self.pos_video, self.pos_flow, self.pos_audio):
            nn.init.trunc_normal_(p, std=0.02)

        def blocks(n: int) -> nn.ModuleList:
            return nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(n))

        self.self_video = blocks(cfg.self_depth)
        self.self_flow = blocks(cfg.self_depth)
        self.self_audio = blocks(cfg.self_depth)
        self.cross_visual = blocks(cfg.cross_depth)  # visual tokens attend to audio
        self.cross_audio = blocks(cfg.cross_depth)  # audio tokens attend to visual
        self.pool = GatedPooling(d)
        self.head_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.num_classes)
        self.drop = nn.Dropout(cfg.dropout)
        unknown = set(cfg.modalities) - set(MODALITIES)
        if unknown or not cfg.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {cfg.modalities}")
        self.use = {m: (m in cfg.modalities) for m in MODALITIES}

    # Per-item encoders: kept separate so a runtime can cache per-frame embeddings.
    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        return self.video_enc(frames.reshape(b * t, *frames.shape[2:])).reshape(b, t, -1)

    def flow_image_token(self, flow_image: torch.Tensor) -> torch.Tensor:
        """One normalised MOV flow image [B, 3, H, W] -> token [B, d] (u, v only, times flow_gain)."""
        return self.flow_enc(flow_image[:, :2] * self.cfg.flow_gain)

    def encode_flow(self, flow: torch.Tensor) -> torch.Tensor:
        b, t = flow.shape[:2]
        return self.flow_image_token(flow.reshape(b * t, *flow.shape[2:])).reshape(b, t, -1)

    def fuse(self, video_tok, flow_tok, logmel, return_gate: bool = False):
        """Temporal attention + fusion head over per-frame embeddings and the log-mel."""
        if not self.use["audio"]:
            logmel = logmel * 0.0
        v = self.drop(video_tok + self.pos_video)
        f = self.drop(flow_tok + self.pos_flow)
        a = self.drop(self.audio_enc(logmel) + self.pos_audio)
        for blk in self.self_video:
            v = blk(v)
        for blk in self.self_flow:
            f = blk(f)
        for blk in self.self_audio:
            a = blk(a)
        vis = torch.cat([v, f], dim=1)
        for bv, ba in zip(self.cross_visual, self.cross_audio):
            vis, a = bv(vis, a), ba(a, vis)
        x = torch.cat([vis, a], dim=1)
        z, gate = self.pool(x)
        logits = self.head(self.head_norm(z))
        return (logits, gate) if return_gate else logits

    def forward(self, frames: torch.Tensor, flow: torch.Tensor, logmel: torch.Tensor) -> torch.Tensor:
        if not self.use["video"]:
            frames = frames * 0.0
        if not self.use["flow"]:
            flow = flow * 0.0
        return self.fuse(self.encode_video(frames), self.encode_flow(flow), logmel)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    m = CavNet(CavNetConfig()).eval()
    print("params", count_params(m))
    with torch.no_grad():
        out = m(torch.randn(2, 16, 3, 64, 64), torch.randn(2, 15, 3, 64, 64), torch.randn(2, 64, 128))
    print(out.shape)
