//! The evidence-clip tap: the last seconds of encoded video and of audio, kept in memory
//! for the clip recorder ([`crate::deliver::clips`]).
//!
//! The video capture encodes its full-size frames on a branch of its own (see
//! [`ClipEncoder`]) and pushes each encoded frame here, stamped on the runtime timeline
//! like the model's frames; the window stream pushes each audio chunk it receives
//! (microphone or the file's track, at the model's rate). Both rings are bounded: by the
//! time span [`ClipTap::new`] is given (pre-roll + post-roll + slack) and, for video, by
//! bytes. Frames are evicted a whole group of pictures at a time, so the oldest frame
//! kept is always a keyframe and a clip can start there.

use crate::clock::{AudioChunk, Nanos, TimeSpan};
use crate::{err, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One encoded video frame.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// Presentation time on the runtime timeline.
    pub t_ns: Nanos,
    /// Whether a decoder can start here.
    pub keyframe: bool,
    /// The encoded bytes (reference-counted, not copied).
    pub buffer: gst::Buffer,
    /// The stream's caps when the frame was encoded (codec, size, rate).
    pub caps: gst::Caps,
}

/// What a clip is made of: encoded frames from a keyframe on, and the audio of the same
/// span (silence where none arrived), if any audio arrived in it.
#[derive(Debug, Clone)]
pub struct ClipMedia {
    /// Frames in time order; the first is a keyframe.
    pub video: Vec<EncodedFrame>,
    /// Mono audio starting at the first frame's time; `None` when none overlaps.
    pub audio: Option<AudioChunk>,
    /// Audio samples of the span that were missing and are silence in `audio`.
    pub audio_missing: usize,
}

/// A video encoder for clips, by GStreamer element name, and how it is wired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipEncoder {
    /// The encoder element.
    pub element: String,
}

/// The container a clip is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipContainer {
    /// WebM (VP8 video, Opus audio): `.webm`.
    WebM,
    /// Matroska (H.264 video, Opus audio): `.mkv`.
    Matroska,
}

impl ClipContainer {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            ClipContainer::WebM => "webm",
            ClipContainer::Matroska => "mkv",
        }
    }

    /// The GStreamer muxer.
    pub fn muxer(self) -> &'static str {
        match self {
            ClipContainer::WebM => "webmmux",
            ClipContainer::Matroska => "matroskamux",
        }
    }
}

/// The encoders [`ClipEncoder::new`] accepts.
pub const CLIP_ENCODERS: [&str; 4] = ["vp8enc", "openh264enc", "x264enc", "nvv4l2h264enc"];

impl Default for ClipEncoder {
    /// `vp8enc` (GStreamer's good plugins; present wherever avaction runs).
    fn default() -> Self {
        ClipEncoder {
            element: "vp8enc".into(),
        }
    }
}

impl ClipEncoder {
    /// One of [`CLIP_ENCODERS`]: `vp8enc` (WebM), `openh264enc`, `x264enc` or the Jetson
    /// hardware encoder `nvv4l2h264enc` (H.264 in Matroska).
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for any other name, listing the accepted ones.
    pub fn new(element: &str) -> Result<ClipEncoder> {
        if CLIP_ENCODERS.contains(&element) {
            Ok(ClipEncoder {
                element: element.into(),
            })
        } else {
            Err(err!(
                Config,
                "unknown clip encoder '{element}' (one of: {})",
                CLIP_ENCODERS.join(", ")
            ))
        }
    }

    /// The container its stream goes in.
    pub fn container(&self) -> ClipContainer {
        if self.element == "vp8enc" {
            ClipContainer::WebM
        } else {
            ClipContainer::Matroska
        }
    }

    /// Whether frames reach it in NVIDIA's device memory (`nvvidconv`) rather than
    /// through `videoconvert ! videoscale`.
    pub fn uses_nvmm(&self) -> bool {
        self.element.starts_with("nvv4l2")
    }

    /// The parser between the encoder and the muxer (`h264parse` for H.264).
    pub fn parser(&self) -> Option<&'static str> {
        (self.container() == ClipContainer::Matroska).then_some("h264parse")
    }

    /// Sets the encoder's properties for clips: real-time speed and a keyframe every
    /// `fps` frames (so a clip starts at most a second before its pre-roll).
    pub fn configure(&self, encoder: &gst::Element, fps: u32) {
        let fps = i64::from(fps);
        match self.element.as_str() {
            "vp8enc" => {
                set_number(encoder, "deadline", 1);
                set_number(encoder, "cpu-used", 8);
                set_number(encoder, "target-bitrate", 1_500_000);
                set_number(encoder, "keyframe-max-dist", fps);
                // No look-ahead: frames leave as they come, and no second of full-size
                // frames is held inside the encoder.
                set_number(encoder, "lag-in-frames", 0);
                set_number(encoder, "threads", 2);
            }
            "openh264enc" => {
                set_number(encoder, "gop-size", fps);
                set_number(encoder, "bitrate", 1_500_000);
            }
            "x264enc" => {
                set_number(encoder, "key-int-max", fps);
                set_number(encoder, "bitrate", 1500);
                let _ = crate::capture::video::set_enum_property(encoder, "tune", "zerolatency");
                let _ =
                    crate::capture::video::set_enum_property(encoder, "speed-preset", "ultrafast");
            }
            _ => {
                set_number(encoder, "iframeinterval", fps);
                set_number(encoder, "bitrate", 4_000_000);
                if encoder
                    .find_property("insert-sps-pps")
                    .is_some_and(|p| p.value_type() == bool::static_type())
                {
                    encoder.set_property("insert-sps-pps", true);
                }
            }
        }
    }
}

/// Sets an integer property whatever its integer type; a property the element lacks, or
/// a value out of its type's range, is left alone (GStreamer's setters panic on a wrong
/// type).
fn set_number(element: &gst::Element, name: &str, value: i64) {
    let Some(p) = element.find_property(name) else {
        return;
    };
    let t = p.value_type();
    let v: Option<gst::glib::Value> = if t == i32::static_type() {
        i32::try_from(value).ok().map(|v| v.to_value())
    } else if t == u32::static_type() {
        u32::try_from(value).ok().map(|v| v.to_value())
    } else if t == i64::static_type() {
        Some(value.to_value())
    } else if t == u64::static_type() {
        u64::try_from(value).ok().map(|v| v.to_value())
    } else {
        None
    };
    if let Some(v) = v {
        element.set_property_from_value(name, &v);
    }
}

/// Evidence clips on a video capture: the full-size frames are also encoded by
/// `encoder` (scaled down to at most `max_height` lines, aspect kept) into `tap`.
#[derive(Debug, Clone)]
pub struct ClipBranch {
    /// Where the encoded frames go.
    pub tap: std::sync::Arc<ClipTap>,
    /// The encoder.
    pub encoder: ClipEncoder,
    /// Largest height of the clip's picture (taller sources are scaled down).
    pub max_height: u32,
}

/// Counters of the tap.
#[derive(Debug, Default)]
struct TapCounters {
    evicted: AtomicU64,
}

/// An encoded frame in the ring: its bytes are the next `len` of [`Rings::bytes`].
#[derive(Debug)]
struct FrameEntry {
    t_ns: Nanos,
    keyframe: bool,
    len: usize,
    caps: gst::Caps,
}

/// An audio chunk in the ring: its samples are the next `len` of [`Rings::samples`].
#[derive(Debug)]
struct ChunkEntry {
    t_ns: Nanos,
    rate: u32,
    len: usize,
}

/// The media, in two contiguous rings (bytes and samples) with an index each. Kept
/// contiguous on purpose: a heap block per frame or chunk, living for the ring's span
/// between GStreamer's short-lived full-size frames, fragments the C heap they share.
/// With a 1080p source played at real time and 5 s + 5 s clips, resident memory
/// settled at 415 MB with one block per frame, chunk and prediction, at 236 MB with
/// these rings and the recorder's ([`crate::deliver::clips`]), against 129 MB without
/// clips. The rings only grow, by doubling, until they hold the span.
#[derive(Debug, Default)]
struct Rings {
    frames: VecDeque<FrameEntry>,
    bytes: VecDeque<u8>,
    chunks: VecDeque<ChunkEntry>,
    samples: VecDeque<f32>,
    newest_video: Option<Nanos>,
}

impl Rings {
    fn clear_video(&mut self) {
        self.frames.clear();
        self.bytes.clear();
    }

    /// Drops the oldest group of pictures (the front keyframe and its delta frames);
    /// returns the frames dropped.
    fn drop_oldest_group(&mut self) -> u64 {
        let mut dropped = 0;
        while let Some(f) = self.frames.front() {
            if dropped > 0 && f.keyframe {
                break;
            }
            let len = f.len.min(self.bytes.len());
            self.frames.pop_front();
            self.bytes.drain(..len);
            dropped += 1;
        }
        dropped
    }
}

/// The bounded rings of encoded video and audio; shared (`Arc`) between the capture, the
/// window stream and the clip recorder.
#[derive(Debug)]
pub struct ClipTap {
    rings: Mutex<Rings>,
    keep: Nanos,
    max_bytes: usize,
    counters: TapCounters,
}

impl ClipTap {
    /// Rings that keep the last `keep` of media, and at most `max_bytes` of encoded video
    /// (whole groups of pictures are evicted, oldest first, past either bound).
    pub fn new(keep: Nanos, max_bytes: usize) -> ClipTap {
        ClipTap {
            rings: Mutex::new(Rings::default()),
            keep,
            max_bytes: max_bytes.max(1),
            counters: TapCounters::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rings> {
        self.rings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a copy of an encoded frame's bytes. Frames before the first keyframe are
    /// useless and not kept.
    pub fn push_video(&self, frame: EncodedFrame) {
        let Ok(map) = frame.buffer.map_readable() else {
            return;
        };
        let mut r = self.lock();
        if r.frames.is_empty() && !frame.keyframe {
            return;
        }
        if r.newest_video.is_some_and(|t| frame.t_ns < t) {
            // A reopened source starts a new time base further on; an older time means
            // the stream went back: start over from this frame's group.
            r.clear_video();
            if !frame.keyframe {
                return;
            }
        }
        r.newest_video = Some(frame.t_ns);
        r.bytes.extend(map.as_slice());
        r.frames.push_back(FrameEntry {
            t_ns: frame.t_ns,
            keyframe: frame.keyframe,
            len: map.size(),
            caps: frame.caps,
        });
        let newest = frame.t_ns;
        loop {
            let too_old = r
                .frames
                .front()
                .is_some_and(|f| newest - f.t_ns > self.keep + Nanos::SECOND);
            if !(too_old || r.bytes.len() > self.max_bytes) || r.frames.len() <= 1 {
                break;
            }
            let dropped = r.drop_oldest_group();
            self.counters.evicted.fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// Keeps a copy of an audio chunk (not for real-time callbacks: it locks).
    pub fn push_audio(&self, chunk: &AudioChunk) {
        let mut r = self.lock();
        r.samples.extend(chunk.samples.iter());
        r.chunks.push_back(ChunkEntry {
            t_ns: chunk.t_ns,
            rate: chunk.rate,
            len: chunk.samples.len(),
        });
        while r
            .chunks
            .front()
            .is_some_and(|c| chunk.t_ns - c.t_ns > self.keep + Nanos::SECOND)
        {
            let len = r.chunks.pop_front().map_or(0, |c| c.len);
            let len = len.min(r.samples.len());
            r.samples.drain(..len);
        }
    }

    /// The time of the newest encoded frame.
    pub fn newest_video(&self) -> Option<Nanos> {
        self.lock().newest_video
    }

    /// Encoded frames evicted so far (never taken into a clip, or no longer needed).
    pub fn evicted(&self) -> u64 {
        self.counters.evicted.load(Ordering::Relaxed)
    }

    /// The media for `span`: video from the last keyframe at or before its start (the
    /// first keyframe after it when the ring starts later) to its end, audio from the
    /// first frame's time to the end. `None` when no frame of the span is kept.
    pub fn take(&self, span: TimeSpan) -> Option<ClipMedia> {
        let r = self.lock();
        let first = r
            .frames
            .iter()
            .rposition(|f| f.keyframe && f.t_ns <= span.start)
            .or_else(|| {
                r.frames
                    .iter()
                    .position(|f| f.keyframe && f.t_ns >= span.start)
            })?;
        let mut offset: usize = r.frames.iter().take(first).map(|f| f.len).sum();
        let mut video = Vec::new();
        for f in r
            .frames
            .iter()
            .skip(first)
            .take_while(|f| f.t_ns < span.end)
        {
            let bytes: Vec<u8> = r.bytes.range(offset..offset + f.len).copied().collect();
            offset += f.len;
            video.push(EncodedFrame {
                t_ns: f.t_ns,
                keyframe: f.keyframe,
                buffer: gst::Buffer::from_slice(bytes),
                caps: f.caps.clone(),
            });
        }
        let start = video.first()?.t_ns;
        // Audio no further than the video: where the source ended inside the span,
        // the clip ends with its last frame.
        let end = match video.as_slice() {
            [.., a, b] => span.end.min(b.t_ns + (b.t_ns - a.t_ns)),
            _ => span.end,
        };
        let (audio, audio_missing) = audio_span(&r, TimeSpan::new(start, end));
        Some(ClipMedia {
            video,
            audio,
            audio_missing,
        })
    }
}

/// The audio of `span` as one chunk, placed by time; silence where nothing arrived.
/// `None` when no chunk overlaps the span.
fn audio_span(r: &Rings, span: TimeSpan) -> (Option<AudioChunk>, usize) {
    let Some(rate) = r.chunks.front().map(|c| c.rate) else {
        return (None, 0);
    };
    let len = (span.len().as_secs_f64() * rate as f64).round().max(0.0) as usize;
    let mut samples = vec![0.0f32; len];
    let mut filled = vec![false; len];
    let mut any = false;
    let mut offset = 0;
    for c in &r.chunks {
        let from = offset;
        offset += c.len;
        if c.rate != rate {
            continue;
        }
        let at0 = ((c.t_ns - span.start).as_secs_f64() * rate as f64).round() as i64;
        for (i, s) in r.samples.range(from..from + c.len).enumerate() {
            let at = at0 + i as i64;
            if at >= 0 && (at as usize) < len {
                samples[at as usize] = *s;
                filled[at as usize] = true;
                any = true;
            }
        }
    }
    if !any {
        return (None, 0);
    }
    let missing = filled.iter().filter(|f| !**f).count();
    (
        Some(AudioChunk {
            t_ns: span.start,
            rate,
            samples,
        }),
        missing,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(t_ms: i64, keyframe: bool, bytes: usize) -> EncodedFrame {
        EncodedFrame {
            t_ns: Nanos::from_millis_f64(t_ms as f64),
            keyframe,
            buffer: gst::Buffer::from_mut_slice(vec![0u8; bytes]),
            caps: gst::Caps::new_empty_simple("video/x-vp8"),
        }
    }

    fn span(a_ms: i64, b_ms: i64) -> TimeSpan {
        TimeSpan::new(
            Nanos::from_millis_f64(a_ms as f64),
            Nanos::from_millis_f64(b_ms as f64),
        )
    }

    #[test]
    fn clips_start_at_the_keyframe_before_the_pre_roll() {
        gst::init().unwrap();
        let tap = ClipTap::new(Nanos::SECOND * 10, 1 << 20);
        tap.push_video(frame(0, false, 10)); // before any keyframe: not kept
        for i in 0..40 {
            tap.push_video(frame(100 + i * 100, i % 10 == 0, 10));
        }
        let media = tap.take(span(1500, 3000)).unwrap();
        assert_eq!(media.video[0].t_ns, Nanos::from_millis_f64(1100.0));
        assert!(media.video[0].keyframe);
        assert_eq!(
            media.video.last().unwrap().t_ns,
            Nanos::from_millis_f64(2900.0)
        );
        assert!(media.audio.is_none());
    }

    #[test]
    fn eviction_keeps_whole_groups_within_the_bounds() {
        gst::init().unwrap();
        let tap = ClipTap::new(Nanos::SECOND, 1000);
        for i in 0..100 {
            tap.push_video(frame(i * 100, i % 5 == 0, 50));
        }
        let media = tap.take(span(0, 100_000)).unwrap();
        assert!(media.video[0].keyframe);
        assert!(media.video.len() * 50 <= 1000);
        assert!(media.video.iter().all(|f| f.buffer.size() == 50));
        assert!(tap.evicted() > 0);
        // Byte bound: 1000 bytes hold at most 20 frames of 50 bytes.
        let tight = ClipTap::new(Nanos::SECOND * 100, 1000);
        for i in 0..100 {
            tight.push_video(frame(i * 100, i % 5 == 0, 50));
        }
        assert!(tight.take(span(0, 100_000)).unwrap().video.len() <= 20);
    }

    #[test]
    fn audio_is_placed_by_time_with_silence_in_gaps() {
        gst::init().unwrap();
        let tap = ClipTap::new(Nanos::SECOND * 10, 1 << 20);
        tap.push_video(frame(0, true, 10));
        tap.push_video(frame(500, false, 10));
        let chunk = |t_ms: i64, n: usize| AudioChunk {
            t_ns: Nanos::from_millis_f64(t_ms as f64),
            rate: 1000,
            samples: vec![0.5; n],
        };
        tap.push_audio(&chunk(0, 200));
        tap.push_audio(&chunk(400, 200)); // 200..400 ms missing
        let media = tap.take(span(0, 1000)).unwrap();
        let audio = media.audio.unwrap();
        assert_eq!(audio.samples.len(), 1000);
        assert_eq!(audio.samples[100], 0.5);
        assert_eq!(audio.samples[300], 0.0);
        assert_eq!(audio.samples[500], 0.5);
        assert_eq!(media.audio_missing, 1000 - 400);
    }

    #[test]
    fn encoders_are_checked_by_name() {
        assert_eq!(ClipEncoder::default().container().extension(), "webm");
        assert_eq!(
            ClipEncoder::new("openh264enc").unwrap().parser(),
            Some("h264parse")
        );
        let e = ClipEncoder::new("nvh264enc").unwrap_err();
        assert!(e.to_string().contains("vp8enc"), "{e}");
    }
}
