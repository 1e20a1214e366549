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

The image encoder, attention block and gated pooling live in blocks.py (shared with the
compositional-task models in fusion_models.py); the audio encoder here mixes neighbouring 40 ms
segments (3x3 convs over time), so this model's head takes the log-mel, not per-segment tokens.

Only ops that tract runs on CPU are produced: Conv, Relu, Flatten, Gemm, Slice, Reshape, Transpose,
MatMul, Add, Mul, Div, Softmax, LayerNormalization, Erf (exact GELU), ReduceSum. Shapes are fixed (batch 1 at export).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from .blocks import Block, GatedPooling, ImageEncoder, conv_relu, count_params  # noqa: F401

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


if __name__ == "__main__":
    m = CavNet(CavNetConfig()).eval()
    print("params", count_params(m))
    with torch.no_grad():
        out = m(torch.randn(2, 16, 3, 64, 64), torch.randn(2, 15, 3, 64, 64), torch.randn(2, 64, 128))
    print(out.shape)
