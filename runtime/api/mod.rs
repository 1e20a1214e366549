//! The public handle: [`Runtime::builder`] wires capture, windows, frontends, a
//! backend and the decoder into threads, and hands out [`Output`]s through a bounded
//! channel (or a callback), with [`Stats`] on request and clean shutdown on drop.

mod checks;
mod mailbox;
mod stats;

pub use checks::{
    check_sentences, MAX_AUDIO_WAIT, MAX_HOP_FRAMES, MAX_LABELS, MAX_LABEL_BYTES,
    MAX_OUTPUT_CAPACITY, MAX_THREADS,
};
pub use stats::Stats;

use crate::backend::engine_cache::{EngineCache, Precision};
use crate::backend::{BackendChoice, BackendOptions};
use crate::capture::audio::Microphone;
use crate::capture::video::VideoCapture;
use crate::capture::{AudioSource, CaptureEvent, CaptureStats, LabelOverlay, VideoSource};
use crate::clock::{Nanos, Timeline};
use crate::decode::{Decoder, Event, Prediction, WindowScores};
use crate::infer::{decoder_labels, plan, InputAssembler, ModelRunner};
use crate::model::Bundle;
use crate::window::{Window, WindowConfig, WindowScheduler, WindowStream, WindowStreamStep};
use crate::{err, Error, Result};
use mailbox::Mailbox;
use serde::Serialize;
use stats::Shared;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the runtime emits.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Output {
    /// The decoded scores of one window.
    Prediction(Prediction),
    /// An onset or offset of a label.
    Event(Event),
}

type Callback = Box<dyn FnMut(&Output) + Send>;

/// Configures and starts a [`Runtime`].
pub struct RuntimeBuilder {
    model: Option<PathBuf>,
    video: VideoSource,
    audio: AudioSource,
    backend: BackendOptions,
    camera: Option<crate::capture::video::CameraCaps>,
    realtime: bool,
    hop_frames: Option<usize>,
    flow_estimator: Option<String>,
    capacity: usize,
    audio_wait: Duration,
    callback: Option<Callback>,
    display: Option<String>,
    labels: Vec<String>,
    limits: crate::capture::video::MediaLimits,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("model", &self.model)
            .field("video", &self.video)
            .field("audio", &self.audio)
            .field("backend", &self.backend)
            .field("realtime", &self.realtime)
            .finish()
    }
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder {
            model: None,
            video: VideoSource::Camera(None),
            audio: AudioSource::DefaultMicrophone,
            backend: BackendOptions::default(),
            camera: None,
            realtime: false,
            hop_frames: None,
            flow_estimator: None,
            capacity: 256,
            audio_wait: Duration::from_millis(300),
            callback: None,
            display: None,
            labels: Vec::new(),
            limits: crate::capture::video::MediaLimits::default(),
        }
    }
}

impl RuntimeBuilder {
    /// The model bundle folder (with `model.toml`). Required.
    pub fn model(mut self, dir: impl Into<PathBuf>) -> Self {
        self.model = Some(dir.into());
        self
    }
    /// The video source (default: the first camera).
    pub fn video(mut self, source: VideoSource) -> Self {
        self.video = source;
        self
    }
    /// The audio source (default: the default microphone).
    pub fn audio(mut self, source: AudioSource) -> Self {
        self.audio = source;
        self
    }
    /// The inference backend (default: `auto`).
    pub fn backend(mut self, choice: BackendChoice) -> Self {
        self.backend.choice = choice;
        self
    }
    /// TensorRT engine precision (default: FP16). INT8 is refused (no calibrator).
    pub fn precision(mut self, precision: Precision) -> Self {
        self.backend.engine.precision = precision;
        self
    }
    /// Where TensorRT engines are cached (default: [`EngineCache::default_dir`]).
    pub fn engine_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.backend.engine.cache = EngineCache::new(dir);
        self
    }
    /// Threads tract may use for one inference (default 1, at most [`MAX_THREADS`];
    /// [`build`](Self::build) refuses 0). The frontends and capture have their own
    /// threads whatever this is.
    pub fn threads(mut self, threads: usize) -> Self {
        self.backend.threads = threads;
        self
    }
    /// Files: play at real time (true) or process as fast as possible with no drops
    /// (false, default). Live sources are always real time.
    pub fn realtime(mut self, realtime: bool) -> Self {
        self.realtime = realtime;
        self
    }
    /// Optical-flow estimator for models that take flow, instead of the manifest's (see
    /// [`ESTIMATOR_NAMES`](crate::frontend::flow::ESTIMATOR_NAMES)); the model was trained
    /// on its manifest's estimator, so a different one may cost accuracy.
    pub fn flow_estimator(mut self, name: impl Into<String>) -> Self {
        self.flow_estimator = Some(name.into());
        self
    }

    /// Applies a device profile (`targets/*.toml`): its backend order, precision and
    /// threads, camera caps, window stride and flow estimator.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) when the profile's backend order or precision
    /// is invalid.
    pub fn target(mut self, target: &crate::target::Target) -> Result<Self> {
        self.camera = Some(target.capture.clone());
        Ok(self
            .backend(target.backend_choice()?)
            .precision(target.precision()?)
            .threads(target.backend.threads)
            .hop_frames(target.window.hop_frames)
            .flow_estimator(target.flow.estimator.clone()))
    }

    /// Adds label sentences to an open-vocabulary model (one with `[vocabulary]`), e.g.
    /// `"a disc falls with a thud"`. A sentence the bundle has no precomputed embedding
    /// for is embedded on this device by all-MiniLM-L6-v2 ([`crate::text`]); where that
    /// model is not set up, [`build`](Self::build) fails and says how to set it up.
    pub fn labels<S: Into<String>>(mut self, sentences: impl IntoIterator<Item = S>) -> Self {
        self.labels.extend(sentences.into_iter().map(Into::into));
        self
    }

    /// Frames between windows (default: the manifest's `hop_frames`; 1 to
    /// [`MAX_HOP_FRAMES`]).
    pub fn hop_frames(mut self, hop: usize) -> Self {
        self.hop_frames = Some(hop);
        self
    }
    /// Capacity of the output channel (default 256). When a live run's reader falls
    /// behind, outputs beyond it are dropped and counted. 1 to [`MAX_OUTPUT_CAPACITY`].
    pub fn output_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }
    /// Live runs: how long a window may wait for its audio (default 300 ms, at most
    /// [`MAX_AUDIO_WAIT`]).
    pub fn audio_wait(mut self, wait: Duration) -> Self {
        self.audio_wait = wait;
        self
    }
    /// Shows the frames in a window of the GStreamer video sink `sink` (e.g.
    /// `autovideosink`) with the current top label drawn on them. The display never
    /// holds the model back: it drops frames when it falls behind.
    pub fn display(mut self, sink: impl Into<String>) -> Self {
        self.display = Some(sink.into());
        self
    }
    /// Largest video resolution a source may deliver (default 7680x4320). A source
    /// whose decoded video is larger is refused at start with a
    /// [`Video`](crate::ErrorKind::Video) error naming its size and this limit, before
    /// frames of that size are allocated; zero is refused by [`build`](Self::build).
    pub fn max_resolution(mut self, width: u32, height: u32) -> Self {
        (self.limits.max_width, self.limits.max_height) = (width, height);
        self
    }
    /// Largest frame rate a source may deliver, in frames per second (default 240);
    /// beyond it the source is refused as for [`max_resolution`](Self::max_resolution).
    /// Zero is refused by [`build`](Self::build).
    pub fn max_fps(mut self, fps: u32) -> Self {
        self.limits.max_fps = fps;
        self
    }
    /// Threads each libav video decoder may use (default 2; 1..=64, others are refused
    /// by [`build`](Self::build)).
    pub fn decoder_threads(mut self, threads: u32) -> Self {
        self.limits.decoder_threads = threads;
        self
    }
    /// Delivers every output to `callback` on the inference thread instead of the
    /// channel. Keep it short: it delays the next window. A panic in it ends the run:
    /// [`Runtime::finish`] returns a [`Stopped`](crate::ErrorKind::Stopped) error naming
    /// the callback, and the callback is not called again.
    pub fn on_output(mut self, callback: impl FnMut(&Output) + Send + 'static) -> Self {
        self.callback = Some(Box::new(callback));
        self
    }

    /// Loads the model, opens the sources and starts the threads.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for a setting out of range (threads, hop,
    /// output capacity, audio wait, an empty or overlong label sentence, a zero media
    /// limit: resolution, frame rate, decoder threads), without a model or without a
    /// video source; the bundle's
    /// errors ([`Bundle::load`]); the backend's ([`crate::backend::open`]);
    /// [`Video`](crate::ErrorKind::Video) or [`Audio`](crate::ErrorKind::Audio) when a
    /// source cannot be opened (a missing audio source is only an error for a model that
    /// needs audio); [`Unavailable`](crate::ErrorKind::Unavailable) for added labels
    /// without the text model.
    pub fn build(self) -> Result<Runtime> {
        self.check()?;
        self.limits.validate()?;
        let model_dir = self
            .model
            .clone()
            .ok_or_else(|| err!(Config, "no model given: call .model(\"models/<name>\")"))?;
        let bundle = Bundle::load(&model_dir)?;
        let m = &bundle.manifest;
        let (backend, backend_status) = ModelRunner::open(&bundle, &self.backend)?;
        let backend_name = backend.name();
        log::info!("model {} {} on {backend_name}", m.name, m.version);
        let (labels, scorer) = decoder_labels(&bundle, &self.labels)?;

        let timeline = Timeline::start();
        let capture_stats = Arc::new(CaptureStats::default());
        let (cap_tx, cap_rx) = mpsc::sync_channel::<CaptureEvent>(64);
        let logmel = m.logmel();
        let wants_audio = logmel.is_some();
        let live = self.video.is_live() || self.realtime;
        if self.video == VideoSource::None {
            return Err(err!(
                Config,
                "a video source is required (the window is driven by frames)"
            ));
        }

        let rate = logmel.as_ref().map_or(16_000, |l| l.fbank.sample_rate);
        let from_video = wants_audio && self.audio == AudioSource::FromVideo;
        let mut vcfg = plan::video_config(m);
        vcfg.realtime = self.realtime;
        vcfg.display_sink = self.display.clone();
        vcfg.camera = self.camera.clone();
        vcfg.limits = self.limits;
        if !from_video {
            vcfg.audio_rate = None;
        }
        let video = VideoCapture::start(
            &self.video,
            &vcfg,
            timeline,
            cap_tx.clone(),
            capture_stats.clone(),
        )?;
        let overlay = video.overlay();

        let mut expect_audio = wants_audio;
        let mut mic = None;
        let mut degraded = None;
        if wants_audio {
            let missing = match &self.audio {
                AudioSource::FromVideo if !video.has_audio() => Some(err!(
                    Audio,
                    "the video source {:?} has no audio track",
                    self.video
                )),
                AudioSource::FromVideo => None,
                AudioSource::None => Some(err!(Audio, "no audio source was given")),
                source => match Microphone::start(
                    source,
                    rate,
                    timeline,
                    cap_tx.clone(),
                    capture_stats.clone(),
                ) {
                    Ok(mc) => {
                        log::info!("microphone: {}", mc.device_name());
                        mic = Some(mc);
                        None
                    }
                    Err(e) => Some(e),
                },
            };
            if let Some(e) = missing {
                if m.window.audio_optional {
                    log::warn!("{e}; continuing video-only (model {} allows it)", m.name);
                    degraded = Some(format!("video-only: {}", e.message()));
                    expect_audio = false;
                } else {
                    return Err(e.context(format!("model {} needs audio", m.name)));
                }
            }
        }
        drop(cap_tx);

        let mut defaults = plan::window_config(m);
        if let (Some(name), Some(flow)) = (&self.flow_estimator, defaults.flow.as_mut()) {
            if *name != flow.estimator {
                log::warn!(
                    "flow: running {name} instead of the model's {} (trained on it)",
                    flow.estimator
                );
                flow.estimator = name.clone();
                flow.tvl1 = None;
            }
        }
        let wcfg = WindowConfig {
            hop_frames: self.hop_frames.unwrap_or(m.window.hop_frames),
            expect_audio,
            audio_wait_ns: live.then_some(Nanos::from(self.audio_wait)),
            max_pending: if live { 8 } else { defaults.max_pending },
            ..defaults
        };
        let stream = WindowStream::new(WindowScheduler::new(wcfg)?, cap_rx);
        let shared = Arc::new(Shared::new(capture_stats, backend_status, degraded));
        let mailbox = Arc::new(Mailbox::<Window>::new());
        let (out_tx, out_rx) = mpsc::sync_channel(self.capacity);

        let scheduling = {
            let (shared, mailbox) = (shared.clone(), mailbox.clone());
            std::thread::Builder::new()
                .name("avaction-windows".into())
                .spawn(move || {
                    guarded("window", &shared, &mailbox, || {
                        schedule_loop(stream, &mailbox, &shared, timeline, live)
                    })
                })
                .map_err(|e| err!(Stopped, "cannot start the window thread").caused_by(e))?
        };
        let inference = {
            let shared = shared.clone();
            let ctx = InferenceContext {
                assembler: InputAssembler::new(m),
                decoder: match scorer {
                    Some(scorer) => Decoder::new(&m.decoder, &labels).with_scorer(scorer),
                    None => Decoder::new(&m.decoder, &labels),
                },
                backend,
                out: Sink {
                    tx: out_tx,
                    callback: self.callback,
                    live,
                    broken: false,
                },
                timeline,
                live,
                overlay: overlay.clone(),
            };
            std::thread::Builder::new()
                .name("avaction-inference".into())
                .spawn(move || {
                    guarded("inference", &shared, &mailbox, || {
                        inference_loop(ctx, &mailbox, &shared)
                    })
                })
                .map_err(|e| err!(Stopped, "cannot start the inference thread").caused_by(e))?
        };
        Ok(Runtime {
            outputs: out_rx,
            shared,
            video: Some(video),
            mic,
            threads: vec![scheduling, inference],
            bundle,
            labels,
            overlay,
        })
    }
}

/// A running pipeline. Read outputs with [`outputs`](Runtime::outputs); it stops on
/// drop, on [`stop`](Runtime::stop), or by itself at the end of a file.
pub struct Runtime {
    outputs: Receiver<Output>,
    shared: Arc<Shared>,
    video: Option<VideoCapture>,
    mic: Option<Microphone>,
    threads: Vec<JoinHandle<()>>,
    bundle: Bundle,
    labels: Vec<String>,
    overlay: Option<LabelOverlay>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("model", &self.bundle.manifest.name)
            .finish()
    }
}

impl Runtime {
    /// Starts configuring a runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// Blocking iterator over outputs; it ends when the source ends or fails, or
    /// after [`stop`](Runtime::stop). Check [`error`](Runtime::error) afterwards.
    pub fn outputs(&self) -> mpsc::Iter<'_, Output> {
        self.outputs.iter()
    }

    /// Waits up to `timeout` for the next output. `Err` once the runtime ended.
    ///
    /// # Errors
    /// `Timeout` when nothing came within `timeout`; `Disconnected` once the runtime has
    /// ended (then see [`Runtime::error`]).
    pub fn recv_timeout(&self, timeout: Duration) -> std::result::Result<Output, RecvTimeoutError> {
        self.outputs.recv_timeout(timeout)
    }

    /// The labels predictions name, in score order (for an open-vocabulary model, the
    /// bundle's then those added with [`RuntimeBuilder::labels`]).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The loaded bundle.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Counters and timings so far.
    pub fn stats(&self) -> Stats {
        self.shared.snapshot()
    }

    /// The text the display currently draws on the frames (`None` without a display).
    pub fn overlay_text(&self) -> Option<String> {
        self.overlay.as_ref().map(LabelOverlay::text)
    }

    /// The error that ended the run, if one did.
    pub fn error(&self) -> Option<Error> {
        self.shared.error()
    }

    /// Stops capture and joins the worker threads. Idempotent.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(mut v) = self.video.take() {
            v.stop();
        }
        if let Some(mut m) = self.mic.take() {
            m.stop();
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                self.shared.fail(err!(Stopped, "a worker thread panicked"));
            }
        }
    }

    /// Waits for the end of the source (files), then stops; returns the final stats
    /// or the error that ended the run.
    ///
    /// # Errors
    /// The error that ended the run: a source that failed, a backend that failed, or
    /// [`Stopped`](crate::ErrorKind::Stopped) when a worker thread panicked.
    pub fn finish(mut self) -> Result<Stats> {
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                self.shared.fail(err!(Stopped, "a worker thread panicked"));
            }
        }
        self.stop();
        match self.shared.error() {
            Some(e) => Err(e),
            None => Ok(self.shared.snapshot()),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop();
    }
}

fn schedule_loop(
    mut stream: WindowStream,
    mailbox: &Mailbox<Window>,
    shared: &Shared,
    timeline: Timeline,
    live: bool,
) {
    let now = || live.then(|| timeline.now());
    while !shared.stop.load(Ordering::Relaxed) {
        let step = stream.next(Duration::from_millis(10), &now);
        shared.add_frontend(stream.take_frontend_time());
        shared.set_window_stats(stream.stats());
        match step {
            Ok(WindowStreamStep::Window(w)) if live => {
                if mailbox.put_latest(w) {
                    shared.windows_skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(WindowStreamStep::Window(w)) => {
                if mailbox
                    .put_wait(w, &|| shared.stop.load(Ordering::Relaxed))
                    .is_err()
                {
                    break;
                }
            }
            Ok(WindowStreamStep::Pending) => {}
            Ok(WindowStreamStep::Ended) => break,
            Err(e) => {
                shared.fail(e);
                break;
            }
        }
    }
    shared.set_window_stats(stream.stats());
    mailbox.close();
}

/// Runs a worker thread's body. A panic in it ends the run with a
/// [`Stopped`](crate::ErrorKind::Stopped) error naming the worker (what
/// [`Runtime::finish`] returns), stops the other worker and closes the mailbox, so that
/// nothing waits for the dead thread.
fn guarded(name: &str, shared: &Shared, mailbox: &Mailbox<Window>, body: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        shared.fail(err!(
            Stopped,
            "the {name} thread panicked: {} (a bug: please report it)",
            panic_message(payload.as_ref())
        ));
        mailbox.close();
    }
}

/// The text a panic was raised with.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

struct Sink {
    tx: SyncSender<Output>,
    callback: Option<Callback>,
    live: bool,
    /// Set once the callback panicked: it is never called again.
    broken: bool,
}

impl Sink {
    /// Delivers an output; false when nobody can receive any more.
    fn emit(&mut self, output: Output, shared: &Shared) -> bool {
        if self.broken {
            return false;
        }
        if let Some(cb) = self.callback.as_mut() {
            let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&output)));
            if let Err(payload) = called {
                self.broken = true;
                shared.fail(err!(
                    Stopped,
                    "the on_output callback panicked: {}",
                    panic_message(payload.as_ref())
                ));
                return false;
            }
            return true;
        }
        let mut output = output;
        loop {
            match self.tx.try_send(output) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(o)) => {
                    if self.live || shared.stop.load(Ordering::Relaxed) {
                        shared.outputs_dropped.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                    output = o;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
}

struct InferenceContext {
    assembler: InputAssembler,
    decoder: Decoder,
    backend: ModelRunner,
    out: Sink,
    timeline: Timeline,
    live: bool,
    overlay: Option<LabelOverlay>,
}

/// Logs invalid windows at most once per this interval (with the count since the last log).
const INVALID_LOG_INTERVAL: Duration = Duration::from_secs(5);

fn inference_loop(mut ctx: InferenceContext, mailbox: &Mailbox<Window>, shared: &Shared) {
    let mut events: Vec<Event> = Vec::with_capacity(16);
    let mut last_end = None;
    let mut invalid_unlogged = 0u64;
    let mut invalid_logged_at: Option<Instant> = None;
    loop {
        let window = match mailbox.take(Duration::from_millis(50)) {
            Err(()) => break,
            Ok(None) if shared.stop.load(Ordering::Relaxed) => break,
            Ok(None) => continue,
            Ok(Some(w)) => w,
        };
        if window.invalid_audio > 0 {
            // Non-finite audio: no prediction from it (neither silence nor NaN scores).
            shared.windows_invalid.fetch_add(1, Ordering::Relaxed);
            invalid_unlogged += 1;
            if invalid_logged_at.is_none_or(|t| t.elapsed() >= INVALID_LOG_INTERVAL) {
                log::warn!(
                    "skipped {invalid_unlogged} window(s) whose audio held non-finite samples (latest: window {}, {} of its log-mel frames)",
                    window.index,
                    window.invalid_audio
                );
                invalid_unlogged = 0;
                invalid_logged_at = Some(Instant::now());
            }
            continue;
        }
        let t0 = Instant::now();
        let out = match ctx.backend.run(&window, &mut ctx.assembler) {
            Ok(out) => out,
            Err(e) => {
                shared.fail(e);
                break;
            }
        };
        shared.add_inference(t0.elapsed());
        shared.set_tokens(ctx.backend.token_counts());
        let latency_ms = if ctx.live {
            (ctx.timeline.now() - window.t_last_frame).as_millis_f64()
        } else {
            window.video_complete_at.elapsed().as_secs_f64() * 1e3
        };
        shared.record_window(latency_ms, window.skew_ns);
        events.clear();
        let scores = WindowScores {
            window: window.index,
            span: window.span(),
            output: &out.data,
            latency_ms,
            skew_ns: window.skew_ns,
            audio_missing: window.audio_missing,
        };
        let prediction = match ctx.decoder.push(&scores, &mut events) {
            Ok(p) => p,
            Err(e) => {
                shared.fail(e);
                break;
            }
        };
        last_end = Some(window.t_end);
        if let (Some(overlay), Some(best)) = (&ctx.overlay, prediction.top.first()) {
            overlay.set_text(&format!("{} {:.2}", best.label, best.score));
        }
        if !ctx.out.emit(Output::Prediction(prediction), shared) {
            break;
        }
        for e in events.drain(..) {
            ctx.out.emit(Output::Event(e), shared);
        }
    }
    if let Some(t) = last_end {
        ctx.decoder.finish(t, &mut events);
        for e in events.drain(..) {
            ctx.out.emit(Output::Event(e), shared);
        }
    }
}
