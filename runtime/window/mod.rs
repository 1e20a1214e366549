//! Rolling windows: capture events in, [`Window`]s out. The [`WindowScheduler`] keeps
//! the last frames, their optical flow and the log-mel frames on one timeline and cuts a
//! window every hop; the [`WindowStream`] feeds it from a capture channel (the runtime's
//! window thread and `avaction features` both read windows through it).

mod scheduler;
mod stream;
pub mod view;

pub use scheduler::{WindowConfig, WindowScheduler, WindowStats};
pub use stream::{End, WindowStream, WindowStreamStep};

use crate::clock::{Nanos, TimeSpan};
use std::time::Instant;

/// One window of model inputs, before normalisation.
#[derive(Debug, Clone)]
pub struct Window {
    /// Sequence number (0, 1, ...), counting dropped windows too.
    pub index: u64,
    /// Time of the first frame.
    pub t_start: Nanos,
    /// End of the video span: last frame time plus one frame period.
    pub t_end: Nanos,
    /// Time of the last frame (its capture time for live sources).
    pub t_last_frame: Nanos,
    /// `T * H * W * 3` packed RGB bytes, oldest frame first.
    pub frames: Vec<u8>,
    /// The optical flow between consecutive frames, as the model takes it.
    pub flow: WindowFlow,
    /// `A * bins` log-mel values, empty without audio input.
    pub logmel: Vec<f32>,
    /// Time the window's log-mel grid starts at (first slot), if any audio was available.
    pub audio_start: Option<Nanos>,
    /// Measured skew: `audio_start` minus where the grid belongs (`t_end` minus the
    /// window's mel frames; `t_start` when audio and video last as long), `None` without
    /// audio.
    pub skew_ns: Option<Nanos>,
    /// Log-mel frames that had no audio and hold silence instead.
    pub audio_missing: usize,
    /// Log-mel frames computed from audio with a non-finite sample (NaN, +-inf): they
    /// hold NaN, not silence. A window with any is invalid: the runtime does not run it
    /// (the runtime's `Stats::windows_invalid` counts it).
    pub invalid_audio: usize,
    /// Stream number of the window's first frame (0 for the first frame of the stream):
    /// frame `k` of the window is frame `first_frame + k * stride`, and flow field `k`
    /// (between frames `k` and `k + 1`) belongs to frame `first_frame + (k + 1) * stride`
    /// (see [`Window::frame_number`]). Staged models cache
    /// per-frame work by these numbers.
    pub first_frame: u64,
    /// Captured frames between two frames of the window (`window.stride`, 1 by default).
    pub stride: usize,
    /// Which log-mel slots of the window hold real audio (the rest hold silence).
    pub audio_slots: std::ops::Range<usize>,
    /// Stream number of the mel frame in slot `audio_slots.start` (mel frames are
    /// numbered from 0 as the filterbank makes them).
    pub audio_index: u64,
    /// When the window's video part was complete (for latency).
    pub video_complete_at: Instant,
}

impl Window {
    /// The stream number of the window's frame `k`.
    pub fn frame_number(&self, k: usize) -> u64 {
        self.first_frame + (k * self.stride.max(1)) as u64
    }

    /// Whether most of the window's audio is missing (more than half of its log-mel
    /// frames): an audio-optional model then gets the audio as absent, a model that
    /// needs audio is not run on it.
    pub fn audio_absent(&self) -> bool {
        let total = self.audio_missing + self.audio_slots.len();
        total > 0 && self.audio_missing * 2 > total
    }

    /// The video span `t_start..t_end`.
    pub fn span(&self) -> TimeSpan {
        TimeSpan::new(self.t_start, self.t_end)
    }
}

/// The optical flow of a window: `T - 1` fields, field `k` between frames `k` and
/// `k + 1`, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowFlow {
    /// The model takes no flow.
    None,
    /// `(T-1) * 3 * H * W` MOV-encoded bytes (planar u, v and a zero plane per field).
    Mov(Vec<u8>),
    /// `(T-1) * 2 * H * W` displacements in pixels (planar u, v per field).
    Float(Vec<f32>),
}

impl WindowFlow {
    /// Values held (bytes for MOV, floats for float flow, 0 without flow).
    pub fn len(&self) -> usize {
        match self {
            WindowFlow::None => 0,
            WindowFlow::Mov(v) => v.len(),
            WindowFlow::Float(v) => v.len(),
        }
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
