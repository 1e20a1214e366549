"""The compositional-task fusion models in small widths: MOV (paper 001), CAV-Net (002) and AVT (003).

Every model follows the staged contract:
  encode_video(image [B,3,64,64]) -> [B,d]    one RGB frame
  encode_flow(image [B,3,64,64])  -> [B,d]    one MOV flow image
  encode_audio(logmel [B,4,128])  -> [B,d]    one 40 ms log-mel segment (4 mel frames)
  head(video_tokens [B,16,d], flow_tokens [B,15,d], audio_tokens [B,16,d]) -> OUTPUTS
  forward(frames [B,16,3,64,64], flow [B,15,3,64,64], logmel [B,64,128])
      == head(encoders applied per frame / flow image / segment)
Inputs are normalised float32 (norm.json of the run); a missing modality is its zero input.

MOV (Qian et al., "Multimodal open-vocabulary video classification via pre-trained vision and
language models"), outputs `fused`, `video` (both [B,384], L2-normalised, in MiniLM text space):
  v, f, a = per-item tokens (+ temporal position embeddings)
  v_t, f_t, a_t = temporal transformers phi_v, phi_f, phi_a (eq. 2-4; the paper uses an MLP for
                  its single audio spectrogram token, here audio has 16 tokens so it gets phi_a)
  v_t <- MCA(LN v_t, LN [f_t ; a_t]) + MLP    video queries flow and audio (eq. 5-6)
  f_t <- MCA(LN f_t, LN v) + MLP, a_t <- MCA(LN a_t, LN v) + MLP   flow / audio query the raw
                                               video tokens v, not v_t (eq. 7-8)
  v_m, f_m, a_m = temporal means;  fused = norm(W_fused LN [v_m ; f_m ; a_m])
  video = norm(W_video LN mean_t(v))           the raw-video branch (the paper's frozen-backbone
                                               video feature used for novel classes, eq. 11)
CAV-Net (Li et al., "Language-guided multi-modal fusion for video action recognition"), output
`fused` [B,384]: self blocks B(V,V), B(F,F), B(A,A); cross blocks Vis <- B(Vis, A),
A <- B(A, Vis) with Vis = [video ; flow]; gated adaptive pooling over all tokens; LN; linear to
384; L2 norm.
AVT (Li et al., "Audio-Video Transformer"), output `attributes` [B,A] logits: a visual tower
([CLS_v ; video ; flow] tokens) and an audio tower ([CLS_a ; audio]) that exchange information only
through L bottleneck tokens: per layer each tower runs self-attention over [own tokens ;
bottleneck], and the bottleneck becomes the mean of the two towers' updated copies (the
AVBottleneck block, after Nagrani et al.); attributes = W LN [CLS_v ; CLS_a].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import (
    FlowEncoder,
    GatedPooling,
    ImageEncoder,
    SegmentAudioEncoder,
    TemporalPosition,
    blocks,
    count_params,
)

ARCHS = ("mov", "cavnet", "avt")
MODALITIES = ("video", "flow", "audio")


@dataclass
class FusionConfig:
    """Hyper-parameters; saved as config.json next to the weights so a run can be rebuilt."""

    arch: str = "mov"
    num_frames: int = 16
    num_flow: int = 15
    image_size: int = 64
    mel_frames: int = 64
    mel_bins: int = 128
    segment_frames: int = 4  # mel frames per audio token (= one video frame at 25 fps, 10 ms hop)
    flow_gain: float = 5.0
    dim: int = 64
    heads: int = 4
    mlp_ratio: int = 2
    depth: int = 1  # MOV temporal layers per modality / CAV-Net self blocks per modality
    cross_depth: int = 1  # MOV cross-attention layers / CAV-Net cross block pairs
    avt_layers: int = 2  # AVT bottleneck fusion layers
    bottlenecks: int = 4  # AVT bottleneck tokens
    text_dim: int = 384  # MiniLM embedding width (MOV, CAV-Net outputs)
    num_attributes: int = 6  # AVT outputs
    avc_dim: int = 64  # AVT audio-video contrastive projection width (training only)
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def audio_tokens(self) -> int:
        return self.mel_frames // self.segment_frames


class StagedModel(nn.Module):
    """Per-item encoders shared by all archs; subclasses define head() and OUTPUTS."""

    OUTPUTS: tuple[str, ...] = ()

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.video_enc = ImageEncoder(d, cfg.image_size)
        self.flow_enc = FlowEncoder(d, cfg.image_size, cfg.flow_gain)
        self.audio_enc = SegmentAudioEncoder(d, cfg.segment_frames, cfg.mel_bins)
        self.pos_video = TemporalPosition(cfg.num_frames, d)
        self.pos_flow = TemporalPosition(cfg.num_flow, d)
        self.pos_audio = TemporalPosition(cfg.audio_tokens, d)
        self.drop = nn.Dropout(cfg.dropout)

    def encode_video(self, image: torch.Tensor) -> torch.Tensor:
        return self.video_enc(image)

    def encode_flow(self, image: torch.Tensor) -> torch.Tensor:
        return self.flow_enc(image)

    def encode_audio(self, segment: torch.Tensor) -> torch.Tensor:
        return self.audio_enc(segment)

    def tokens(self, frames, flow, logmel):
        """Encoders applied per frame / flow image / 4-mel-frame segment (batched)."""
        b, t = frames.shape[:2]
        vt = self.encode_video(frames.reshape(b * t, *frames.shape[2:])).reshape(b, t, -1)
        b, t = flow.shape[:2]
        ft = self.encode_flow(flow.reshape(b * t, *flow.shape[2:])).reshape(b, t, -1)
        n = self.cfg.audio_tokens
        seg = logmel.reshape(b * n, self.cfg.segment_frames, logmel.shape[-1])
        at = self.encode_audio(seg).reshape(b, n, -1)
        return vt, ft, at

    def head(self, video_tokens, flow_tokens, audio_tokens):
        raise NotImplementedError

    def forward(self, frames, flow, logmel):
        return self.head(*self.tokens(frames, flow, logmel))


class MOV(StagedModel):
    OUTPUTS = ("fused", "video")

    def __init__(self, cfg: FusionConfig):
        super().__init__(cfg)
        d, h, r, p = cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout
        self.temporal_video = blocks(cfg.depth, d, h, r, p)
        self.temporal_flow = blocks(cfg.depth, d, h, r, p)
        self.temporal_audio = blocks(cfg.depth, d, h, r, p)
        self.cross_video = blocks(cfg.cross_depth, d, h, r, p)  # video queries [flow ; audio]
        self.cross_flow = blocks(cfg.cross_depth, d, h, r, p)  # flow queries raw video
        self.cross_audio = blocks(cfg.cross_depth, d, h, r, p)  # audio queries raw video
        self.fused_norm = nn.LayerNorm(3 * d)
        self.fused_proj = nn.Linear(3 * d, cfg.text_dim)
        self.video_norm = nn.LayerNorm(d)
        self.video_proj = nn.Linear(d, cfg.text_dim)

    def head(self, video_tokens, flow_tokens, audio_tokens):
        v = self.pos_video(video_tokens)
        f = self.drop(self.pos_flow(flow_tokens))
        a = self.drop(self.pos_audio(audio_tokens))
        vt = self.drop(v)
        for blk in self.temporal_video:
            vt = blk(vt)
        for blk in self.temporal_flow:
            f = blk(f)
        for blk in self.temporal_audio:
            a = blk(a)
        fa = torch.cat([f, a], dim=1)
        for blk in self.cross_video:
            vt = blk(vt, fa)
        for blk in self.cross_flow:
            f = blk(f, v)
        for blk in self.cross_audio:
            a = blk(a, v)
        z = torch.cat([vt.mean(1), f.mean(1), a.mean(1)], dim=-1)
        fused = F.normalize(self.fused_proj(self.fused_norm(z)), dim=-1)
        video = F.normalize(self.video_proj(self.video_norm(video_tokens.mean(1))), dim=-1)
        return fused, video


class CavNetOV(StagedModel):
    OUTPUTS = ("fused",)

    def __init__(self, cfg: FusionConfig):
        super().__init__(cfg)
        d, h, r, p = cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout
        self.self_video = blocks(cfg.depth, d, h, r, p)
        self.self_flow = blocks(cfg.depth, d, h, r, p)
        self.self_audio = blocks(cfg.depth, d, h, r, p)
        self.cross_visual = blocks(cfg.cross_depth, d, h, r, p)
        self.cross_audio = blocks(cfg.cross_depth, d, h, r, p)
        self.pool = GatedPooling(d)
        self.out_norm = nn.LayerNorm(d)
        self.out_proj = nn.Linear(d, cfg.text_dim)

    def head(self, video_tokens, flow_tokens, audio_tokens):
        v = self.drop(self.pos_video(video_tokens))
        f = self.drop(self.pos_flow(flow_tokens))
        a = self.drop(self.pos_audio(audio_tokens))
        for blk in self.self_video:
            v = blk(v)
        for blk in self.self_flow:
            f = blk(f)
        for blk in self.self_audio:
            a = blk(a)
        vis = torch.cat([v, f], dim=1)
        for bv, ba in zip(self.cross_visual, self.cross_audio):
            vis, a = bv(vis, a), ba(a, vis)
        z, _ = self.pool(torch.cat([vis, a], dim=1))
        return (F.normalize(self.out_proj(self.out_norm(z)), dim=-1),)


class AVT(StagedModel):
    OUTPUTS = ("attributes",)

    def __init__(self, cfg: FusionConfig):
        super().__init__(cfg)
        d, h, r, p = cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout
        self.cls_visual = nn.Parameter(torch.zeros(1, 1, d))
        self.cls_audio = nn.Parameter(torch.zeros(1, 1, d))
        self.bottleneck = nn.Parameter(torch.zeros(1, cfg.bottlenecks, d))
        for prm in (self.cls_visual, self.cls_audio, self.bottleneck):
            nn.init.trunc_normal_(prm, std=0.02)
        self.visual_layers = blocks(cfg.avt_layers, d, h, r, p)
        self.audio_layers = blocks(cfg.avt_layers, d, h, r, p)
        self.out_norm = nn.LayerNorm(2 * d)
        self.out = nn.Linear(2 * d, cfg.num_attributes)
        # audio-video contrastive projections g_V, g_A (training only, not exported)
        self.g_visual = nn.Linear(d, cfg.avc_dim)
        self.g_audio = nn.Linear(d, cfg.avc_dim)

    def head(self, video_tokens, flow_tokens, audio_tokens):
        b = video_tokens.shape[0]
        vis = torch.cat(
            [self.cls_visual.expand(b, -1, -1), self.pos_video(video_tokens), self.pos_flow(flow_tokens)], dim=1
        )
        aud = torch.cat([self.cls_audio.expand(b, -1, -1), self.pos_audio(audio_tokens)], dim=1)
        vis, aud = self.drop(vis), self.drop(aud)
        nv, na = vis.shape[1], aud.shape[1]
        z = self.bottleneck.expand(b, -1, -1)
        for bv, ba in zip(self.visual_layers, self.audio_layers):
            xv = bv(torch.cat([vis, z], dim=1))
            xa = ba(torch.cat([aud, z], dim=1))
            vis, aud = xv[:, :nv], xa[:, :na]
            z = (xv[:, nv:] + xa[:, na:]) * 0.5
        cls = torch.cat([vis[:, 0], aud[:, 0]], dim=-1)
        return (self.out(self.out_norm(cls)),)

    def avc_embeddings(self, video_tokens, flow_tokens, audio_tokens):
        """Unimodal clip embeddings before fusion, for the audio-video contrastive loss."""
        visual = torch.cat([video_tokens, flow_tokens], dim=1).mean(1)
        return F.normalize(self.g_visual(visual), dim=-1), F.normalize(self.g_audio(audio_tokens.mean(1)), dim=-1)


def build(cfg: FusionConfig) -> StagedModel:
    if cfg.arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {cfg.arch!r}")
    return {"mov": MOV, "cavnet": CavNetOV, "avt": AVT}[cfg.arch](cfg)


if __name__ == "__main__":
    for arch in ARCHS:
        torch.manual_seed(0)
        m = build(FusionConfig(arch=arch)).eval()
        x = (torch.randn(2, 16, 3, 64, 64), torch.randn(2, 15, 3, 64, 64), torch.randn(2, 64, 128))
        with torch.no_grad():
            out = m(*x)
            # staged == single: encoders one item at a time, then the head
            vt = torch.stack([m.encode_video(x[0][:, t]) for t in range(16)], 1)
            ft = torch.stack([m.encode_flow(x[1][:, t]) for t in range(15)], 1)
            at = torch.stack([m.encode_audio(x[2][:, 4 * t : 4 * t + 4]) for t in range(16)], 1)
            staged = m.head(vt, ft, at)
        diff = max(float((o - s).abs().max()) for o, s in zip(out, staged))
        print(arch, "params", count_params(m), {n: list(o.shape) for n, o in zip(m.OUTPUTS, out)}, "staged diff", diff)
