//! The window scheduler: keeps the last frames, their optical flow and the log-mel
//! frames on one timeline, and every hop emits a [`Window`] whose audio covers the
//! same span as its video, with the measured audio-video skew. Memory is bounded.

use super::{Window, WindowFlow};
use crate::clock::{AudioChunk, Nanos, VideoFrame};
use crate::frontend::flow::{self, FlowEncoding, FlowEstimator, FlowField, FlowSettings};
use crate::frontend::image::{ImageNormalize, Preprocess, PreprocessConfig};
use crate::frontend::logmel::{FbankConfig, LogMel};
use crate::{err, Result};
use std::collections::VecDeque;
use std::time::Instant;

/// What the scheduler builds and how long it waits for audio.
#[derive(Debug, Clone)]
pub struct WindowConfig {
    /// Frames per window (T).
    pub frames: usize,
    /// Captured frames between windows.
    pub hop_frames: usize,
    /// The window takes every `stride`-th captured frame (1: every frame); it spans
    /// `(frames - 1) * stride + 1` captured frames.
    pub stride: usize,
    /// Nominal frame rate (used for the window's end time).
    pub fps: u32,
    /// Frame width in pixels.
    pub width: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// `None`: frames arrive at `width` x `height`. `Some`: frames of any size are
    /// resized and cropped to it (antialiased or area, rounded to bytes) before they are
    /// stored and their flow computed.
    pub preprocess: Option<PreprocessConfig>,
    /// Flow estimator and encoding, if the model takes flow.
    pub flow: Option<FlowSettings>,
    /// Filterbank settings and mel frames per window, if the model takes audio. The
    /// window's mel frames end where its video ends: with more mel frames than the video
    /// lasts, the audio context reaches back before the first frame.
    pub logmel: Option<(FbankConfig, usize)>,
    /// Whether audio will arrive at all (false: windows carry silence).
    pub expect_audio: bool,
    /// Live sources: how long (on the timeline) a window may wait for its audio
    /// before it is emitted with the missing part filled with silence. `None`: wait
    /// until the audio arrives or the stream ends (files).
    pub audio_wait_ns: Option<Nanos>,
    /// Log-mel frames kept (history for late video); bounds memory.
    pub mel_history: usize,
    /// Windows that may wait for audio at once; beyond it the oldest is dropped.
    pub max_pending: usize,
}

/// Counters of the scheduler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Frames pushed.
    pub frames: u64,
    /// Windows emitted.
    pub windows: u64,
    /// Windows dropped because too many waited for audio.
    pub windows_dropped: u64,
    /// Windows emitted with part of their audio missing.
    pub windows_audio_incomplete: u64,
    /// Log-mel frames computed.
    pub mel_frames: u64,
    /// Audio samples pushed that were not finite (NaN, +-inf).
    pub audio_samples_invalid: u64,
    /// Windows emitted with log-mel frames computed from non-finite samples
    /// ([`Window::invalid_audio`] > 0): the runtime does not run them.
    pub windows_invalid_audio: u64,
    /// Times the video source was reopened ([`WindowScheduler::restart_video`]).
    pub video_gaps: u64,
}

/// Builds windows from frames and audio chunks; see the module docs.
pub struct WindowScheduler {
    cfg: WindowConfig,
    frame_bytes: usize,
    preprocess: Option<Preprocess>,
    /// Captured frames a window spans (the ring's slots).
    span: usize,
    // video ring: `span` slots
    frames: Vec<u8>,
    frame_times: Vec<Nanos>,
    flows: Vec<u8>,
    flows_uv: Vec<f32>,
    next_slot: usize,
    frames_seen: u64,
    /// `frames_seen` at the last video gap: windows hold frames after it only.
    gap_at: u64,
    period_ns: Nanos,
    // flow state
    estimator: Option<Box<dyn FlowEstimator>>,
    gray_prev: Vec<f32>,
    gray_next: Vec<f32>,
    field: FlowField,
    encoding: FlowEncoding,
    // audio state
    logmel: Option<LogMel>,
    mel_frames_per_window: usize,
    bins: usize,
    mel: VecDeque<(Nanos, Vec<f32>)>,
    spare_mel: Vec<Vec<f32>>,
    anchors: VecDeque<(u64, Nanos, u32)>,
    samples_in: u64,
    mel_out: u64,
    shift: u64,
    silence: f32,
    pending: VecDeque<Window>,
    windows_made: u64,
    /// Whether [`WindowScheduler::take_video_ready`] is on, and what it hands out next.
    video_ready: bool,
    ready: Option<Window>,
    stats: WindowStats,
}

impl std::fmt::Debug for WindowScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowScheduler")
            .field("pending", &self.pending())
            .field("stats", &self.stats())
            .finish()
    }
}

impl WindowScheduler {
    /// Checks the configuration and allocates every ring.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for fewer than 2 frames, a zero hop or rate,
    /// frames under 16x16, or invalid flow, log-mel or resize settings.
    pub fn new(cfg: WindowConfig) -> Result<WindowScheduler> {
        if cfg.frames < 2
            || cfg.stride == 0
            || cfg.hop_frames == 0
            || cfg.fps == 0
            || cfg.width < 16
            || cfg.height < 16
        {
            return Err(err!(
                Config,
                "window: need frames >= 2, stride >= 1, hop >= 1, fps >= 1 and frames of at least 16x16 (got {} frames, stride {}, hop {}, {} fps, {}x{})",
                cfg.frames, cfg.stride, cfg.hop_frames, cfg.fps, cfg.width, cfg.height
            ));
        }
        let frame_bytes = cfg.width * cfg.height * 3;
        let span = (cfg.frames - 1)
            .checked_mul(cfg.stride)
            .and_then(|n| n.checked_add(1))
            .filter(|n| n.checked_mul(frame_bytes).is_some())
            .ok_or_else(|| {
                err!(
                    Config,
                    "window: {} frames at stride {} span too many frames",
                    cfg.frames,
                    cfg.stride
                )
            })?;
        let pixels = cfg.width * cfg.height;
        let (estimator, encoding) = match &cfg.flow {
            Some(settings) => (Some(settings.build()?), settings.encoding),
            None => (None, FlowEncoding::Float),
        };
        let (logmel, mel_frames_per_window) = match &cfg.logmel {
            Some((fbank, frames)) => (Some(LogMel::new(fbank)?), *frames),
            None => (None, 0),
        };
        let bins = logmel.as_ref().map_or(0, LogMel::num_bins);
        // Only the geometry is used (`to_rgb`): the normalisation is the identity.
        let identity = ImageNormalize {
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let preprocess = cfg
            .preprocess
            .map(|p| Preprocess::new(&p, &identity, (cfg.width, cfg.height)))
            .transpose()?;
        let shift = logmel.as_ref().map_or(1, |l| l.frame_shift() as u64);
        let mel_history = cfg.mel_history.max(mel_frames_per_window + 1);
        let (mov_slot, uv_slot) = match (&estimator, encoding) {
            (None, _) => (0, 0),
            (Some(_), FlowEncoding::Mov { .. }) => (3 * pixels, 0),
            (Some(_), FlowEncoding::Float) => (0, 2 * pixels),
        };
        Ok(WindowScheduler {
            frame_bytes,
            preprocess,
            span,
            frames: vec![0; frame_bytes * span],
            frame_times: vec![Nanos::ZERO; span],
            flows: vec![0; mov_slot * span],
            flows_uv: vec![0.0; uv_slot * span],
            next_slot: 0,
            frames_seen: 0,
            gap_at: 0,
            period_ns: Nanos::SECOND / i64::from(cfg.fps),
            estimator,
            gray_prev: vec![0.0; pixels],
            gray_next: vec![0.0; pixels],
            field: FlowField::new(cfg.width, cfg.height),
            encoding,
            logmel,
            mel_frames_per_window,
            bins,
            mel: VecDeque::with_capacity(mel_history),
            spare_mel: Vec::new(),
            anchors: VecDeque::with_capacity(64),
            samples_in: 0,
            mel_out: 0,
            shift,
            // log of Kaldi's floor: what silence looks like after the log.
            silence: f32::EPSILON.ln(),
            pending: VecDeque::with_capacity(cfg.max_pending.max(1)),
            windows_made: 0,
            video_ready: false,
            ready: None,
            stats: WindowStats::default(),
            cfg: WindowConfig {
                mel_history,
                max_pending: cfg.max_pending.max(1),
                ..cfg
            },
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> WindowStats {
        self.stats
    }

    /// Adds a frame (at the window's size, or any size with `preprocess`): stores it at
    /// the window's size, computes its flow from the previous frame, and queues a window
    /// when a hop is complete.
    ///
    /// # Errors
    /// [`Video`](crate::ErrorKind::Video) when the frame does not fit the window (wrong
    /// size without `preprocess`, or a size `preprocess` cannot resize); a failure of the
    /// flow estimator.
    pub fn push_frame(&mut self, frame: &VideoFrame) -> Result<()> {
        let slot = self.next_slot;
        let stored = &mut self.frames[slot * self.frame_bytes..(slot + 1) * self.frame_bytes];
        if let Some(pre) = self.preprocess.as_mut() {
            pre.to_rgb(
                &frame.rgb,
                frame.width as usize,
                frame.height as usize,
                stored,
            )?;
        } else if frame.width as usize != self.cfg.width
            || frame.height as usize != self.cfg.height
            || frame.rgb.len() != self.frame_bytes
        {
            return Err(err!(
                Video,
                "frame of {}x{} ({} bytes) does not match the window's {}x{} RGB",
                frame.width,
                frame.height,
                frame.rgb.len(),
                self.cfg.width,
                self.cfg.height
            ));
        } else {
            stored.copy_from_slice(&frame.rgb);
        }
        self.frame_times[slot] = frame.t_ns;
        if let Some(est) = self.estimator.as_mut() {
            std::mem::swap(&mut self.gray_prev, &mut self.gray_next);
            let stored = &self.frames[slot * self.frame_bytes..(slot + 1) * self.frame_bytes];
            flow::rgb_to_gray(stored, &mut self.gray_next);
            if self.frames_seen > self.gap_at {
                let result = est.compute(
                    &self.gray_prev,
                    &self.gray_next,
                    self.cfg.width,
                    self.cfg.height,
                    &mut self.field,
                );
                match result {
                    Ok(()) => {}
                    // Grey from bytes is always within range; the one refusal it can meet
                    // is TV-L1's "grey scaled to 0..1" on two black frames (every value
                    // at most 1): they have no motion to find.
                    Err(_) if is_black(&self.gray_prev) && is_black(&self.gray_next) => {
                        self.field.uv.fill(0.0);
                    }
                    Err(e) => return Err(e),
                }
            } else {
                // The first frame has no predecessor: zero motion.
                self.field.uv.fill(0.0);
            }
            let pixels = self.cfg.width * self.cfg.height;
            match self.encoding {
                FlowEncoding::Mov { bound } => {
                    let n = 3 * pixels;
                    let out = &mut self.flows[slot * n..(slot + 1) * n];
                    flow::mov_encode(&self.field, bound, out);
                }
                FlowEncoding::Float => {
                    let n = 2 * pixels;
                    let out = &mut self.flows_uv[slot * n..(slot + 1) * n];
                    flow::write_planar_uv(&self.field, out);
                }
            }
        }
        self.next_slot = (slot + 1) % self.span;
        self.frames_seen += 1;
        self.stats.frames += 1;
        let t = self.span as u64;
        let fresh = self.frames_seen - self.gap_at;
        if fresh >= t && (fresh - t).is_multiple_of(self.cfg.hop_frames as u64) {
            self.queue_window();
            if self.video_ready {
                self.ready = self.pending.back().cloned();
            }
        } else if self.video_ready && fresh >= t && self.cfg.stride == 1 {
            // not a window's last frame: the window that would end here holds the same
            // frames (by number), so encoding it early serves the windows to come
            self.ready = Some(self.build_window());
        }
        Ok(())
    }

    /// Makes [`take_video_ready`](Self::take_video_ready) hand out windows early.
    pub fn enable_video_ready(&mut self) {
        self.video_ready = true;
    }

    /// With [`enable_video_ready`](Self::enable_video_ready): after each frame, the
    /// newest frames as a window (without log-mel), once, while a window may still
    /// wait for its audio. A staged model encodes their frames and flow fields as they
    /// come: tokens are keyed by frame number, so the complete windows from
    /// [`poll`](Self::poll) reuse them and only their audio and the head remain. At a
    /// stride above 1, only windows due at a hop are handed out. `None` when there is
    /// nothing new.
    pub fn take_video_ready(&mut self) -> Option<Window> {
        self.ready.take()
    }

    fn queue_window(&mut self) {
        let window = self.build_window();
        self.windows_made += 1;
        if self.pending.len() == self.cfg.max_pending {
            self.pending.pop_front();
            self.stats.windows_dropped += 1;
        }
        self.pending.push_back(window);
    }

    /// The window ending at the newest frame (index: the next window's).
    fn build_window(&self) -> Window {
        let (t, span, stride) = (self.cfg.frames, self.span, self.cfg.stride);
        let oldest = self.next_slot; // ring is full: next slot holds the oldest frame
                                     // the ring slot of the window's frame k
        let slot = |k: usize| (oldest + k * stride) % span;
        let mut frames = Vec::with_capacity(t * self.frame_bytes);
        for k in 0..t {
            let s = slot(k);
            frames
                .extend_from_slice(&self.frames[s * self.frame_bytes..(s + 1) * self.frame_bytes]);
        }
        // The flow stored with a frame is (previous captured frame -> it): the fields of
        // the window's frames 1..T.
        fn fields<T: Copy>(ring: &[T], span: usize, slots: impl Iterator<Item = usize>) -> Vec<T> {
            let n = ring.len() / span;
            let mut out = Vec::new();
            for s in slots {
                out.extend_from_slice(&ring[s * n..(s + 1) * n]);
            }
            out
        }
        let flow = match (&self.estimator, self.encoding) {
            (None, _) => WindowFlow::None,
            (Some(_), FlowEncoding::Mov { .. }) => {
                WindowFlow::Mov(fields(&self.flows, span, (1..t).map(slot)))
            }
            (Some(_), FlowEncoding::Float) => {
                WindowFlow::Float(fields(&self.flows_uv, span, (1..t).map(slot)))
            }
        };
        let t_start = self.frame_times[oldest];
        let t_last = self.frame_times[slot(t - 1)];
        Window {
            index: self.windows_made,
            t_start,
            t_end: t_last + self.period_ns,
            t_last_frame: t_last,
            frames,
            flow,
            logmel: Vec::new(),
            audio_start: None,
            skew_ns: None,
            audio_missing: 0,
            invalid_audio: 0,
            first_frame: self.frames_seen - span as u64,
            stride,
            audio_slots: 0..0,
            audio_index: 0,
            video_complete_at: Instant::now(),
        }
    }

    /// Adds mono audio at the filterbank's rate and computes its log-mel frames. A
    /// non-finite sample is counted ([`WindowStats::audio_samples_invalid`]) and makes the
    /// log-mel frames containing it invalid (all NaN, not silence): the windows they fall
    /// into are flagged ([`Window::invalid_audio`]).
    pub fn push_audio(&mut self, chunk: &AudioChunk) {
        let Some(logmel) = self.logmel.as_mut() else {
            return;
        };
        if self.anchors.len() == self.anchors.capacity() {
            self.anchors.pop_front();
        }
        self.anchors
            .push_back((self.samples_in, chunk.t_ns, chunk.rate.max(1)));
        self.samples_in += chunk.samples.len() as u64;
        let (mel, spare, anchors) = (&mut self.mel, &mut self.spare_mel, &self.anchors);
        let (mel_out, shift, cap) = (&mut self.mel_out, self.shift, self.cfg.mel_history);
        let mel_frames = &mut self.stats.mel_frames;
        let invalid = logmel.push(&chunk.samples, &mut |frame: &[f32]| {
            let start = *mel_out * shift;
            *mel_out += 1;
            *mel_frames += 1;
            let t = sample_time(anchors, start);
            let mut v = if mel.len() == cap {
                mel.pop_front().map(|(_, v)| v).unwrap_or_default()
            } else {
                spare.pop().unwrap_or_default()
            };
            v.clear();
            v.extend_from_slice(frame);
            mel.push_back((t, v));
        });
        self.stats.audio_samples_invalid += invalid as u64;
    }

    /// Returns the next window whose audio is complete (or no longer awaited).
    /// `now` is the timeline's current time for live sources (enables the audio
    /// deadline); `end_of_stream` emits waiting windows with what audio exists.
    pub fn poll(&mut self, now: Option<Nanos>, end_of_stream: bool) -> Option<Window> {
        let front = self.pending.front()?;
        let need_audio = self.logmel.is_some() && self.cfg.expect_audio;
        if need_audio && !end_of_stream {
            let covered = self
                .mel
                .back()
                .is_some_and(|(t, _)| *t >= front.t_end - self.mel_period() / 2);
            let late = match (now, self.cfg.audio_wait_ns) {
                (Some(now), Some(wait)) => now - front.t_end > wait,
                _ => false,
            };
            if !covered && !late {
                return None;
            }
        }
        let mut w = self.pending.pop_front()?;
        if self.logmel.is_some() {
            self.fill_audio(&mut w);
        }
        self.stats.windows += 1;
        Some(w)
    }

    fn mel_period(&self) -> Nanos {
        let rate = self
            .cfg
            .logmel
            .as_ref()
            .map_or(16_000, |(f, _)| f.sample_rate.max(1));
        Nanos::from_count(self.shift as i64, u64::from(rate))
    }

    fn fill_audio(&mut self, w: &mut Window) {
        let a = self.mel_frames_per_window;
        let bins = self.bins;
        w.logmel = vec![self.silence; a * bins];
        let period = self.mel_period().max(Nanos::from_nanos(1));
        let half = period / 2;
        // The window's mel grid ends where its video ends: slot k starts at
        // `grid + k * period`. It only depends on frame times, so the same media gives the
        // same windows however the audio and video threads interleave.
        let grid = w.t_end - period * a as i64;
        // first mel frame starting at or after (grid - half a hop): the closest one.
        let first = self.mel.iter().position(|(t, _)| *t >= grid - half);
        let mut used = 0;
        if let Some(first) = first {
            let t0 = self.mel[first].0;
            // audio that starts late (warm-up, a gap) goes where its time says, after
            // silence; the residual misalignment is the window's skew.
            let k0 = ((t0 - grid + half) / period).max(0) as usize;
            if k0 < a {
                for (k, (_, v)) in self.mel.iter().skip(first).take(a - k0).enumerate() {
                    let k = k0 + k;
                    if LogMel::is_invalid_frame(v) {
                        w.invalid_audio += 1;
                    }
                    w.logmel[k * bins..(k + 1) * bins].copy_from_slice(v);
                    used += 1;
                }
                w.audio_slots = k0..k0 + used;
                w.audio_index = self.mel_out - self.mel.len() as u64 + first as u64;
                let start = t0 - period * k0 as i64;
                w.audio_start = Some(start);
                w.skew_ns = Some(start - grid);
            }
        }
        w.audio_missing = a - used;
        if w.invalid_audio > 0 {
            self.stats.windows_invalid_audio += 1;
        }
        if w.audio_missing > 0 {
            self.stats.windows_audio_incomplete += 1;
        }
        // mel frames before this window can never be needed again
        let keep_from = grid - half;
        while self.mel.len() > a && self.mel.front().is_some_and(|(t, _)| *t < keep_from) {
            if let Some((_, v)) = self.mel.pop_front() {
                if self.spare_mel.len() < 64 {
                    self.spare_mel.push(v);
                }
            }
        }
    }

    /// The video source was reopened (a [`Gap`](crate::capture::CaptureEvent::Gap)):
    /// the next window starts with the next frame (no window spans the gap; its first
    /// frame has zero flow). Frame numbers go on, so cached tokens stay distinct.
    pub fn restart_video(&mut self) {
        self.gap_at = self.frames_seen;
        self.stats.video_gaps += 1;
    }

    /// Windows waiting for their audio.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Time of stream sample `index` from the most recent anchor at or before it.
fn sample_time(anchors: &VecDeque<(u64, Nanos, u32)>, index: u64) -> Nanos {
    let anchor = anchors
        .iter()
        .rev()
        .find(|(start, _, _)| *start <= index)
        .or(anchors.front());
    match anchor {
        Some(&(start, t, rate)) => {
            t + Nanos::from_count(index as i64 - start as i64, u64::from(rate))
        }
        None => Nanos::ZERO,
    }
}

/// Whether every grey value of a frame is at most 1 (a black frame).
fn is_black(gray: &[f32]) -> bool {
    gray.iter().all(|&g| g <= 1.0)
}
