//! Where video and audio enter: GStreamer for cameras, files, URIs and test sources
//! ([`video`]), cpal for microphones ([`audio`]). Every source pushes
//! [`CaptureEvent`]s stamped on one [`Timeline`](crate::clock::Timeline) into a
//! bounded channel; drops are counted in [`CaptureStats`].

pub mod audio;
pub mod clip;
pub mod downmix;
pub mod preview;
pub mod video;
mod watch;

pub use downmix::Downmix;
pub use video::LabelOverlay;
pub use watch::SourceWatch;

use crate::clock::{AudioChunk, VideoFrame};
use crate::Error;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VideoSource {
    /// A live camera: `None` picks the first one (v4l2src / autovideosrc); `Some` is a
    /// device path such as `/dev/video0` or an index such as `0`.
    Camera(Option<String>),
    /// A file path or any URI GStreamer can open (file://, rtsp://, http://).
    Uri(String),
    /// GStreamer's `videotestsrc` with the given pattern name (e.g. `ball`, `smpte`).
    TestPattern(String),
    /// A `gst-launch-1.0` description whose last element has one unlinked video source
    /// pad, e.g. `nvarguscamerasrc ! nvvidconv` for a CSI camera or
    /// `v4l2src device=/dev/video2 ! image/jpeg,width=1280 ! jpegdec` for a camera that
    /// needs its own caps. Whether it is live is asked of the pipeline itself at start
    /// (a live pipeline does not preroll).
    Pipeline(String),
    /// No video.
    None,
}

impl VideoSource {
    /// Parses a user string: `camera`, `camera:/dev/video0`, `camera:1`,
    /// `test:ball`, `gst:DESCRIPTION` (a gst-launch description), `none`, or a path /
    /// URI.
    pub fn parse(s: &str) -> VideoSource {
        if let Some(description) = s.strip_prefix("gst:") {
            VideoSource::Pipeline(description.to_string())
        } else if s == "camera" {
            VideoSource::Camera(None)
        } else if let Some(dev) = s.strip_prefix("camera:") {
            VideoSource::Camera(Some(dev.to_string()))
        } else if let Some(p) = s.strip_prefix("test:") {
            VideoSource::TestPattern(p.to_string())
        } else if s == "test" {
            VideoSource::TestPattern("ball".into())
        } else if s == "none" {
            VideoSource::None
        } else {
            VideoSource::Uri(s.to_string())
        }
    }

    /// Whether the source runs on its own clock and can only be kept up with
    /// (cameras, network streams, test sources), rather than read at our pace. A
    /// [`Pipeline`](VideoSource::Pipeline) is assumed live here; the capture asks the
    /// pipeline ([`VideoCapture::is_live`](video::VideoCapture::is_live)).
    pub fn is_live(&self) -> bool {
        match self {
            VideoSource::Camera(_) | VideoSource::TestPattern(_) | VideoSource::Pipeline(_) => true,
            VideoSource::Uri(u) => u.starts_with("rtsp://") || u.starts_with("rtsps://"),
            VideoSource::None => false,
        }
    }
}

/// Where audio comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AudioSource {
    /// The default input device of the default cpal host.
    DefaultMicrophone,
    /// An input device chosen by (a substring of) its name.
    Microphone(String),
    /// The audio track of the video file/URI, through the same GStreamer pipeline.
    FromVideo,
    /// No audio.
    None,
}

impl AudioSource {
    /// Parses a user string: `mic`, `mic:NAME`, `video` (the file's track), `none`.
    pub fn parse(s: &str) -> AudioSource {
        match s {
            "mic" | "default" => AudioSource::DefaultMicrophone,
            "video" | "file" => AudioSource::FromVideo,
            "none" => AudioSource::None,
            other => match other.strip_prefix("mic:") {
                Some(name) => AudioSource::Microphone(name.to_string()),
                None => AudioSource::Microphone(other.to_string()),
            },
        }
    }
}

/// What a capture path delivers to the runtime.
#[derive(Debug)]
pub enum CaptureEvent {
    /// A video frame, already scaled to the model's size and in RGB.
    Frame(VideoFrame),
    /// Mono audio at the model's rate.
    Audio(AudioChunk),
    /// The source ended (end of file). Live sources never send this unless they fail.
    EndOfStream,
    /// A file ended early: it is truncated or failed mid-stream (the reason says which).
    /// What came before is valid; the run ends as for `EndOfStream`, marked incomplete.
    Cut(String),
    /// A supervised source was reopened after a loss or a stall: data before and after
    /// this event are not contiguous (windows do not span it).
    Gap(crate::health::SourceKind),
    /// The source failed; the runtime reports it and stops or degrades.
    Failed(Error),
}

/// Counters shared between capture threads/callbacks and `stats()`: atomics only.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Frames delivered to the runtime.
    pub frames: AtomicU64,
    /// Frames dropped because the runtime was behind a live source.
    pub frames_dropped: AtomicU64,
    /// Audio samples (at the model rate) delivered.
    pub samples: AtomicU64,
    /// Audio samples (at the device rate) lost to ring overruns.
    pub samples_dropped: AtomicU64,
}

impl CaptureStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
