//! Where video (and a file's audio track) enters: a GStreamer pipeline per source that
//! scales frames to the model's size in RGB and stamps them on the runtime [`Timeline`].

use super::{CaptureEvent, CaptureStats, VideoSource};
use crate::clock::{AudioChunk, Nanos, Timeline, VideoFrame, NANOS_PER_SEC};
use crate::{err, Error, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a file's demuxer may sit stopped with no stream before start gives up.
const STALL_GRACE: Duration = Duration::from_millis(500);
/// How long [`VideoCapture::start`] waits for the pipeline to play or preroll.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest single wait of a puller or bus thread, so that stop requests are seen quickly.
const POLL_INTERVAL_MS: u64 = 100;
/// Appsink queue length for files (back-pressure, no drops).
const FILE_MAX_BUFFERS: u32 = 4;

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
    /// Appsink queue length for live sources (small, e.g. 2); older frames are dropped.
    pub live_max_buffers: u32,
    /// A GStreamer video sink (e.g. `autovideosink`) that shows the frames with the
    /// current label drawn on them; `None`: no display.
    pub display_sink: Option<String>,
    /// Live cameras: what to ask the camera for (from a target profile); `None`: the
    /// camera's own choice through `v4l2src`.
    pub camera: Option<CameraCaps>,
}

/// How a target profile captures from its cameras (`[capture]` in `targets/*.toml`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraCaps {
    /// Element for CSI sensors (V4L2 name starting `vi-output`, as on Jetson), which
    /// V4L2 alone cannot debayer: `nvarguscamerasrc`. `None`: `v4l2src` for every camera.
    #[serde(default)]
    pub csi_element: Option<String>,
    /// Requested width, height and frame rate from CSI sensors (0: the element's default).
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// See `width`.
    pub fps: u32,
}

/// The GStreamer description of the camera source for `device` (`/dev/videoN`),
/// given its V4L2 name (`/sys/class/video4linux/videoN/name`). CSI sensors on a
/// profile with a CSI element get that element with NVMM caps and `nvvidconv` (to
/// system memory); every other camera gets `v4l2src`.
pub fn camera_description(caps: Option<&CameraCaps>, device: &str, v4l2_name: &str) -> String {
    let csi = caps.and_then(|c| c.csi_element.as_deref().map(|e| (c, e)));
    match csi {
        Some((c, element)) if v4l2_name.starts_with("vi-output") => {
            let index: String = device.chars().filter(|ch| ch.is_ascii_digit()).collect();
            let index = if index.is_empty() { "0".into() } else { index };
            let mut fields = String::new();
            if c.width > 0 && c.height > 0 {
                fields += &format!(",width={},height={}", c.width, c.height);
            }
            if c.fps > 0 {
                fields += &format!(",framerate={}/1", c.fps);
            }
            format!("{element} sensor-id={index} ! video/x-raw(memory:NVMM){fields} ! nvvidconv")
        }
        _ => format!(
            "{} device=\"{}\"",
            camera_element(),
            device.replace('"', "")
        ),
    }
}

fn v4l2_name(device: &str) -> String {
    let node = Path::new(device)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::read_to_string(format!("/sys/class/video4linux/{node}/name"))
        .map(|n| n.trim().to_string())
        .unwrap_or_default()
}

/// Makes the camera source bin from [`camera_description`]; a missing element is named
/// with the package that ships it.
pub(crate) fn camera_source(
    caps: Option<&CameraCaps>,
    device: Option<&str>,
) -> Result<gst::Element> {
    let Some(device) = device else {
        return make_element(camera_element());
    };
    let description = camera_description(caps, device, &v4l2_name(device));
    gst::parse::bin_from_description(&description, true)
        .map(|bin| bin.upcast())
        .map_err(|e| {
            let hint = if description.contains("nvarguscamerasrc")
                || description.contains("nvvidconv")
            {
                " (nvarguscamerasrc and nvvidconv come with JetPack: package nvidia-l4t-gstreamer)"
                    .to_string()
            } else {
                format!(" (install {})", plugin_package(camera_element()))
            };
            err!(
                Video,
                "camera {device}: cannot make `{description}`: {e}{hint}"
            )
        })
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
}

impl std::fmt::Debug for VideoCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoCapture")
            .field("source", &self.source_name)
            .field("has_audio", &self.has_audio)
            .finish()
    }
}

/// Flags shared by the capture threads.
#[derive(Debug, Default)]
struct Flags {
    /// Set by `stop()`: every thread leaves its loop.
    stop: AtomicBool,
    /// Set once a failure was reported (or the receiver is gone): nothing more is sent.
    halted: AtomicBool,
    /// Branches (appsinks) that have not reached end of stream yet.
    branches_left: AtomicUsize,
    /// Time of the last frame delivered plus one (0: none yet); paces file audio.
    video_progress: AtomicI64,
    /// The video branch has ended: audio no longer waits for it.
    video_done: AtomicBool,
}

/// Files read as fast as possible: how far audio may run ahead of video. Without
/// this bound, decodebin's multiqueue lets the cheaper stream race ahead by tens of
/// seconds while frontends work on video, and the window's audio is gone.
const MAX_AUDIO_LEAD_NS: Nanos = NANOS_PER_SEC;

/// What `uridecodebin`'s dynamic pads turned out to contain.
#[derive(Default)]
struct PadState {
    video_linked: bool,
    audio_sink: Option<gst_app::AppSink>,
    no_more_pads: bool,
    link_error: Option<String>,
}

/// Where timestamps come from, decided at start.
#[derive(Debug, Clone, Copy)]
enum Stamping {
    /// Running time of the buffer (files decoded as fast as possible).
    RunningTime,
    /// `base_time + running_time - offset`: pipeline clock time mapped to the timeline.
    Clock { base_time: Nanos, offset: Nanos },
}

/// What a puller needs, besides its appsink.
#[derive(Clone)]
struct PullContext {
    tx: SyncSender<CaptureEvent>,
    stats: Arc<CaptureStats>,
    flags: Arc<Flags>,
    stamping: Stamping,
    /// Live delivery: `try_send` and count drops; otherwise block until sent.
    live_delivery: bool,
    source_name: String,
    /// Declared media duration, to warn about truncated files at end of stream.
    duration: Option<Nanos>,
}

impl VideoCapture {
    /// Builds and starts the pipeline; returns once it is playing (live sources) or
    /// prerolled and playing (files), or a clear [`Error`] within a bounded time (missing
    /// file, unreadable or corrupt media, no video stream, missing plugin, no camera).
    pub fn start(
        source: &VideoSource,
        cfg: &VideoConfig,
        timeline: Timeline,
        tx: SyncSender<CaptureEvent>,
        stats: Arc<CaptureStats>,
    ) -> Result<VideoCapture> {
        validate_config(cfg)?;
        let plan = SourcePlan::resolve(source)?;
        gst::init().map_err(|e| err!(Video, "GStreamer could not be initialised: {e}"))?;

        let live = plan.is_live();
        let live_delivery = live || cfg.realtime;
        let pipeline = gst::Pipeline::new();
        let video_sink = build_video_branch(&pipeline, cfg, live, live_delivery)?;
        let video_entry = pipeline
            .by_name("avaction-video-in")
            .ok_or_else(|| err!(Video, "internal: video branch entry missing"))?;
        let pads = Arc::new(Mutex::new(PadState::default()));

        match &plan {
            SourcePlan::Uri { uri, .. } => {
                let decoder = make_element("uridecodebin")?;
                decoder.set_property("uri", uri);
                pipeline
                    .add(&decoder)
                    .map_err(|e| err!(Video, "cannot add uridecodebin: {e}"))?;
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
        }

        let source_name = plan.describe();
        let mut capture = VideoCapture {
            pipeline: pipeline.clone(),
            flags: Arc::new(Flags::default()),
            threads: Vec::new(),
            has_audio: false,
            source_name: source_name.clone(),
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
                .map(|t| t.nseconds() as Nanos)
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
            pipeline
                .query_duration::<gst::ClockTime>()
                .map(|d| d.nseconds() as Nanos)
        };

        let ctx = PullContext {
            tx: tx.clone(),
            stats,
            flags: capture.flags.clone(),
            stamping,
            live_delivery,
            source_name: source_name.clone(),
            duration,
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
        if let (Some(sink), Some(rate)) = (audio_sink, cfg.audio_rate) {
            capture.threads.push(spawn_named("avaction-file-audio", {
                let ctx = ctx.clone();
                move || audio_loop(sink, ctx, rate)
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

    /// The display branch's `textoverlay` (set its `text` property to label the
    /// frames), if [`VideoConfig::display_sink`] was given.
    pub fn overlay(&self) -> Option<gst::Element> {
        self.pipeline.by_name(OVERLAY_NAME)
    }

    /// Whether an audio track is being delivered (only for files/URIs with
    /// [`VideoConfig::audio_rate`] set and an audio stream present).
    pub fn has_audio(&self) -> bool {
        self.has_audio
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

/// The cameras GStreamer can see (device paths where known, else display names);
/// empty if there is none.
pub fn list_cameras() -> Vec<String> {
    if gst::init().is_err() {
        return Vec::new();
    }
    let monitor = gst::DeviceMonitor::new();
    let mut names = Vec::new();
    if monitor.add_filter(Some("Video/Source"), None).is_some() && monitor.start().is_ok() {
        for device in monitor.devices() {
            let path = device.properties().and_then(|p| {
                p.get::<String>("device.path")
                    .or_else(|_| p.get::<String>("api.v4l2.path"))
                    .ok()
            });
            names.push(path.unwrap_or_else(|| device.display_name().to_string()));
        }
        monitor.stop();
    }
    if names.is_empty() {
        names = video_device_nodes()
            .into_iter()
            .map(|p| p.display().to_string())
            .collect();
    }
    names.sort();
    names.dedup();
    names
}

fn validate_config(cfg: &VideoConfig) -> Result<()> {
    if cfg.width == 0 || cfg.height == 0 || cfg.width > 16384 || cfg.height > 16384 {
        return Err(err!(
            Config,
            "video size {}x{} is invalid (1..=16384 each)",
            cfg.width,
            cfg.height
        ));
    }
    if cfg.fps == 0 || cfg.fps > 1000 {
        return Err(err!(Config, "video fps {} is invalid (1..=1000)", cfg.fps));
    }
    if cfg.audio_rate == Some(0) {
        return Err(err!(Config, "audio rate 0 Hz is invalid"));
    }
    Ok(())
}

/// A [`VideoSource`] turned into what the pipeline needs, checked before GStreamer starts.
#[derive(Debug)]
enum SourcePlan {
    Camera {
        device: Option<String>,
    },
    Uri {
        uri: String,
        shown: String,
        live: bool,
    },
    TestPattern {
        pattern: String,
    },
}

impl SourcePlan {
    fn resolve(source: &VideoSource) -> Result<SourcePlan> {
        match source {
            VideoSource::Camera(None) => {
                if cfg!(target_os = "linux") {
                    match video_device_nodes().into_iter().next() {
                        Some(dev) => Ok(SourcePlan::Camera {
                            device: Some(dev.display().to_string()),
                        }),
                        None => Err(err!(
                            Video,
                            "no camera found: no /dev/video* device exists (use a file, a URI or test:ball)"
                        )),
                    }
                } else {
                    Ok(SourcePlan::Camera { device: None })
                }
            }
            VideoSource::Camera(Some(dev)) => {
                let dev = dev.trim();
                let path = if !dev.is_empty() && dev.bytes().all(|b| b.is_ascii_digit()) {
                    format!("/dev/video{dev}")
                } else {
                    dev.to_string()
                };
                if cfg!(target_os = "linux") && !Path::new(&path).exists() {
                    let found = video_device_nodes();
                    let found: Vec<String> =
                        found.iter().map(|p| p.display().to_string()).collect();
                    return Err(err!(
                        Video,
                        "no camera found at {path} (cameras present: {})",
                        if found.is_empty() {
                            "none".to_string()
                        } else {
                            found.join(", ")
                        }
                    ));
                }
                Ok(SourcePlan::Camera { device: Some(path) })
            }
            VideoSource::Uri(text) => resolve_uri(text),
            VideoSource::TestPattern(p) => Ok(SourcePlan::TestPattern {
                pattern: if p.is_empty() {
                    "ball".into()
                } else {
                    p.clone()
                },
            }),
            VideoSource::None => Err(err!(Config, "no video source was given")),
        }
    }

    fn is_live(&self) -> bool {
        match self {
            SourcePlan::Camera { .. } | SourcePlan::TestPattern { .. } => true,
            SourcePlan::Uri { live, .. } => *live,
        }
    }

    fn describe(&self) -> String {
        match self {
            SourcePlan::Camera { device: Some(d) } => format!("camera {d}"),
            SourcePlan::Camera { device: None } => "camera (default)".into(),
            SourcePlan::Uri { shown, .. } => shown.clone(),
            SourcePlan::TestPattern { pattern } => format!("test pattern {pattern}"),
        }
    }
}

/// Turns a path or URI into a URI; a local file must exist and be a readable file.
fn resolve_uri(text: &str) -> Result<SourcePlan> {
    let text = text.trim();
    if text.is_empty() {
        return Err(err!(Config, "empty video path"));
    }
    let is_uri = text.contains("://");
    if is_uri && !text.starts_with("file://") {
        let live = text.starts_with("rtsp://") || text.starts_with("rtsps://");
        return Ok(SourcePlan::Uri {
            uri: text.to_string(),
            shown: text.to_string(),
            live,
        });
    }
    let path: PathBuf = if is_uri {
        gst::glib::filename_from_uri(text)
            .map(|(p, _host)| p)
            .map_err(|e| err!(Config, "invalid file URI {text}: {e}"))?
    } else {
        PathBuf::from(text)
    };
    let path = std::path::absolute(&path).map_err(|e| Error::io(&path, e))?;
    let meta = std::fs::metadata(&path)
        .map_err(|e| err!(Io, "video file {} cannot be opened: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(err!(Io, "video path {} is not a file", path.display()));
    }
    std::fs::File::open(&path)
        .map_err(|e| err!(Io, "video file {} cannot be read: {e}", path.display()))?;
    let uri = gst::glib::filename_to_uri(&path, None)
        .map_err(|e| err!(Io, "video file {} has no URI form: {e}", path.display()))?;
    Ok(SourcePlan::Uri {
        uri: uri.to_string(),
        shown: format!("file {}", path.display()),
        live: false,
    })
}

/// `/dev/video*` nodes sorted by number (Linux).
fn video_device_nodes() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/dev") else {
        return Vec::new();
    };
    let mut nodes: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let n = name.strip_prefix("video")?.parse::<u32>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, p)| p).collect()
}

fn camera_element() -> &'static str {
    if cfg!(target_os = "linux") {
        "v4l2src"
    } else {
        "autovideosrc"
    }
}

/// Which Debian/Ubuntu package ships a GStreamer element, for error messages.
fn plugin_package(factory: &str) -> &'static str {
    match factory {
        "v4l2src" => "gstreamer1.0-plugins-good",
        "autovideosrc" => "gstreamer1.0-plugins-good",
        _ => "gstreamer1.0-plugins-base",
    }
}

fn make_element(factory: &str) -> Result<gst::Element> {
    gst::ElementFactory::make(factory).build().map_err(|_| {
        err!(
            Video,
            "GStreamer element '{factory}' is missing (install {})",
            plugin_package(factory)
        )
    })
}

/// Sets an enum property from its nick, name or number, with a clear error listing the
/// allowed values (GStreamer's own string setter panics on a bad value).
fn set_enum_property(element: &gst::Element, property: &str, value: &str) -> Result<()> {
    let pspec = element
        .find_property(property)
        .ok_or_else(|| err!(Video, "element has no property '{property}'"))?;
    let enum_spec = pspec
        .downcast_ref::<gst::glib::ParamSpecEnum>()
        .ok_or_else(|| err!(Video, "property '{property}' is not an enum"))?;
    let class = enum_spec.enum_class();
    let found = class
        .value_by_nick(value)
        .or_else(|| class.value_by_name(value))
        .or_else(|| value.parse::<i32>().ok().and_then(|n| class.value(n)));
    match found {
        Some(v) => {
            let gvalue = class
                .to_value(v.value())
                .ok_or_else(|| err!(Video, "internal: enum value {value} not convertible"))?;
            element.set_property_from_value(property, &gvalue);
            Ok(())
        }
        None => {
            let allowed: Vec<&str> = class.values().iter().map(|v| v.nick()).collect();
            Err(err!(
                Config,
                "unknown {property} '{value}' (one of: {})",
                allowed.join(", ")
            ))
        }
    }
}

fn add_and_link_source(
    pipeline: &gst::Pipeline,
    src: &gst::Element,
    entry: &gst::Element,
) -> Result<()> {
    pipeline
        .add(src)
        .map_err(|e| err!(Video, "cannot add the source element: {e}"))?;
    src.link(entry)
        .map_err(|e| err!(Video, "cannot link the source to the video branch: {e}"))
}

/// `videorate ! videoconvert ! videoscale ! videoconvert ! capsfilter ! appsink`; the
/// first element is named `avaction-video-in`.
fn build_video_branch(
    pipeline: &gst::Pipeline,
    cfg: &VideoConfig,
    live: bool,
    live_delivery: bool,
) -> Result<gst_app::AppSink> {
    let rate = make_element("videorate")?;
    rate.set_property("name", "avaction-video-in");
    let convert_in = make_element("videoconvert")?;
    let scale = make_element("videoscale")?;
    scale.set_property("add-borders", false);
    let convert_out = make_element("videoconvert")?;
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .field("width", cfg.width as i32)
        .field("height", cfg.height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .field("framerate", gst::Fraction::new(cfg.fps as i32, 1))
        .build();
    let filter = make_element("capsfilter")?;
    filter.set_property("caps", &caps);
    let max_buffers = if live_delivery {
        cfg.live_max_buffers.max(1)
    } else {
        FILE_MAX_BUFFERS
    };
    let sink = gst_app::AppSink::builder()
        .caps(&caps)
        .max_buffers(max_buffers)
        .drop(live_delivery)
        // Live sources deliver as soon as captured; files play at real time only on request.
        .sync(!live && cfg.realtime)
        .enable_last_sample(false)
        .build();
    let sink_element: &gst::Element = sink.upcast_ref();
    let model_path = [&convert_in, &scale, &convert_out, &filter, sink_element];
    pipeline
        .add_many([&rate])
        .and_then(|_| pipeline.add_many(model_path))
        .map_err(|e| err!(Video, "cannot assemble the video branch: {e}"))?;
    match &cfg.display_sink {
        None => gst::Element::link_many([&rate, &convert_in])
            .map_err(|e| err!(Video, "cannot link the video branch: {e}"))?,
        Some(display) => add_display_branch(pipeline, &rate, &convert_in, display)?,
    }
    gst::Element::link_many(model_path)
        .map_err(|e| err!(Video, "cannot link the video branch: {e}"))?;
    Ok(sink)
}

/// Name of the `textoverlay` element of the display branch.
const OVERLAY_NAME: &str = "avaction-overlay";

/// `rate ! tee`, one side `queue ! <model path>`, the other a leaky
/// `queue ! videoconvert ! textoverlay ! videoconvert ! <display sink>`: the display
/// shows the full-size frames with the current label and never holds the model back.
fn add_display_branch(
    pipeline: &gst::Pipeline,
    rate: &gst::Element,
    model_in: &gst::Element,
    display: &str,
) -> Result<()> {
    let tee = make_element("tee")?;
    let model_queue = make_element("queue")?;
    let show_queue = make_element("queue")?;
    set_enum_property(&show_queue, "leaky", "downstream")?;
    show_queue.set_property("max-size-buffers", 2u32);
    show_queue.set_property("max-size-time", 0u64);
    show_queue.set_property("max-size-bytes", 0u32);
    let convert_a = make_element("videoconvert")?;
    let overlay = make_element("textoverlay")?;
    overlay.set_property("name", OVERLAY_NAME);
    overlay.set_property("font-desc", "Sans 18");
    set_enum_property(&overlay, "valignment", "top")?;
    set_enum_property(&overlay, "halignment", "left")?;
    let convert_b = make_element("videoconvert")?;
    let sink = make_element(display)?;
    if sink.find_property("sync").is_some() {
        sink.set_property("sync", false);
    }
    let show = [&show_queue, &convert_a, &overlay, &convert_b, &sink];
    pipeline
        .add_many([&tee, &model_queue])
        .and_then(|_| pipeline.add_many(show))
        .map_err(|e| err!(Video, "cannot assemble the display branch: {e}"))?;
    gst::Element::link_many([rate, &tee, &model_queue, model_in])
        .and_then(|_| tee.link(&show_queue))
        .and_then(|_| gst::Element::link_many(show))
        .map_err(|e| err!(Video, "cannot link the display branch ({display}): {e}"))?;
    Ok(())
}

/// `audioconvert ! audioresample ! capsfilter(F32LE mono rate) ! appsink`, added while
/// the pipeline runs; returns the branch's entry element and its appsink.
fn build_audio_branch(
    pipeline: &gst::Pipeline,
    rate: u32,
    realtime: bool,
) -> Result<(gst::Element, gst_app::AppSink)> {
    let convert = make_element("audioconvert")?;
    let resample = make_element("audioresample")?;
    let caps = gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("channels", 1i32)
        .field("rate", rate as i32)
        .field("layout", "interleaved")
        .build();
    let filter = make_element("capsfilter")?;
    filter.set_property("caps", &caps);
    let sink = gst_app::AppSink::builder()
        .caps(&caps)
        .max_buffers(FILE_MAX_BUFFERS * 4)
        .drop(false)
        .sync(realtime)
        .enable_last_sample(false)
        .build();
    let sink_element: &gst::Element = sink.upcast_ref();
    let elements = [&convert, &resample, &filter, sink_element];
    pipeline
        .add_many(elements)
        .map_err(|e| err!(Audio, "cannot assemble the audio branch: {e}"))?;
    gst::Element::link_many(elements)
        .map_err(|e| err!(Audio, "cannot link the audio branch: {e}"))?;
    for e in elements {
        e.sync_state_with_parent()
            .map_err(|e| err!(Audio, "cannot start the audio branch: {e}"))?;
    }
    Ok((convert, sink))
}

/// A sink for decoded streams nobody asked for (extra video/audio tracks, subtitles), so
/// that unlinked pads do not stop the decoder.
fn attach_discard_sink(pipeline: &gst::Pipeline, pad: &gst::Pad) -> Result<()> {
    let sink = make_element("fakesink")?;
    sink.set_property("sync", false);
    sink.set_property("async", false);
    pipeline
        .add(&sink)
        .map_err(|e| err!(Video, "cannot add a fakesink: {e}"))?;
    sink.sync_state_with_parent()
        .map_err(|e| err!(Video, "cannot start a fakesink: {e}"))?;
    let sink_pad = sink
        .static_pad("sink")
        .ok_or_else(|| err!(Video, "internal: fakesink without a sink pad"))?;
    pad.link(&sink_pad)
        .map(|_| ())
        .map_err(|e| err!(Video, "cannot link an unused stream: {e:?}"))
}

/// Routes `uridecodebin`'s pads: the first video stream to the video branch, the first
/// audio stream to a new audio branch when asked, the rest to fakesinks.
fn connect_decoder_pads(
    decoder: &gst::Element,
    pipeline: &gst::Pipeline,
    video_entry: &gst::Element,
    cfg: &VideoConfig,
    realtime: bool,
    pads: &Arc<Mutex<PadState>>,
) {
    let pipeline_weak = pipeline.downgrade();
    let video_entry = video_entry.clone();
    let audio_rate = cfg.audio_rate;
    let state = pads.clone();
    decoder.connect_pad_added(move |_decoder, pad| {
        let Some(pipeline) = pipeline_weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let media = caps
            .structure(0)
            .map(|s| s.name().to_string())
            .unwrap_or_default();
        let Ok(mut st) = state.lock() else {
            return;
        };
        let result = if media.starts_with("video/") && !st.video_linked {
            match video_entry.static_pad("sink") {
                Some(sink_pad) => match pad.link(&sink_pad) {
                    Ok(_) => {
                        st.video_linked = true;
                        Ok(())
                    }
                    Err(e) => Err(err!(Video, "cannot link the decoded video ({caps}): {e:?}")),
                },
                None => Err(err!(Video, "internal: video branch without a sink pad")),
            }
        } else if media.starts_with("audio/") && st.audio_sink.is_none() && audio_rate.is_some() {
            let rate = audio_rate.unwrap_or(16_000);
            build_audio_branch(&pipeline, rate, realtime).and_then(|(entry, sink)| {
                let sink_pad = entry
                    .static_pad("sink")
                    .ok_or_else(|| err!(Audio, "internal: audioconvert without a sink pad"))?;
                pad.link(&sink_pad)
                    .map_err(|e| err!(Audio, "cannot link the decoded audio ({caps}): {e:?}"))?;
                st.audio_sink = Some(sink);
                Ok(())
            })
        } else {
            attach_discard_sink(&pipeline, pad)
        };
        if let Err(e) = result {
            log::error!("{e}");
            st.link_error.get_or_insert_with(|| e.message().to_string());
        }
    });
    let state = pads.clone();
    decoder.connect_no_more_pads(move |_| {
        if let Ok(mut st) = state.lock() {
            st.no_more_pads = true;
        }
    });
}

/// Sets the pipeline to PLAYING and waits (bounded) until it plays, polling the bus for
/// errors and checking that a file has a video stream.
fn wait_until_playing(
    pipeline: &gst::Pipeline,
    plan: &SourcePlan,
    pads: &Arc<Mutex<PadState>>,
    source_name: &str,
) -> Result<()> {
    let bus = pipeline
        .bus()
        .ok_or_else(|| err!(Video, "{source_name}: the pipeline has no bus"))?;
    let is_uri = matches!(plan, SourcePlan::Uri { .. });
    // Files preroll in PAUSED first (as gst-launch does), then play.
    let mut target = if plan.is_live() {
        gst::State::Playing
    } else {
        gst::State::Paused
    };
    if let Err(change_err) = pipeline.set_state(target) {
        let detail = bus
            .timed_pop_filtered(
                gst::ClockTime::from_mseconds(500),
                &[gst::MessageType::Error],
            )
            .and_then(|m| match m.view() {
                gst::MessageView::Error(e) => Some(describe_gst_error(e)),
                _ => None,
            })
            .unwrap_or_else(|| change_err.to_string());
        return Err(err!(Video, "{source_name} cannot start: {detail}"));
    }
    let started = Instant::now();
    let deadline = started + START_TIMEOUT;
    let mut missing_plugins: Vec<String> = Vec::new();
    loop {
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(20),
            &[
                gst::MessageType::Error,
                gst::MessageType::Warning,
                gst::MessageType::Element,
            ],
        ) {
            match msg.view() {
                gst::MessageView::Element(e) => {
                    if let Some(what) = e.structure().and_then(describe_missing_plugin) {
                        log::warn!("{source_name}: missing GStreamer plugin: {what}");
                        missing_plugins.push(what);
                    }
                }
                gst::MessageView::Error(e) => {
                    let mut message = format!("{source_name}: {}", describe_gst_error(e));
                    if !missing_plugins.is_empty() {
                        message.push_str(&format!(
                            " [missing GStreamer plugin: {}]",
                            missing_plugins.join(", ")
                        ));
                    }
                    return Err(Error::new(crate::ErrorKind::Video, message));
                }
                gst::MessageView::Warning(w) => {
                    log::warn!(
                        "{source_name}: {} ({})",
                        w.error(),
                        w.debug().map(|d| d.to_string()).unwrap_or_default()
                    );
                }
                _ => {}
            }
            continue;
        }
        let (video_linked, no_more_pads, link_error) = match pads.lock() {
            Ok(st) => (st.video_linked, st.no_more_pads, st.link_error.clone()),
            Err(_) => return Err(err!(Video, "internal: pad state poisoned ({source_name})")),
        };
        if let Some(e) = link_error {
            return Err(err!(Video, "{source_name}: {e}"));
        }
        if is_uri && no_more_pads && !video_linked {
            let what = match plan {
                SourcePlan::Uri { shown, .. } => shown.trim_start_matches("file ").to_string(),
                _ => source_name.to_string(),
            };
            if missing_plugins.is_empty() {
                return Err(err!(Video, "no video stream in {what}"));
            }
            return Err(err!(
                Video,
                "no decodable video stream in {what} (missing GStreamer plugin: {}; install gstreamer1.0-libav or gstreamer1.0-plugins-good/bad/ugly)",
                missing_plugins.join(", ")
            ));
        }
        if is_uri && !no_more_pads && started.elapsed() > STALL_GRACE {
            let stopped = stopped_demuxers(pipeline);
            if !stopped.is_empty() {
                // GStreamer 1.22's decodebin can swallow a demuxer's error (posted while
                // decodebin is still plugging it), e.g. qtdemux on an MP4/MOV cut short;
                // the demuxer's streaming task is then paused with no stream exposed.
                return Err(err!(
                    Video,
                    "{source_name}: no playable stream ({} stopped without finding one); the media is probably truncated or corrupt",
                    stopped.join(", ")
                ));
            }
        }
        let (result, current, _pending) = pipeline.state(gst::ClockTime::ZERO);
        if result.is_err() {
            return Err(err!(Video, "{source_name}: the pipeline failed to start"));
        }
        if current == target && (!is_uri || no_more_pads || plan.is_live()) {
            if target == gst::State::Playing {
                return Ok(());
            }
            target = gst::State::Playing;
            pipeline
                .set_state(target)
                .map_err(|e| err!(Video, "{source_name} cannot play: {e}"))?;
        }
        if Instant::now() >= deadline {
            return Err(err!(
                Video,
                "{source_name}: not playing after {} s (state {current:?}); the media may be unreadable",
                START_TIMEOUT.as_secs()
            ));
        }
    }
}

/// Demuxers (by factory name) whose pull-mode streaming task has stopped: they hit an
/// error or the end of the data. Used before any stream was exposed, this means "none".
fn stopped_demuxers(pipeline: &gst::Pipeline) -> Vec<String> {
    let mut names = Vec::new();
    for element in pipeline.iterate_recurse().into_iter().flatten() {
        let Some(factory) = element.factory() else {
            continue;
        };
        if !factory.klass().contains("Demux") {
            continue;
        }
        let stopped = element.sink_pads().iter().any(|pad| {
            pad.mode() == gst::PadMode::Pull && pad.task_state() == gst::TaskState::Paused
        });
        if stopped {
            names.push(factory.name().to_string());
        }
    }
    names
}

/// The description in a `missing-plugin` element message (what `gst-plugins-base`'s
/// missing-plugins helper posts when decodebin finds no decoder), if it is one.
fn describe_missing_plugin(s: &gst::StructureRef) -> Option<String> {
    if s.name() != "missing-plugin" {
        return None;
    }
    let detail = s
        .get::<gst::Caps>("detail")
        .map(|c| c.to_string())
        .or_else(|_| s.get::<String>("detail"))
        .unwrap_or_default();
    let name = s.get::<String>("name").unwrap_or_default();
    Some(match (name.is_empty(), detail.is_empty()) {
        (false, false) => format!("{name} for {detail}"),
        (false, true) => name,
        (true, false) => format!("decoder for {detail}"),
        (true, true) => "unknown element".into(),
    })
}

/// GStreamer error message, debug info and the element that posted it.
fn describe_gst_error(e: &gst::message::Error) -> String {
    let from = e
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_else(|| "unknown element".into());
    match e.debug() {
        Some(debug) => format!("{} (from {from}; debug: {debug})", e.error()),
        None => format!("{} (from {from})", e.error()),
    }
}

/// The offset `clock time - timeline time`, measured with the tightest of a few brackets.
fn measure_clock_offset(clock: &gst::Clock, timeline: &Timeline) -> Nanos {
    let mut best: Option<(Nanos, Nanos)> = None; // (bracket width, offset)
    for _ in 0..5 {
        let before = timeline.now();
        let clock_now = clock.time().nseconds() as Nanos;
        let after = timeline.now();
        let width = after - before;
        let offset = clock_now - (before + width / 2);
        if best.is_none_or(|(w, _)| width < w) {
            best = Some((width, offset));
        }
    }
    best.map_or(0, |(_, offset)| offset)
}

fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|e| err!(Video, "cannot start thread {name}: {e}"))
}

/// Watches the bus: errors become one `Failed` event (and halt delivery); warnings are logged.
fn bus_loop(bus: gst::Bus, ctx: PullContext) {
    while !ctx.flags.stop.load(Ordering::SeqCst) {
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(POLL_INTERVAL_MS),
            &[gst::MessageType::Error, gst::MessageType::Warning],
        ) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Error(e) => {
                let error = err!(Video, "{}: {}", ctx.source_name, describe_gst_error(e));
                log::error!("{error}");
                if !ctx.flags.halted.swap(true, Ordering::SeqCst) {
                    // Last message from this capture; never blocks for long (stop flag).
                    deliver(&ctx, CaptureEvent::Failed(error), false, true);
                }
                return;
            }
            gst::MessageView::Warning(w) => log::warn!(
                "{}: {} ({})",
                ctx.source_name,
                w.error(),
                w.debug().map(|d| d.to_string()).unwrap_or_default()
            ),
            _ => {}
        }
    }
}

/// Sends an event. Blocking mode waits for room (checking the stop flag every
/// millisecond); live mode gives up at once. Returns whether it was sent. A closed
/// receiver halts the capture.
fn deliver(ctx: &PullContext, event: CaptureEvent, live: bool, ignore_halt: bool) -> bool {
    let mut event = event;
    loop {
        if !ignore_halt && ctx.flags.halted.load(Ordering::SeqCst) {
            return false;
        }
        match ctx.tx.try_send(event) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => {
                ctx.flags.halted.store(true, Ordering::SeqCst);
                return false;
            }
            Err(TrySendError::Full(back)) => {
                if live || ctx.flags.stop.load(Ordering::SeqCst) {
                    return false;
                }
                event = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Marks one branch finished; the last one sends `EndOfStream` (once).
fn finish_branch(ctx: &PullContext) {
    if ctx.flags.branches_left.fetch_sub(1, Ordering::SeqCst) == 1
        && !ctx.flags.halted.load(Ordering::SeqCst)
    {
        log::info!("{}: end of stream", ctx.source_name);
        deliver(ctx, CaptureEvent::EndOfStream, false, false);
    }
}

/// The buffer's time on the runtime timeline, or `None` if it has no usable timestamp.
fn buffer_time(sample: &gst::Sample, buffer: &gst::BufferRef, stamping: Stamping) -> Option<Nanos> {
    let pts = buffer.pts()?;
    let running = match sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
    {
        Some(segment) => segment.to_running_time(pts)?,
        None => pts,
    };
    let running = running.nseconds() as Nanos;
    Some(match stamping {
        Stamping::RunningTime => running,
        Stamping::Clock { base_time, offset } => base_time + running - offset,
    })
}

/// Copies a mapped RGB frame row by row (GStreamer rows may be padded) into packed RGB.
fn copy_rgb(
    sample: &gst::Sample,
    info: &gst_video::VideoInfo,
) -> std::result::Result<Vec<u8>, String> {
    let buffer = sample.buffer().ok_or("sample without buffer")?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)
        .map_err(|e| format!("cannot map frame: {e}"))?;
    let width = frame.width() as usize;
    let height = frame.height() as usize;
    let stride = *frame.plane_stride().first().ok_or("frame without planes")? as usize;
    let data = frame
        .plane_data(0)
        .map_err(|e| format!("cannot read plane: {e}"))?;
    let row = width * 3;
    if stride < row || data.len() < stride * (height.saturating_sub(1)) + row {
        return Err(format!(
            "frame {width}x{height} stride {stride} does not fit its {} bytes",
            data.len()
        ));
    }
    let mut rgb = Vec::with_capacity(row * height);
    for y in 0..height {
        rgb.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok(rgb)
}

/// Pulls frames from the video appsink until end of stream, failure or stop.
fn video_loop(sink: gst_app::AppSink, ctx: PullContext, fps: u32, size: (u32, u32)) {
    let period = NANOS_PER_SEC as f64 / fps as f64;
    let mut info: Option<(gst::Caps, gst_video::VideoInfo)> = None;
    let mut previous: Option<Nanos> = None;
    let mut last_end: Option<Nanos> = None;
    while !ctx.flags.stop.load(Ordering::SeqCst) && !ctx.flags.halted.load(Ordering::SeqCst) {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(POLL_INTERVAL_MS))
        else {
            if sink.is_eos() && !ctx.flags.stop.load(Ordering::SeqCst) {
                ctx.flags.video_done.store(true, Ordering::SeqCst);
                warn_if_truncated(&ctx, last_end);
                finish_branch(&ctx);
                return;
            }
            continue;
        };
        let Some(caps) = sample.caps_owned() else {
            continue;
        };
        if info.as_ref().is_none_or(|(c, _)| *c != caps) {
            match gst_video::VideoInfo::from_caps(&caps) {
                Ok(vi) => info = Some((caps, vi)),
                Err(e) => {
                    fail(
                        &ctx,
                        err!(
                            Video,
                            "{}: unusable video caps {caps}: {e}",
                            ctx.source_name
                        ),
                    );
                    return;
                }
            }
        }
        let Some((_, vinfo)) = info.as_ref() else {
            continue;
        };
        let Some(buffer) = sample.buffer() else {
            continue;
        };
        let Some(t_ns) = buffer_time(&sample, buffer, ctx.stamping) else {
            log::debug!("{}: frame without timestamp skipped", ctx.source_name);
            continue;
        };
        if ctx.live_delivery {
            if let Some(prev) = previous {
                let periods = ((t_ns - prev) as f64 / period).round() as i64;
                if periods > 1 {
                    CaptureStats::add(&ctx.stats.frames_dropped, (periods - 1) as u64);
                }
            }
        }
        previous = Some(t_ns);
        last_end = Some(t_ns + period as Nanos);
        let rgb = match copy_rgb(&sample, vinfo) {
            Ok(rgb) => rgb,
            Err(e) => {
                fail(&ctx, err!(Video, "{}: {e}", ctx.source_name));
                return;
            }
        };
        let frame = VideoFrame {
            t_ns,
            width: size.0,
            height: size.1,
            rgb,
        };
        if deliver(&ctx, CaptureEvent::Frame(frame), ctx.live_delivery, false) {
            ctx.flags
                .video_progress
                .store(t_ns.saturating_add(1), Ordering::SeqCst);
            CaptureStats::add(&ctx.stats.frames, 1);
        } else if ctx.live_delivery && !ctx.flags.halted.load(Ordering::SeqCst) {
            CaptureStats::add(&ctx.stats.frames_dropped, 1);
        }
    }
}

/// Pulls mono f32 audio from the audio appsink until end of stream, failure or stop.
fn audio_loop(sink: gst_app::AppSink, ctx: PullContext, rate: u32) {
    while !ctx.flags.stop.load(Ordering::SeqCst) && !ctx.flags.halted.load(Ordering::SeqCst) {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(POLL_INTERVAL_MS))
        else {
            if sink.is_eos() && !ctx.flags.stop.load(Ordering::SeqCst) {
                finish_branch(&ctx);
                return;
            }
            continue;
        };
        let Some(buffer) = sample.buffer() else {
            continue;
        };
        let Some(t_ns) = buffer_time(&sample, buffer, ctx.stamping) else {
            log::debug!(
                "{}: audio buffer without timestamp skipped",
                ctx.source_name
            );
            continue;
        };
        let samples = match buffer.map_readable() {
            Ok(map) => map
                .as_slice()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect::<Vec<f32>>(),
            Err(e) => {
                fail(
                    &ctx,
                    err!(Audio, "{}: cannot read audio: {e}", ctx.source_name),
                );
                return;
            }
        };
        if samples.is_empty() {
            continue;
        }
        if !ctx.live_delivery {
            wait_for_video(&ctx, t_ns);
        }
        let n = samples.len() as u64;
        let chunk = AudioChunk {
            t_ns,
            rate,
            samples,
        };
        if deliver(&ctx, CaptureEvent::Audio(chunk), ctx.live_delivery, false) {
            CaptureStats::add(&ctx.stats.samples, n);
        } else if ctx.live_delivery && !ctx.flags.halted.load(Ordering::SeqCst) {
            CaptureStats::add(&ctx.stats.samples_dropped, n);
        }
    }
}

/// Files: holds audio at `t_ns` until video has caught up to within
/// [`MAX_AUDIO_LEAD_NS`] (or ended, or the capture stops).
fn wait_for_video(ctx: &PullContext, t_ns: Nanos) {
    let f = &ctx.flags;
    loop {
        let progress = f.video_progress.load(Ordering::SeqCst);
        let caught_up = progress > 0 && t_ns <= progress - 1 + MAX_AUDIO_LEAD_NS;
        let first = progress == 0 && t_ns <= MAX_AUDIO_LEAD_NS;
        if caught_up
            || first
            || f.video_done.load(Ordering::SeqCst)
            || f.stop.load(Ordering::SeqCst)
            || f.halted.load(Ordering::SeqCst)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reports a failure once and halts delivery.
fn fail(ctx: &PullContext, error: Error) {
    log::error!("{error}");
    if !ctx.flags.halted.swap(true, Ordering::SeqCst) {
        deliver(ctx, CaptureEvent::Failed(error), false, true);
    }
}

/// Logs a warning when a file ends well before its declared duration (e.g. a truncated
/// Matroska file, which GStreamer plays up to the cut and then ends normally).
fn warn_if_truncated(ctx: &PullContext, last_end: Option<Nanos>) {
    if let (Some(duration), Some(end)) = (ctx.duration, last_end) {
        if matches!(ctx.stamping, Stamping::RunningTime) {
            let missing = duration - end;
            if missing > NANOS_PER_SEC / 2 && missing > duration / 10 {
                log::warn!(
                    "{}: video ended at {:.2} s but the container declares {:.2} s; the file may be truncated",
                    ctx.source_name,
                    end as f64 / 1e9,
                    duration as f64 / 1e9
                );
            }
        }
    }
}
