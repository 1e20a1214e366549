//! Multi-channel audio to mono, the way the model's training data was made (`[audio]
//! downmix` in `model.toml`). GStreamer's own 5.1 -> mono mix (`audioconvert`, measured
//! one channel at a time: front left/right and LFE 0.212, centre 0.150, surround 0.106)
//! puts the centre channel, where films keep dialogue, 6 dB below ffmpeg's 16-bit mix and
//! 16.5 dB below its float mix, and mixes the LFE in; a model trained on ffmpeg-decoded
//! audio hears the difference. So the capture asks GStreamer for the source's channels as
//! they are and mixes here (tests/downmix.rs checks each mode against ffmpeg).
//!
//! | downmix | mono sample | what makes audio this way |
//! |---|---|---|
//! | `mean` (default) | the average of all channels | `torchaudio.load(...)[0].mean(0)`, librosa `to_mono` |
//! | `first` | channel 0 | `wav[0]` |
//! | `ffmpeg` | `Σ w_c x_c / Σ w_c` | `ffmpeg -i in -ac 1 out.wav` (16-bit PCM) |
//! | `ffmpeg-float` | `Σ w_c x_c` | `ffmpeg -i in -ac 1 -f f32le` (no normalisation) |
//!
//! ffmpeg's weights `w_c` (libswresample's defaults, measured with ffmpeg 5.1 on one
//! channel at a time): front left/right and front left/right of centre 0.7071, front
//! centre 1, LFE 0, back left/right/centre and side left/right 0.5; other speakers (top,
//! wide) get 0 here. Stereo and mono through `mean` are what GStreamer gives too.

use serde::{Deserialize, Serialize};

/// How several channels become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Downmix {
    /// The average of all channels.
    #[default]
    Mean,
    /// Channel 0 only.
    First,
    /// ffmpeg's matrix, normalised by its sum (what `-ac 1` writes as 16-bit PCM).
    Ffmpeg,
    /// ffmpeg's matrix without normalisation (what `-ac 1` writes as float).
    FfmpegFloat,
}

/// Where a channel's speaker stands (the positions ffmpeg's matrix tells apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// Front left.
    FrontLeft,
    /// Front right.
    FrontRight,
    /// Front centre (also a mono channel).
    FrontCenter,
    /// Low-frequency effects.
    Lfe,
    /// Back (rear) left.
    BackLeft,
    /// Back (rear) right.
    BackRight,
    /// Back (rear) centre.
    BackCenter,
    /// Side left.
    SideLeft,
    /// Side right.
    SideRight,
    /// Front left of centre.
    FrontLeftOfCenter,
    /// Front right of centre.
    FrontRightOfCenter,
    /// Anything else (top, wide, ...).
    Other,
}

impl Speaker {
    /// ffmpeg's weight of this speaker in a mono mix.
    fn ffmpeg_weight(self) -> f32 {
        match self {
            Speaker::FrontCenter => 1.0,
            Speaker::FrontLeft
            | Speaker::FrontRight
            | Speaker::FrontLeftOfCenter
            | Speaker::FrontRightOfCenter => std::f32::consts::FRAC_1_SQRT_2,
            Speaker::BackLeft
            | Speaker::BackRight
            | Speaker::BackCenter
            | Speaker::SideLeft
            | Speaker::SideRight => 0.5,
            Speaker::Lfe | Speaker::Other => 0.0,
        }
    }

    /// The speakers of a GStreamer `channel-mask` (bit `i` is `GstAudioChannelPosition`
    /// `i`; the channels come in increasing bit order), or `None` when the mask does not
    /// have `channels` bits set.
    pub fn from_gst_mask(mask: u64, channels: usize) -> Option<Vec<Speaker>> {
        let speakers: Vec<Speaker> = (0..64)
            .filter(|bit| mask & (1u64 << bit) != 0)
            .map(|bit| match bit {
                0 => Speaker::FrontLeft,
                1 => Speaker::FrontRight,
                2 => Speaker::FrontCenter,
                3 | 9 => Speaker::Lfe,
                4 => Speaker::BackLeft,
                5 => Speaker::BackRight,
                6 => Speaker::FrontLeftOfCenter,
                7 => Speaker::FrontRightOfCenter,
                8 => Speaker::BackCenter,
                10 => Speaker::SideLeft,
                11 => Speaker::SideRight,
                _ => Speaker::Other,
            })
            .collect();
        (speakers.len() == channels).then_some(speakers)
    }

    /// ffmpeg's default layout for a channel count (used when the source names no
    /// positions): mono, stereo, 3.0, 4.0, 5.0, 5.1, 6.1, 7.1; beyond 8, unknown.
    pub fn default_layout(channels: usize) -> Vec<Speaker> {
        use Speaker::*;
        let known: &[Speaker] = match channels {
            1 => &[FrontCenter],
            2 => &[FrontLeft, FrontRight],
            3 => &[FrontLeft, FrontRight, FrontCenter],
            4 => &[FrontLeft, FrontRight, FrontCenter, BackCenter],
            5 => &[FrontLeft, FrontRight, FrontCenter, BackLeft, BackRight],
            6 => &[FrontLeft, FrontRight, FrontCenter, Lfe, BackLeft, BackRight],
            7 => &[
                FrontLeft,
                FrontRight,
                FrontCenter,
                Lfe,
                BackCenter,
                SideLeft,
                SideRight,
            ],
            8 => &[
                FrontLeft,
                FrontRight,
                FrontCenter,
                Lfe,
                BackLeft,
                BackRight,
                SideLeft,
                SideRight,
            ],
            _ => &[],
        };
        if known.len() == channels {
            known.to_vec()
        } else {
            vec![Other; channels]
        }
    }
}

impl Downmix {
    /// The name written in `model.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Downmix::Mean => "mean",
            Downmix::First => "first",
            Downmix::Ffmpeg => "ffmpeg",
            Downmix::FfmpegFloat => "ffmpeg-float",
        }
    }

    /// The weight of each channel in the mono sample. One channel is passed as it is,
    /// whatever the downmix (ffmpeg too leaves mono alone).
    pub fn weights(self, speakers: &[Speaker]) -> Vec<f32> {
        let n = speakers.len();
        if n <= 1 {
            return vec![1.0; n];
        }
        match self {
            Downmix::Mean => vec![1.0 / n as f32; n],
            Downmix::First => {
                let mut w = vec![0.0; n];
                w[0] = 1.0;
                w
            }
            Downmix::Ffmpeg | Downmix::FfmpegFloat => {
                let w: Vec<f32> = speakers.iter().map(|s| s.ffmpeg_weight()).collect();
                let sum: f32 = w.iter().sum();
                if self == Downmix::Ffmpeg && sum > 1.0 {
                    w.iter().map(|v| v / sum).collect()
                } else {
                    w
                }
            }
        }
    }
}

/// Mixes interleaved frames of `weights.len()` channels into mono, appending to `out`
/// (which keeps its capacity between calls). A trailing partial frame is ignored.
pub fn mix(interleaved: &[f32], weights: &[f32], out: &mut Vec<f32>) {
    let n = weights.len().max(1);
    if weights.len() == 1 {
        out.extend(interleaved.iter().map(|v| v * weights[0]));
        return;
    }
    out.extend(
        interleaved
            .chunks_exact(n)
            .map(|frame| frame.iter().zip(weights).map(|(x, w)| x * w).sum::<f32>()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpeg_weights_of_5_1_are_the_measured_ones() {
        let layout = Speaker::default_layout(6);
        let float = Downmix::FfmpegFloat.weights(&layout);
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert_eq!(float, vec![h, h, 1.0, 0.0, 0.5, 0.5]);
        // normalised: ffmpeg's 16-bit output, 0.2071 for a front channel
        let norm = Downmix::Ffmpeg.weights(&layout);
        assert!((norm[0] - 0.2071).abs() < 1e-4, "{norm:?}");
        assert!((norm.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // stereo through ffmpeg (16-bit) is the mean
        let stereo = Downmix::Ffmpeg.weights(&Speaker::default_layout(2));
        assert!(stereo.iter().all(|w| (w - 0.5).abs() < 1e-6), "{stereo:?}");
    }

    #[test]
    fn gst_masks_give_speakers_in_bit_order() {
        // 5.1 as GStreamer writes it: FL FR FC LFE1 RL RR = bits 0..5
        let s = Speaker::from_gst_mask(0x3f, 6).unwrap();
        assert_eq!(s, Speaker::default_layout(6));
        // 5.1(side): SL SR are bits 10, 11
        let side = Speaker::from_gst_mask(0b1100_0000_1111, 6).unwrap();
        assert_eq!(side[4..], [Speaker::SideLeft, Speaker::SideRight]);
        assert!(Speaker::from_gst_mask(0x3f, 2).is_none());
    }

    #[test]
    fn mix_weights_each_frame() {
        let mut out = Vec::new();
        mix(&[1.0, 3.0, 5.0, 7.0, 9.0], &[0.5, 0.5], &mut out);
        assert_eq!(out, vec![2.0, 6.0]);
        let mut first = Vec::new();
        let w = Downmix::First.weights(&Speaker::default_layout(3));
        mix(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &w, &mut first);
        assert_eq!(first, vec![1.0, 4.0]);
        assert_eq!(Downmix::Mean.weights(&[Speaker::FrontCenter]), vec![1.0]);
    }
}
