//! Where video (and a file's audio track) enters: a GStreamer pipeline per source that
//! scales frames to the model's size in RGB and stamps them on the runtime [`Timeline`].
//! This module holds the configuration and the [`VideoCapture`] handle that wires the
//! parts: source plans (`plan`), cameras (`devices`), elements (`pipeline`),
//! decoder pads and start-up (`pads`), pulling and stamping (`pull`) and the
//! display's label (`overlay`).

mod devices;
mod limits;
mod overlay;
mod pads;
mod pipeline;
mod plan;
mod pull;

pub use devices::{camera_description, list_cameras, CameraCaps};
pub use limits::MediaLimits;
pub use overlay::LabelOverlay;

pub(crate) use devices::camera_source;

use super::clip::ClipBranch;
use super::preview::PreviewTap;
use super::{CaptureEvent, CaptureStats, Downmix, SourceWatch, VideoSource};
use crate::clock::{Nanos, Timeline};
use crate::{err, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use pads::{connect_decoder_pads, wait_until_playing, PadState};
use pipeline::{add_and_link_source, build_video_branch};
pub(crate) use pipeline::{make_element, set_enum_property};
use plan::{validate_config, SourcePlan};
use pull::{
    audio_loop, bus_loop, clip_loop, measure_clock_offset, preview_loop, spawn_named, video_loop,
    Flags, PullContext, Stamping,
};
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What the video capture delivers and how.
#[derive(Debug, Clone)]
pub struct VideoConfig {
    /// Frame width in pixels (the model's input width).
    pub width: u32,
    /// Frame height in pixels (the model's input height).
    pub height: u32,
    /// Frame rate delivered, in frames per second (`videorate` duplicates or drops to it).
    pub fps: u32,
    /// Files only: `false` decodes as fast as possible and delivers every frame; `true`
    /// plays at real time (appsink sync) and delivers like a live source.
    pub realtime: bool,
    /// `Some(rate)`: also deliver the file/URI's audio track as mono f32 at `rate` Hz
    /// ([`AudioSource::FromVideo`](super::AudioSource::FromVideo)). Ignored for cameras
    /// and test patterns.
    pub audio_rate: Option<u32>,
    /// How a multi-channel audio track becomes mono (the model's `[audio] downmix`).
    pub downmix: Downmix,
    /// Appsink queue length for live sources (small, e.g. 2); older frames are dropped.
    pub live_max_buffers: u32,
    /// A GStreamer video sink (e.g. `autovideosink`) that shows the frames with the
    /// current label drawn on them; `None`: no display.
    pub display_sink: Option<String>,
    /// Live cameras: what to ask the camera for (from a target profile); `None`: the
    /// camera's own choice through `v4l2src`.
    pub camera: Option<CameraCaps>,
    /// Largest resolution and frame rate a source may deliver, and the libav decoder
    /// threads ([`MediaLimits::default`]: 7680x4320, 240 fps, 2 threads). A source beyond
    /// them is refused with a [`Video`](crate::ErrorKind::Video) error naming its size and
    /// the limit, before frames of that size are scaled or converted.
    pub limits: MediaLimits,
    /// Evidence clips: also encode the frames (full size, up to a height) into a ring in
    /// memory ([`ClipBranch`]); `None`: no clip branch.
    pub clip: Option<ClipBranch>,
    /// The live view: also make small JPEG images of the frames while someone watches
    /// ([`PreviewTap`]); `None`: no live view branch.
    pub preview: Option<Arc<PreviewTap>>,
}

impl VideoConfig {
    /// Frames of `width` x `height` at `fps`, with everything else at its default: a
    /// file decoded as fast as possible, no audio track, 2 live buffers, no display, the
    /// camera's own caps, [`MediaLimits::default`]. Set the other fields as needed.
    pub fn new(width: u32, height: u32, fps: u32) -> VideoConfig {
        VideoConfig {
            width,
            height,
            fps,
            realtime: false,
            audio_rate: None,
            downmix: Downmix::default(),
            live_max_buffers: 2,
            display_sink: None,
            camera: None,
            limits: MediaLimits::default(),
            clip: None,
            preview: None,
        }
    }
}

/// A running GStreamer capture: frames (and optionally the file's audio) flow to the
/// channel given to [`VideoCapture::start`] until [`VideoCapture::stop`] or drop.
///
/// Pipeline (decoded or captured video, then):
/// `videorate ! videoconvert ! videoscale ! videoconvert ! capsfilter(RGB, WxH, PAR 1/1, fps) ! appsink`.
/// Frame rate is fixed first and scaling happens in the source's own pixel format, so the
/// RGB conversion touches model-size images only (measured ~1.6x less CPU than converting
/// full-size frames first); the first `videoconvert` is a pass-through unless `videoscale`
/// cannot handle the source format. The picture is stretched to the model size (no
/// borders); cropping policy belongs to the frontend.
///
/// For files and URIs with [`VideoConfig::audio_rate`] set, the audio track goes through
/// `audioconvert ! audioresample ! capsfilter(F32LE, mono, rate) ! appsink`.
///
/// Threads: one bus thread (errors, warnings) and one puller thread per appsink, each
/// waiting at most 100 ms at a time so that [`VideoCapture::stop`] never hangs.
///
/// Timestamps: for files decoded as fast as possible, `t_ns` is the buffer's running time
/// (media time, first frame ≈ 0, audio and video on the same scale). For live sources and
/// real-time playback, `t_ns` is the pipeline clock time of the buffer
/// (`base_time + running_time`) mapped onto the [`Timeline`] through an offset measured at
/// start between the pipeline clock and [`Timeline::now`].
///
/// Drops: a file decoded as fast as possible is delivered completely (the puller waits
/// for room in the channel, checking for stop every millisecond). Live sources and
/// real-time playback keep the newest frames: appsink holds at most [`VideoConfig::live_max_buffers`] and drops older ones
/// silently; because `videorate` makes the stream exactly `fps` frames per second, every
/// gap of `k` frame periods between two pulled frames counts `k - 1` dropped frames.
/// Frames that find the runtime's channel full are dropped and counted too.
pub struct VideoCapture {
    pipeline: gst::Pipeline,
    flags: Arc<Flags>,
    threads: Vec<JoinHandle<()>>,
    has_audio: bool,
    source_name: String,
    live: bool,
}

impl std::fmt::Debug for VideoCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoCapture")
            .field("source", &self.source_name)
            .field("has_audio", &self.has_audio)
            .finish()
    }
}

impl VideoCapture {
    /// Builds and starts the pipeline; returns once it is playing (live sources) or
    /// prerolled and playing (files), or a clear [`Error`](crate::Error) within a bounded
    /// time (missing file, unreadable or corrupt media, no video stream, missing plugin,
    /// no camera).
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for invalid settings or URIs;
    /// [`Io`](crate::ErrorKind::Io) for a file that is missing or unreadable;
    /// [`Unavailable`](crate::ErrorKind::Unavailable) for a missing GStreamer plugin (the
    /// message names the Debian package); [`Video`](crate::ErrorKind::Video) for media with
    /// no video stream, corrupt media, no camera, or a pipeline that does not start within
    /// 10 s; [`Audio`](crate::ErrorKind::Audio) when the audio branch cannot be built. The
    /// GStreamer error is the source where there is one.
    pub fn start(
        source: &VideoSource,
        cfg: &VideoConfig,
        timeline: Timeline,
        tx: SyncSender<CaptureEvent>,
        stats: Arc<CaptureStats>,
    ) -> Result<VideoCapture> {
        let watch = Arc::new(SourceWatch::new(timeline, false));
        VideoCapture::start_watched(source, cfg, timeline, tx, stats, watch)
    }

    /// [`start`](Self::start), reporting liveness to `watch`: a supervised watch
    /// receives the failures of the running source (a bus error, a live stream's end)
    /// instead of the channel, so that its supervisor can reopen it.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_watched(
        source: &VideoSource,
        cfg: &VideoConfig,
        timeline: Timeline,
        tx: SyncSender<CaptureEvent>,
        stats: Arc<CaptureStats>,
        watch: Arc<SourceWatch>,
    ) -> Result<VideoCapture> {
        validate_config(cfg)?;
        gst::init().map_err(|e| err!(Video, "GStreamer could not be initialised").caused_by(e))?;
        let plan = SourcePlan::resolve(source)?;

        let live = plan.is_live();
        let live_delivery = live || cfg.realtime;
        let pipeline = gst::Pipeline::new();
        let sinks = build_video_branch(&pipeline, cfg, live, live_delivery)?;
        let (video_sink, clip_sink, preview_sink) = (sinks.model, sinks.clip, sinks.preview);
        let video_entry = pipeline
            .by_name("avaction-video-in")
            .ok_or_else(|| err!(Video, "internal: video branch entry missing"))?;
        limits::guard_entry(&video_entry, cfg.limits)?;
        let pads = Arc::new(Mutex::new(PadState::default()));

        match &plan {
            SourcePlan::Uri { uri, .. } => {
                let decoder = make_element("uridecodebin")?;
                decoder.set_property("uri", uri);
                limits::bound_decoder_threads(&decoder, cfg.limits.decoder_threads);
                limits::skip_broken_parsers(&decoder);
                pipeline
                    .add(&decoder)
                    .map_err(|e| err!(Video, "cannot add uridecodebin").caused_by(e))?;
                connect_decoder_pads(
                    &decoder,
                    &pipeline,
                    &video_entry,
                    cfg,
                    !live && cfg.realtime,
                    &pads,
                );
            }
            SourcePlan::Camera { device } => {
                let src = camera_source(cfg.camera.as_ref(), device.as_deref())?;
                add_and_link_source(&pipeline, &src, &video_entry)?;
            }
            SourcePlan::TestPattern { pattern } => {
                let src = make_element("videotestsrc")?;
                src.set_property("is-live", true);
                set_enum_property(&src, "pattern", pattern)?;
                add_and_link_source(&pipeline, &src, &video_entry)?;
            }
            SourcePlan::Launch { description, .. } => {
                let bin = plan::bin_from_description(description)?;
                add_and_link_source(&pipeline, bin.upcast_ref(), &video_entry)?;
            }
        }

        let source_name = plan.describe();
        let mut capture = VideoCapture {
            pipeline: pipeline.clone(),
            flags: Arc::new(Flags::default()),
            threads: Vec::new(),
            has_audio: false,
            source_name: source_name.clone(),
            live,
        };
        // From here on, dropping `capture` on an error path sets the pipeline to NULL.
        wait_until_playing(&pipeline, &plan, &pads, &source_name)?;

        let audio_sink = match pads.lock() {
            Ok(state) => state.audio_sink.clone(),
            Err(_) => return Err(err!(Video, "internal: pad state poisoned ({source_name})")),
        };
        if cfg.audio_rate.is_some() && matches!(plan, SourcePlan::Uri { .. }) {
            if audio_sink.is_some() {
                log::info!("{source_name}: delivering its audio track");
            } else {
                log::warn!(
                    "{source_name}: audio was requested but the media has no decodable audio track"
                );
            }
        }
        capture.has_audio = audio_sink.is_some();

        let stamping = if live_delivery {
            let clock = pipeline
                .clock()
                .ok_or_else(|| err!(Video, "{source_name}: the pipeline has no clock"))?;
            let base_time = pipeline
                .base_time()
                .map(|t| pull::gst_nanos(t.nseconds()))
                .ok_or_else(|| err!(Video, "{source_name}: the pipeline has no base time"))?;
            Stamping::Clock {
                base_time,
                offset: measure_clock_offset(&clock, &timeline),
            }
        } else {
            Stamping::RunningTime
        };
        let duration = if live {
            None
        } else {
            // Asked of each branch: a decoder chain may answer with a wrapped-around
            // value (about 2^63 ns, seen for MPEG-4 video in Matroska), which a year
            // or more marks as unknown; the longest plausible answer wins.
            let sinks = [Some(video_sink.clone()), audio_sink.clone()];
            sinks
                .iter()
                .flatten()
                .filter_map(|s| s.query_duration::<gst::ClockTime>())
                .inspect(|d| log::debug!("declared duration {d}"))
                .map(|d| pull::gst_nanos(d.nseconds()))
                .filter(|d| *d < Nanos::SECOND * (365 * 24 * 3600))
                .max()
        };

        let ctx = PullContext {
            tx: tx.clone(),
            stats,
            flags: capture.flags.clone(),
            stamping,
            live_delivery,
            source_name: source_name.clone(),
            duration,
            watch,
            live,
        };
        let branches = 1 + usize::from(audio_sink.is_some());
        capture
            .flags
            .branches_left
            .store(branches, Ordering::SeqCst);

        capture.threads.push(spawn_named("avaction-bus", {
            let bus = pipeline
                .bus()
                .ok_or_else(|| err!(Video, "{source_name}: the pipeline has no bus"))?;
            let ctx = ctx.clone();
            move || bus_loop(bus, ctx)
        })?);
        capture.threads.push(spawn_named("avaction-video", {
            let ctx = ctx.clone();
            let fps = cfg.fps;
            let size = (cfg.width, cfg.height);
            move || video_loop(video_sink, ctx, fps, size)
        })?);
        if let (Some(sink), Some(clip)) = (clip_sink, &cfg.clip) {
            capture.threads.push(spawn_named("avaction-clip", {
                let ctx = ctx.clone();
                let tap = clip.tap.clone();
                move || clip_loop(sink, ctx, tap)
            })?);
        }
        if let (Some(sink), Some(tap)) = (preview_sink, &cfg.preview) {
            capture.threads.push(spawn_named("avaction-preview", {
                let ctx = ctx.clone();
                let tap = tap.clone();
                move || preview_loop(sink, ctx, tap)
            })?);
        }
        if let (Some(sink), Some(rate)) = (audio_sink, cfg.audio_rate) {
            capture.threads.push(spawn_named("avaction-file-audio", {
                let ctx = ctx.clone();
                let downmix = cfg.downmix;
                move || audio_loop(sink, ctx, rate, downmix)
            })?);
        }
        log::info!(
            "video capture started: {source_name} -> {}x{} RGB at {} fps{}",
            cfg.width,
            cfg.height,
            cfg.fps,
            if live_delivery { " (live)" } else { "" }
        );
        Ok(capture)
    }

    /// Stops the pipeline and joins every thread; idempotent (also run on drop).
    pub fn stop(&mut self) {
        self.flags.stop.store(true, Ordering::SeqCst);
        self.flags.halted.store(true, Ordering::SeqCst);
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            log::warn!(
                "{}: setting the pipeline to NULL failed: {e}",
                self.source_name
            );
        }
        for handle in self.threads.drain(..) {
            if handle.join().is_err() {
                log::error!("{}: a capture thread panicked", self.source_name);
            }
        }
    }

    /// The label drawn on the displayed frames, if [`VideoConfig::display_sink`] was
    /// given.
    pub fn overlay(&self) -> Option<LabelOverlay> {
        LabelOverlay::find(&self.pipeline)
    }

    /// Whether an audio track is being delivered (only for files/URIs with
    /// [`VideoConfig::audio_rate`] set and an audio stream present).
    pub fn has_audio(&self) -> bool {
        self.has_audio
    }

    /// Whether the source runs on its own clock (camera, RTSP, test pattern, a live
    /// pipeline description), rather than being read at our pace (a file).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// A short description of the source, for logs (`file /path/x.mp4`, `camera /dev/video0`).
    pub fn source_name(&self) -> &str {
        &self.source_name
    }
}

impl Drop for VideoCapture {
    fn drop(&mut self) {
        self.stop();
    }
}
