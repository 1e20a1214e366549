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
use crate::capture::clip::{ClipBranch, ClipTap};
use crate::capture::video::VideoCapture;
use crate::capture::{
    AudioSource, CaptureEvent, CaptureStats, LabelOverlay, SourceWatch, VideoSource,
};
use crate::clock::{Nanos, Timeline};
use crate::decode::{Decoder, Event, WindowScores};
use crate::deliver::clips::{ClipModel, ClipSink};
use crate::health::{Health, HealthBoard, Reason, SourceKind};
use crate::infer::{decoder_labels, plan, InputAssembler, ModelRunner};
use crate::model::Bundle;
use crate::supervise::{Policy, Source, Supervised, Supervisor};
use crate::window::{End, Window, WindowConfig, WindowScheduler, WindowStream, WindowStreamStep};
use crate::{err, Error, Result};
use mailbox::Mailbox;
use stats::Shared;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::deliver::Output;

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
    supervision: Policy,
    panic_in: Option<String>,
    sinks: Vec<Box<dyn crate::deliver::Sink>>,
    clips: Option<crate::deliver::clips::ClipOptions>,
    target_clip_encoder: Option<crate::capture::clip::ClipEncoder>,
    view: Option<Arc<crate::window::view::LiveView>>,
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
            supervision: Policy::default(),
            panic_in: None,
            sinks: Vec::new(),
            clips: None,
            target_clip_encoder: None,
            view: None,
        }
    }
}

impl RuntimeBuilder {
    /// The model bundle: a folder with `model.toml`, or the name of an installed bundle
    /// (e.g. `"mov-small"`, found as [`crate::model::search`] describes). Required.
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
        if let Some(encoder) = &target.clips.encoder {
            self.target_clip_encoder = Some(crate::capture::clip::ClipEncoder::new(encoder)?);
        }
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
    /// How live sources are watched and reopened: stall, frozen and silence timeouts,
    /// reconnect backoff (default [`Policy::default`]: stalled after 2 s without data,
    /// first retry after 0.5 s, then doubling up to every 30 s, never giving up).
    /// Checked by [`build`](Self::build).
    pub fn supervision(mut self, policy: Policy) -> Self {
        self.supervision = policy;
        self
    }

    /// Fault injection for tests: the named worker thread (`"window"` or
    /// `"inference"`) panics on its first window.
    #[doc(hidden)]
    pub fn inject_panic(mut self, worker: &str) -> Self {
        self.panic_in = Some(worker.to_string());
        self
    }

    /// Also delivers outputs to `sink` (repeatable): a file, an MQTT broker, a webhook
    /// ([`crate::deliver::open`]) or a [`Sink`](crate::deliver::Sink) of your own. Sinks
    /// run on their own thread; network sinks spool events on disk through outages.
    pub fn sink(mut self, sink: Box<dyn crate::deliver::Sink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Writes an evidence clip around each event onset (all labels, or
    /// [`ClipOptions::labels`](crate::deliver::clips::ClipOptions::labels)): the video
    /// and audio from the pre-roll to the post-roll as one playable file with a JSON
    /// sidecar; see [`crate::deliver::clips`]. The capture then also encodes its frames
    /// (full size up to a height) into a bounded ring in memory.
    pub fn clips(mut self, options: crate::deliver::clips::ClipOptions) -> Self {
        self.clips = Some(options);
        self
    }

    /// Shows what the model sees and hears in `view`: the capture's picture (small JPEG
    /// images, made only while the view [wants](crate::capture::preview::PreviewTap::want)
    /// them), the audio level, each window's log-mel and newest flow field; see
    /// [`crate::window::view`]. The web page of `avaction run --ui` reads it.
    pub fn live_view(mut self, view: Arc<crate::window::view::LiveView>) -> Self {
        self.view = Some(view);
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
    pub fn build(mut self) -> Result<Runtime> {
        self.check()?;
        self.limits.validate()?;
        if let Some(clips) = &self.clips {
            // Before the model loads and the sources open: a bad folder fails at once.
            clips.prepare()?;
        }
        let model_dir = self
            .model
            .clone()
            .ok_or_else(|| err!(Config, "no model given: call .model(\"models/<name>\")"))?;
        let model_dir = crate::model::locate(&model_dir)?;
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
        if self.video == VideoSource::None {
            return Err(err!(
                Config,
                "a video source is required (the window is driven by frames)"
            ));
        }

        self.supervision.validate()?;
        let rate = logmel.as_ref().map_or(16_000, |l| l.fbank.sample_rate);
        let from_video = wants_audio && self.audio == AudioSource::FromVideo;
        let mut vcfg = plan::video_config(m);
        vcfg.realtime = self.realtime;
        vcfg.display_sink = self.display.clone();
        vcfg.preview = self.view.as_ref().map(|v| v.preview().clone());
        vcfg.camera = self.camera.clone();
        vcfg.limits = self.limits;
        if !from_video {
            vcfg.audio_rate = None;
        }
        let clip_tap = match &mut self.clips {
            Some(options) => {
                if options.encoder.is_none() {
                    options.encoder = self.target_clip_encoder.clone();
                }
                let tap = Arc::new(ClipTap::new(options.ring_span(), options.memory_bytes));
                vcfg.clip = Some(ClipBranch {
                    tap: tap.clone(),
                    encoder: options.video_encoder(),
                    max_height: options.max_height,
                });
                Some(tap)
            }
            None => None,
        };
        let board = Arc::new(HealthBoard::new());
        let mut supervised = Vec::new();
        let video_watch = Arc::new(SourceWatch::new(timeline, self.video.is_live()));
        let video = VideoCapture::start_watched(
            &self.video,
            &vcfg,
            timeline,
            cap_tx.clone(),
            capture_stats.clone(),
            video_watch.clone(),
        )?;
        let overlay = video.overlay();
        let video_has_audio = video.has_audio();
        let live = video.is_live() || self.realtime;
        supervised.push(Supervised {
            name: video.source_name().to_string(),
            kind: SourceKind::Video,
            live: video.is_live(),
            opener: {
                let (source, tx, stats) =
                    (self.video.clone(), cap_tx.clone(), capture_stats.clone());
                let overlay = overlay.clone();
                Box::new(move |watch: Arc<SourceWatch>| {
                    let video = VideoCapture::start_watched(
                        &source,
                        &vcfg,
                        timeline,
                        tx.clone(),
                        stats.clone(),
                        watch,
                    )?;
                    // The display keeps drawing the labels through the new pipeline.
                    if let (Some(shown), Some(new)) = (&overlay, video.overlay()) {
                        shown.follow(&new);
                    }
                    Ok(Box::new(video) as Box<dyn Source>)
                })
            },
            running: Some((Box::new(video), video_watch)),
        });

        let mut expect_audio = wants_audio;
        let mut degraded = None;
        if wants_audio {
            let missing = match &self.audio {
                AudioSource::FromVideo if !video_has_audio => Some(err!(
                    Audio,
                    "the video source {:?} has no audio track",
                    self.video
                )),
                AudioSource::FromVideo => None,
                AudioSource::None => Some(err!(Audio, "no audio source was given")),
                source => {
                    let watch = Arc::new(SourceWatch::new(timeline, true));
                    let opener = {
                        let (source, tx, stats) =
                            (source.clone(), cap_tx.clone(), capture_stats.clone());
                        move |watch: Arc<SourceWatch>| {
                            Microphone::start_watched(
                                &source,
                                rate,
                                timeline,
                                tx.clone(),
                                stats.clone(),
                                watch,
                            )
                        }
                    };
                    match opener(watch.clone()) {
                        Ok(mic) => {
                            log::info!("microphone: {}", mic.device_name());
                            supervised.push(Supervised {
                                name: format!("microphone {:?}", mic.device_name()),
                                kind: SourceKind::Audio,
                                live: true,
                                opener: Box::new(move |w| {
                                    opener(w).map(|m| Box::new(m) as Box<dyn Source>)
                                }),
                                running: Some((Box::new(mic), watch)),
                            });
                            None
                        }
                        Err(e) if m.window.audio_optional => {
                            // Keep trying: the model labels video-only meanwhile.
                            supervised.push(Supervised {
                                name: format!("microphone {source:?}"),
                                kind: SourceKind::Audio,
                                live: true,
                                opener: Box::new(move |w| {
                                    opener(w).map(|m| Box::new(m) as Box<dyn Source>)
                                }),
                                running: None,
                            });
                            log::warn!(
                                "{e}; labelling video-only until it opens (model {} allows it)",
                                m.name
                            );
                            None
                        }
                        Err(e) => Some(e),
                    }
                }
            };
            if let Some(e) = missing {
                if m.window.audio_optional {
                    log::warn!("{e}; continuing video-only (model {} allows it)", m.name);
                    degraded = Some(format!("video-only: {}", e.message()));
                    board.set_own(Reason::AudioMissing, true);
                    expect_audio = false;
                } else {
                    return Err(e.context(format!("model {} needs audio", m.name)));
                }
            }
        }
        let supervisor = Supervisor::start(
            supervised,
            self.supervision,
            board.clone(),
            cap_tx.clone(),
            timeline,
        )?;
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
        if let Some(view) = &self.view {
            view.configure(&wcfg);
        }
        let mut stream = WindowStream::new(WindowScheduler::new(wcfg)?, cap_rx);
        if let Some(view) = &self.view {
            stream = stream.with_view(view.clone());
        }
        if let (Some(options), Some(tap)) = (&self.clips, &clip_tap) {
            stream = stream.with_clip_tap(tap.clone());
            let mut graphs = vec![bundle.graph.clone()];
            graphs.extend(bundle.runtime_graphs().into_iter().map(|g| g.path));
            graphs.dedup();
            let model = ClipModel::hash(&m.name, &m.version, &bundle.dir, &graphs)?;
            let sink =
                ClipSink::start(options, tap.clone(), model, timeline, (live, m.window.fps))?;
            self.sinks.push(Box::new(sink));
        }
        let shared = Arc::new(Shared::new(
            capture_stats,
            backend_status,
            degraded,
            board.clone(),
        ));
        let panic_in = self.panic_in.clone();
        let mailbox = Arc::new(Mailbox::<Window>::new());
        // Live, a staged model encodes a window's frames while its audio comes (a frame
        // period and a bit), not after: the window's latency loses that encoding time.
        let video_ready = Arc::new(Mailbox::<Window>::new());
        let encode_early = live && matches!(backend, ModelRunner::Staged(_));
        if encode_early {
            stream = stream.with_video_ready();
        }
        let (out_tx, out_rx) = mpsc::sync_channel(self.capacity);
        let deliverer = (!self.sinks.is_empty()).then(|| {
            let run = crate::deliver::RunInfo {
                model: m.name.clone(),
                labels: labels.clone(),
                threshold: m.decoder.enter,
                timeline,
            };
            crate::deliver::Deliverer::start(std::mem::take(&mut self.sinks), run)
        });

        let scheduling = {
            let (shared, mailbox, ready) = (shared.clone(), mailbox.clone(), video_ready.clone());
            std::thread::Builder::new()
                .name("avaction-windows".into())
                .spawn(move || {
                    guarded("window", &shared, &mailbox, || {
                        let inject = panic_in.as_deref() == Some("window");
                        let boxes = (&*mailbox, &*ready);
                        schedule_loop(stream, boxes, &shared, timeline, (live, inject))
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
                out: Outlet {
                    tx: out_tx,
                    callback: self.callback,
                    live,
                    broken: false,
                    backlog: std::collections::VecDeque::new(),
                    deliver: deliverer.as_ref().and_then(|d| d.queue()),
                },
                timeline,
                live,
                encode_early,
                overlay: overlay.clone(),
                wants_audio,
                audio_optional: m.window.audio_optional,
                inject_panic: self.panic_in.as_deref() == Some("inference"),
            };
            std::thread::Builder::new()
                .name("avaction-inference".into())
                .spawn(move || {
                    guarded("inference", &shared, &mailbox, || {
                        inference_loop(ctx, (&mailbox, &video_ready), &shared)
                    })
                })
                .map_err(|e| err!(Stopped, "cannot start the inference thread").caused_by(e))?
        };
        Ok(Runtime {
            outputs: out_rx,
            shared,
            supervisor: Some(supervisor),
            threads: vec![scheduling, inference],
            bundle,
            labels,
            overlay,
            deliverer,
        })
    }
}

/// A running pipeline. Read outputs with [`outputs`](Runtime::outputs); it stops on
/// drop, on [`stop`](Runtime::stop), or by itself at the end of a file.
pub struct Runtime {
    outputs: Receiver<Output>,
    shared: Arc<Shared>,
    supervisor: Option<Supervisor>,
    threads: Vec<JoinHandle<()>>,
    bundle: Bundle,
    labels: Vec<String>,
    overlay: Option<LabelOverlay>,
    deliverer: Option<crate::deliver::Deliverer>,
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
        self.observer().stats()
    }

    /// A handle that reads [`Stats`] and [`Health`] from any thread while the runtime
    /// runs (for a metrics endpoint, a dashboard, a watchdog of your own).
    pub fn observer(&self) -> Observer {
        Observer {
            shared: self.shared.clone(),
            sinks: self.deliverer.as_ref().map(|d| d.watch()),
        }
    }

    /// The text the display currently draws on the frames (`None` without a display).
    pub fn overlay_text(&self) -> Option<String> {
        self.overlay.as_ref().map(LabelOverlay::text)
    }

    /// The health of the sources and of the runtime now (also delivered as
    /// [`Output::Health`] whenever it changes).
    pub fn health(&self) -> Health {
        self.shared.board.health()
    }

    /// How a file run ended (complete or cut short); `None` for live sources or while
    /// the file is still being processed. Also delivered as [`Output::End`].
    pub fn end(&self) -> Option<End> {
        self.shared
            .end
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The error that ended the run, if one did.
    pub fn error(&self) -> Option<Error> {
        self.shared.error()
    }

    /// Stops capture and joins the worker threads, within about two seconds whatever
    /// the sources are doing (a source that does not stop in time is left to finish in
    /// the background, with a log line). Idempotent.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(mut s) = self.supervisor.take() {
            s.stop(STOP_WAIT);
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                self.shared.fail(err!(Stopped, "a worker thread panicked"));
            }
        }
        self.shared.board.end();
        if let Some(d) = self.deliverer.as_mut() {
            d.close(SINK_WAIT);
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
            None => Ok(self.stats()),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads a [`Runtime`]'s stats and health from any thread; see [`Runtime::observer`].
#[derive(Clone)]
pub struct Observer {
    shared: Arc<Shared>,
    sinks: Option<crate::deliver::DeliveryWatch>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer").finish_non_exhaustive()
    }
}

impl Observer {
    /// The run's statistics now.
    pub fn stats(&self) -> Stats {
        let mut stats = self.shared.snapshot();
        if let Some(w) = &self.sinks {
            stats.sinks = w.stats();
            stats.sink_predictions_dropped = w.dropped();
        }
        stats
    }

    /// The health now.
    pub fn health(&self) -> Health {
        self.shared.board.health()
    }
}

/// How long [`Runtime::stop`] gives network sinks to send what they spooled (the rest
/// is sent at the next start).
const SINK_WAIT: Duration = Duration::from_secs(2);

/// How long [`Runtime::stop`] waits for the sources.
const STOP_WAIT: Duration = Duration::from_millis(1500);

/// The window thread: windows from `stream` into `mailbox` (the newest replaces a
/// waiting one when live, else it waits for the slot), windows whose video is ready
/// early into `video_ready` (always the newest).
fn schedule_loop(
    mut stream: WindowStream,
    (mailbox, video_ready): (&Mailbox<Window>, &Mailbox<Window>),
    shared: &Shared,
    timeline: Timeline,
    (live, inject_panic): (bool, bool),
) {
    let now = || live.then(|| timeline.now());
    while !shared.stop.load(Ordering::Relaxed) {
        let step = stream.next(Duration::from_millis(10), &now);
        if inject_panic && matches!(step, Ok(WindowStreamStep::Window(_))) {
            panic!("injected fault in the window thread");
        }
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
            Ok(WindowStreamStep::VideoReady(w)) => {
                video_ready.put_latest(w);
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
    if let Some(end) = stream.end_record() {
        *shared.end.lock().unwrap_or_else(|p| p.into_inner()) = Some(end.clone());
    }
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

/// Events and health changes a live run holds back while its reader is behind, before
/// the inference thread waits for the reader.
const BACKLOG: usize = 1024;

struct Outlet {
    tx: SyncSender<Output>,
    callback: Option<Callback>,
    live: bool,
    /// Set once the callback panicked: it is never called again.
    broken: bool,
    /// The sinks' queue, when there are sinks.
    deliver: Option<crate::deliver::DeliveryQueue>,
    /// Events, health changes and end records that found the channel full (live runs):
    /// sent, in order, before anything else.
    backlog: std::collections::VecDeque<Output>,
}

impl Outlet {
    /// Delivers an output; false when nobody can receive any more.
    ///
    /// Under a slow reader of a live run, predictions are dropped (counted in
    /// `outputs_dropped`); events, health changes and the end record never are: they
    /// queue in a backlog (in order, ahead of later outputs) so that inference goes on,
    /// and only when [`BACKLOG`] of them wait does the inference thread wait for the
    /// reader. A file run (not live) waits for room for every output: nothing is dropped.
    fn emit(&mut self, output: Output, shared: &Shared) -> bool {
        if self.broken {
            return false;
        }
        if matches!(output, Output::Event(_)) {
            shared.events.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(queue) = &self.deliver {
            queue.push(&output);
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
        if !self.flush() {
            return false;
        }
        let droppable = matches!(output, Output::Prediction(_));
        if !self.live {
            return self.send_waiting(output, shared);
        }
        if !self.backlog.is_empty() {
            // Keep the order: nothing overtakes the backlog.
            if droppable {
                shared.outputs_dropped.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            if self.backlog.len() >= BACKLOG {
                let Some(oldest) = self.backlog.pop_front() else {
                    return true;
                };
                if !self.send_waiting(oldest, shared) {
                    return false;
                }
            }
            self.backlog.push_back(output);
            return true;
        }
        match self.tx.try_send(output) {
            Ok(()) => true,
            Err(TrySendError::Disconnected(_)) => false,
            Err(TrySendError::Full(_)) if droppable => {
                shared.outputs_dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(o)) => {
                self.backlog.push_back(o);
                true
            }
        }
    }

    /// Sends what the backlog holds while there is room; false when nobody can receive
    /// any more.
    fn flush(&mut self) -> bool {
        while let Some(o) = self.backlog.pop_front() {
            match self.tx.try_send(o) {
                Ok(()) => {}
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(o)) => {
                    self.backlog.push_front(o);
                    return true;
                }
            }
        }
        true
    }

    /// Waits for room (until the run stops: what is left then is counted as dropped).
    fn send_waiting(&mut self, output: Output, shared: &Shared) -> bool {
        let mut output = output;
        loop {
            match self.tx.try_send(output) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(o)) => {
                    if shared.stop.load(Ordering::Relaxed) {
                        shared.outputs_dropped.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                    output = o;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    /// At the end of the run: everything held back, waiting for the reader (until the
    /// run is stopped).
    fn drain(&mut self, shared: &Shared) {
        while let Some(o) = self.backlog.pop_front() {
            if !self.send_waiting(o, shared) {
                return;
            }
        }
    }
}

struct InferenceContext {
    assembler: InputAssembler,
    decoder: Decoder,
    backend: ModelRunner,
    out: Outlet,
    timeline: Timeline,
    live: bool,
    /// Windows whose video is ready early come through the second mailbox (live, staged).
    encode_early: bool,
    overlay: Option<LabelOverlay>,
    /// The model takes audio.
    wants_audio: bool,
    /// The model labels without audio (modality dropout): see `Window::audio_absent`.
    audio_optional: bool,
    inject_panic: bool,
}

/// Logs invalid windows at most once per this interval (with the count since the last log).
const INVALID_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// How often the inference thread looks for a window whose video is ready early while
/// it waits for complete windows.
const VIDEO_READY_POLL: Duration = Duration::from_millis(2);

fn inference_loop(
    mut ctx: InferenceContext,
    (mailbox, video_ready): (&Mailbox<Window>, &Mailbox<Window>),
    shared: &Shared,
) {
    let mut events: Vec<Event> = Vec::with_capacity(16);
    let mut last_end = None;
    let mut invalid_unlogged = 0u64;
    let mut invalid_logged_at: Option<Instant> = None;
    let mut health_version = None;
    let mut paused = false;
    loop {
        if !ctx.out.flush() || !emit_health(&mut ctx.out, shared, &mut health_version) {
            break;
        }
        // A complete window first; else, while none waits, the newest frames early.
        if ctx.encode_early && !mailbox.is_full() {
            if let Ok(Some(w)) = video_ready.take(Duration::ZERO) {
                let t0 = Instant::now();
                if let Err(e) = ctx.backend.prefetch_video(&w, &ctx.assembler) {
                    shared.fail(e);
                    break;
                }
                shared.add_inference(t0.elapsed());
            }
        }
        let wait = if ctx.encode_early {
            VIDEO_READY_POLL
        } else {
            Duration::from_millis(50)
        };
        let window = match mailbox.take(wait) {
            Err(()) => break,
            Ok(None) if shared.stop.load(Ordering::Relaxed) => break,
            Ok(None) => continue,
            Ok(Some(w)) => w,
        };
        if ctx.inject_panic {
            panic!("injected fault in the inference thread");
        }
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
        // Degrade, don't lie: without its audio, a model that needs it pauses (its
        // active labels end where the audio went); an audio-optional one goes on with
        // the audio marked absent.
        let absent = ctx.wants_audio && window.audio_absent();
        if absent && !ctx.audio_optional {
            shared.windows_paused.fetch_add(1, Ordering::Relaxed);
            if !paused {
                paused = true;
                log::warn!("audio missing: labels paused until it returns");
                shared.board.set_own(Reason::LabelsPaused, true);
                events.clear();
                ctx.decoder.finish(window.t_start, &mut events);
                for e in events.drain(..) {
                    ctx.out.emit(Output::Event(e), shared);
                }
            }
            continue;
        }
        if paused {
            paused = false;
            log::info!("audio is back: labels resume");
            shared.board.set_own(Reason::LabelsPaused, false);
        }
        if ctx.wants_audio && ctx.audio_optional {
            shared.board.set_own(Reason::AudioMissing, absent);
            if absent {
                shared.windows_video_only.fetch_add(1, Ordering::Relaxed);
            }
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
        shared.set_stages(&ctx.backend.stage_ns());
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
    let end = shared.end.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(end) = end {
        shared.board.end();
        emit_health(&mut ctx.out, shared, &mut health_version);
        ctx.out.emit(Output::End(end), shared);
    } else {
        // The last word on a run that failed (a source given up) or was stopped.
        emit_health(&mut ctx.out, shared, &mut health_version);
    }
    ctx.out.drain(shared);
}

/// Emits the health when it changed since `seen` (the board's version); false when
/// nobody can receive any more.
fn emit_health(out: &mut Outlet, shared: &Shared, seen: &mut Option<u64>) -> bool {
    let version = shared.board.version();
    if *seen == Some(version) {
        return true;
    }
    *seen = Some(version);
    out.emit(Output::Health(shared.board.health()), shared)
}
