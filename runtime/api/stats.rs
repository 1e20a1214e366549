//! Run statistics: counters shared by the worker threads (atomics) and bounded
//! rings of recent latencies and skews, summarised on request.

use crate::backend::{BackendStatus, BackendSwitch};
use crate::capture::CaptureStats;
use crate::clock::Nanos;
use crate::health::{HealthBoard, SourceKind};
use crate::window::{End, WindowStats};
use crate::Error;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RECENT: usize = 2048;

/// A snapshot of the runtime's counters and timings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Backend serving now (`tract`, `tensorrt`).
    pub backend: String,
    /// A backend being prepared in the background (a TensorRT engine building while
    /// tract serves), or why the preferred backend is not used; `None` when settled.
    pub backend_pending: Option<String>,
    /// The switch to the prepared backend, once it happened (between two windows).
    pub backend_switch: Option<BackendSwitch>,
    /// Seconds since start.
    pub elapsed_s: f64,
    /// Frames received.
    pub frames: u64,
    /// Frames per second received (over the run).
    pub fps: f64,
    /// Frames dropped by capture (live source faster than the runtime).
    pub frames_dropped: u64,
    /// Audio samples received at the model rate.
    pub samples: u64,
    /// Audio samples lost to ring overruns.
    pub samples_dropped: u64,
    /// Windows run through the model.
    pub windows: u64,
    /// Windows per second run through the model.
    pub windows_per_s: f64,
    /// Windows skipped on purpose because inference was busy (newest wins).
    pub windows_skipped: u64,
    /// Windows dropped while waiting for audio.
    pub windows_dropped: u64,
    /// Windows run with part of their audio missing (filled with silence).
    pub windows_audio_incomplete: u64,
    /// Windows not run because their audio held non-finite samples (NaN, +-inf): no
    /// prediction is made from them (see `Window::invalid_audio`).
    pub windows_invalid: u64,
    /// Audio samples that were not finite (NaN, +-inf).
    pub samples_invalid: u64,
    /// Onset and offset events emitted (every one reaches the reader: they are never
    /// dropped while the run goes on).
    pub events: u64,
    /// Predictions dropped because the reader fell behind (live only).
    pub outputs_dropped: u64,
    /// Median latency over recent windows, ms.
    pub latency_p50_ms: f64,
    /// 99th percentile latency over recent windows, ms.
    pub latency_p99_ms: f64,
    /// Median audio-video skew over recent windows, ms.
    pub skew_p50_ms: f64,
    /// Largest absolute skew over recent windows, ms.
    pub skew_max_abs_ms: f64,
    /// Mean frontend time (flow, log-mel, copies) per frame, ms.
    pub frontend_ms_per_frame: f64,
    /// Mean inference time (normalise + backend) per window, ms.
    pub inference_ms_per_window: f64,
    /// Staged models: tokens the encoders computed (new frames, fields, mel segments).
    pub tokens_computed: u64,
    /// Staged models: tokens taken from the rings instead of recomputed.
    pub tokens_reused: u64,
    /// Why the run is degraded (e.g. video-only), if it is.
    pub degraded: Option<String>,
    /// Windows not labelled because their audio was missing and the model needs it
    /// (labels pause until the audio returns).
    pub windows_paused: u64,
    /// Windows labelled video-only by an audio-optional model (audio missing).
    pub windows_video_only: u64,
    /// Times a live source was reopened after a loss or a stall.
    pub reconnects: u64,
    /// Times the video stream restarted after a gap (no window spans one).
    pub video_gaps: u64,
    /// Seconds since the latest frame arrived (`None`: none yet).
    pub last_frame_age_s: Option<f64>,
    /// Seconds since the latest audio arrived from a microphone (`None`: none yet, or
    /// no microphone).
    pub last_audio_age_s: Option<f64>,
    /// How a file ended: complete or cut short (`None`: live, or not ended yet).
    pub end: Option<End>,
    /// TensorRT engines built but not stored in the engine cache (its write failed):
    /// served from memory, rebuilt on the next start.
    pub engines_not_cached: u64,
    /// Milliseconds per window in each stage: the encoders (by input name) and `head`
    /// of a staged model, or `model` for a single graph.
    pub inference_ms_per_stage: Vec<(String, f64)>,
    /// The sinks' counters: delivered, waiting in the spool, dropped from a full spool,
    /// connected ([`crate::deliver`]).
    pub sinks: Vec<crate::deliver::SinkStats>,
    /// Predictions the sinks did not get because they were behind (events never are
    /// dropped there).
    pub sink_predictions_dropped: u64,
}

#[derive(Debug, Default)]
struct Recent {
    latency_ms: VecDeque<f64>,
    skew_ms: VecDeque<f64>,
}

fn push_bounded(q: &mut VecDeque<f64>, v: f64) {
    if q.len() == RECENT {
        q.pop_front();
    }
    q.push_back(v);
}

fn percentile(values: &VecDeque<f64>, p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v: Vec<f64> = values.iter().copied().collect();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// State shared between the handle and the worker threads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    pub(crate) capture: Arc<CaptureStats>,
    pub(crate) windows_skipped: AtomicU64,
    pub(crate) outputs_dropped: AtomicU64,
    pub(crate) windows_invalid: AtomicU64,
    pub(crate) windows_paused: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) windows_video_only: AtomicU64,
    pub(crate) board: Arc<HealthBoard>,
    pub(crate) end: Mutex<Option<End>>,
    backend: Arc<BackendStatus>,
    degraded: Option<String>,
    started: Instant,
    windows_run: AtomicU64,
    frontend_ns: AtomicU64,
    inference_ns: AtomicU64,
    /// Time per stage of a staged model (name, total ns).
    stages: std::sync::Mutex<Vec<(String, u64)>>,
    tokens_computed: AtomicU64,
    tokens_reused: AtomicU64,
    window_stats: Mutex<WindowStats>,
    recent: Mutex<Recent>,
    error: Mutex<Option<Error>>,
}

impl Shared {
    pub(crate) fn new(
        capture: Arc<CaptureStats>,
        backend: Arc<BackendStatus>,
        degraded: Option<String>,
        board: Arc<HealthBoard>,
    ) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            capture,
            windows_skipped: AtomicU64::new(0),
            outputs_dropped: AtomicU64::new(0),
            windows_invalid: AtomicU64::new(0),
            windows_paused: AtomicU64::new(0),
            events: AtomicU64::new(0),
            windows_video_only: AtomicU64::new(0),
            board,
            end: Mutex::new(None),
            backend,
            degraded,
            started: Instant::now(),
            windows_run: AtomicU64::new(0),
            frontend_ns: AtomicU64::new(0),
            inference_ns: AtomicU64::new(0),
            stages: std::sync::Mutex::new(Vec::new()),
            tokens_computed: AtomicU64::new(0),
            tokens_reused: AtomicU64::new(0),
            window_stats: Mutex::new(WindowStats::default()),
            recent: Mutex::new(Recent::default()),
            error: Mutex::new(None),
        }
    }

    /// Records the first error and asks every thread to stop.
    pub(crate) fn fail(&self, e: Error) {
        log::error!("{e}");
        let mut g = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(e);
        }
        self.stop.store(true, Ordering::Relaxed);
    }

    pub(crate) fn error(&self) -> Option<Error> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn add_frontend(&self, d: Duration) {
        self.frontend_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_stages(&self, stages: &[(&str, u64)]) {
        let mut g = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        g.clear();
        g.extend(stages.iter().map(|(n, ns)| (n.to_string(), *ns)));
    }

    pub(crate) fn set_tokens(&self, (computed, reused): (u64, u64)) {
        self.tokens_computed.store(computed, Ordering::Relaxed);
        self.tokens_reused.store(reused, Ordering::Relaxed);
    }

    pub(crate) fn add_inference(&self, d: Duration) {
        self.inference_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_window_stats(&self, s: WindowStats) {
        *self.window_stats.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    pub(crate) fn record_window(&self, latency_ms: f64, skew_ns: Option<Nanos>) {
        self.windows_run.fetch_add(1, Ordering::Relaxed);
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        push_bounded(&mut r.latency_ms, latency_ms);
        if let Some(s) = skew_ns {
            push_bounded(&mut r.skew_ms, s.as_millis_f64());
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        let ws = *self.window_stats.lock().unwrap_or_else(|p| p.into_inner());
        let r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let windows = self.windows_run.load(Ordering::Relaxed);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let health = self.board.health();
        let age = |kind| {
            health
                .sources
                .iter()
                .filter(|s| s.kind == kind)
                .find_map(|s| s.last_data_age_s)
        };
        Stats {
            backend: self.backend.active().to_string(),
            backend_pending: self.backend.pending(),
            backend_switch: self.backend.switch(),
            elapsed_s: elapsed,
            frames: ws.frames,
            fps: ws.frames as f64 / elapsed,
            frames_dropped: load(&self.capture.frames_dropped),
            samples: load(&self.capture.samples),
            samples_dropped: load(&self.capture.samples_dropped),
            windows,
            windows_per_s: windows as f64 / elapsed,
            windows_skipped: load(&self.windows_skipped),
            windows_dropped: ws.windows_dropped,
            windows_audio_incomplete: ws.windows_audio_incomplete,
            windows_invalid: load(&self.windows_invalid),
            samples_invalid: ws.audio_samples_invalid,
            events: load(&self.events),
            outputs_dropped: load(&self.outputs_dropped),
            latency_p50_ms: percentile(&r.latency_ms, 0.5),
            latency_p99_ms: percentile(&r.latency_ms, 0.99),
            skew_p50_ms: percentile(&r.skew_ms, 0.5),
            skew_max_abs_ms: r.skew_ms.iter().fold(0.0, |m: f64, s| m.max(s.abs())),
            frontend_ms_per_frame: load(&self.frontend_ns) as f64 / 1e6 / ws.frames.max(1) as f64,
            inference_ms_per_window: load(&self.inference_ns) as f64 / 1e6 / windows.max(1) as f64,
            tokens_computed: load(&self.tokens_computed),
            tokens_reused: load(&self.tokens_reused),
            degraded: self.degraded.clone(),
            windows_paused: load(&self.windows_paused),
            windows_video_only: load(&self.windows_video_only),
            reconnects: health.sources.iter().map(|s| s.reconnects).sum(),
            video_gaps: ws.video_gaps,
            last_frame_age_s: age(SourceKind::Video),
            last_audio_age_s: age(SourceKind::Audio),
            end: self.end.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            engines_not_cached: self.backend.engines_not_cached(),
            inference_ms_per_stage: {
                let g = self.stages.lock().unwrap_or_else(|p| p.into_inner());
                if g.is_empty() {
                    vec![(
                        "model".to_string(),
                        load(&self.inference_ns) as f64 / 1e6 / windows.max(1) as f64,
                    )]
                } else {
                    g.iter()
                        .map(|(n, ns)| (n.clone(), *ns as f64 / 1e6 / windows.max(1) as f64))
                        .collect()
                }
            },
            sinks: Vec::new(),
            sink_predictions_dropped: 0,
        }
    }
}
