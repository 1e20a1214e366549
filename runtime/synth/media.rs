//! Writes a scene as a media file with a video and an audio track through GStreamer:
//! two appsrcs -> converters -> encoders -> muxer -> filesink, fed in time order
//! from reusable render buffers with bounded queues, and a bus watched for errors.

use super::Scene;
use crate::Error;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Audio block pushed per buffer, in milliseconds.
const AUDIO_BLOCK_MS: u64 = 20;
/// Raw video frames the video appsrc may hold before we wait.
const VIDEO_QUEUE_FRAMES: u64 = 4;
/// Longest time without progress (a full queue that does not drain) before giving up.
const STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for the muxer to finish after end-of-stream.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Which elements write one container format, and the encoder settings.
///
/// The libav video encoders (`avenc_*`) of gst-libav 1.22.0 on FFmpeg 6+ stamp
/// their output with offset or invalid timestamps, which muxers then write as
/// garbage; where one is needed (MPEG-4 part 2 for .mp4: the only MP4-compatible
/// video encoder in base/good/libav here) it runs without B-frames, so it emits
/// exactly one buffer per frame in order, and its output is restamped.
struct Recipe {
    container: &'static str,
    muxer: &'static str,
    video_encoder: &'static str,
    video_options: &'static [(&'static str, &'static str)],
    /// Raw format forced before the encoder (`None`: let the encoder choose).
    raw_format: Option<&'static str>,
    /// Whether encoded buffer `k` must be restamped as frame `k`.
    restamp_video: bool,
    audio_encoder: &'static str,
    audio_options: &'static [(&'static str, &'static str)],
}

/// Motion JPEG at quality 95: intra-only, fast, near-transparent for flat shapes.
const JPEG_OPTIONS: &[(&str, &str)] = &[("quality", "90")];
/// MPEG-4 part 2 at constant quantizer 2 (near-transparent here), no B-frames.
const MPEG4_OPTIONS: &[(&str, &str)] = &[
    ("pass", "quant"),
    ("quantizer", "2"),
    ("max-bframes", "0"),
    ("gop-size", "25"),
];
/// VP9 at a constant quality, real-time speed, keyframe every 2 s at most.
const VP9_OPTIONS: &[(&str, &str)] = &[
    ("end-usage", "cq"),
    ("cq-level", "12"),
    ("target-bitrate", "3000000"),
    ("min-quantizer", "4"),
    ("max-quantizer", "20"),
    ("deadline", "1"),
    ("cpu-used", "8"),
    ("keyframe-max-dist", "50"),
    ("lag-in-frames", "0"),
];
/// AAC bit rate in bits per second (mono).
const AAC_OPTIONS: &[(&str, &str)] = &[("bitrate", "160000")];
/// Vorbis at high quality.
const VORBIS_OPTIONS: &[(&str, &str)] = &[("quality", "0.8")];

/// Picks the elements from the file extension (case-insensitive).
fn recipe_for(path: &Path) -> crate::Result<Recipe> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let recipe = match extension.as_str() {
        "mkv" => Recipe {
            container: "Matroska",
            muxer: "matroskamux",
            video_encoder: "jpegenc",
            video_options: JPEG_OPTIONS,
            raw_format: None,
            restamp_video: false,
            audio_encoder: "flacenc",
            audio_options: &[],
        },
        "mp4" | "m4v" => Recipe {
            container: "MP4",
            muxer: "mp4mux",
            video_encoder: "avenc_mpeg4",
            video_options: MPEG4_OPTIONS,
            raw_format: Some("I420"),
            restamp_video: true,
            audio_encoder: "avenc_aac",
            audio_options: AAC_OPTIONS,
        },
        "mov" => Recipe {
            container: "QuickTime",
            muxer: "qtmux",
            video_encoder: "jpegenc",
            video_options: JPEG_OPTIONS,
            raw_format: None,
            restamp_video: false,
            audio_encoder: "avenc_aac",
            audio_options: AAC_OPTIONS,
        },
        "webm" => Recipe {
            container: "WebM",
            muxer: "webmmux",
            video_encoder: "vp9enc",
            video_options: VP9_OPTIONS,
            raw_format: Some("I420"),
            restamp_video: false,
            audio_encoder: "vorbisenc",
            audio_options: VORBIS_OPTIONS,
        },
        _ => {
            return Err(crate::err!(
                Config,
                "{}: cannot pick a container from extension {extension:?}; use .mkv, .mp4, \
                 .m4v, .mov or .webm",
                path.display()
            ))
        }
    };
    Ok(recipe)
}

/// Makes a GStreamer element, naming the plugin package when it is missing.
fn make(factory: &str, path: &Path) -> crate::Result<gst::Element> {
    gst::ElementFactory::make(factory).build().map_err(|_| {
        let package = match factory {
            f if f.starts_with("avenc_") => "gst-libav",
            "flacenc" | "jpegenc" | "vp9enc" | "matroskamux" | "webmmux" | "mp4mux" | "qtmux" => {
                "gst-plugins-good"
            }
            _ => "gst-plugins-base",
        };
        crate::err!(
            Unavailable,
            "{}: GStreamer element '{factory}' is not installed (it comes with {package})",
            path.display()
        )
    })
}

/// Sets an encoder option from its string form; a missing option or a value the
/// element rejects is logged and skipped (never a panic), since options vary between
/// plugin versions.
fn set_option(element: &gst::Element, name: &str, value: &str) {
    let Some(spec) = element.find_property(name) else {
        log::warn!(
            "synth: {} has no property '{name}'; left at default",
            element.name()
        );
        return;
    };
    match gst::glib::Value::deserialize(value, spec.value_type()) {
        Ok(parsed) if spec.flags().contains(gst::glib::ParamFlags::WRITABLE) => {
            element.set_property_from_value(name, &parsed)
        }
        _ => log::warn!(
            "synth: cannot set {}.{name} = {value}; left at default",
            element.name()
        ),
    }
}

/// Stamps the `k`-th buffer leaving `encoder` with frame `k`'s time (see [`Recipe`]),
/// offset by the start of the segment the encoder announced (it shifts segments by
/// 1000 h to make room for negative decode times).
fn restamp_frames(encoder: &gst::Element, fps: u32, path: &Path) -> crate::Result<()> {
    let pad = encoder.static_pad("src").ok_or_else(|| {
        crate::err!(
            Video,
            "{}: {} has no src pad",
            path.display(),
            encoder.name()
        )
    })?;
    let next_frame = AtomicU64::new(0);
    let segment_start = AtomicU64::new(0);
    let mask = gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM;
    pad.add_probe(mask, move |_, info| {
        if let Some(gst::PadProbeData::Event(event)) = &info.data {
            if let gst::EventView::Segment(segment) = event.view() {
                let start = segment
                    .segment()
                    .downcast_ref::<gst::ClockTime>()
                    .and_then(|s| s.start())
                    .map_or(0, |t| t.nseconds());
                segment_start.store(start, Ordering::Relaxed);
            }
        }
        if let Some(buffer) = info.buffer_mut() {
            let index = next_frame.fetch_add(1, Ordering::Relaxed);
            let offset = gst::ClockTime::from_nseconds(segment_start.load(Ordering::Relaxed));
            let pts = nanos(index, fps);
            let buffer = buffer.make_mut();
            buffer.set_pts(offset + pts);
            buffer.set_dts(offset + pts);
            buffer.set_duration(nanos(index + 1, fps) - pts);
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// Sets the pipeline to NULL when dropped, on every exit path.
struct StopOnDrop(gst::Pipeline);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

/// Nanoseconds of `index` units at `per_second` units per second (no overflow).
fn nanos(index: u64, per_second: u32) -> gst::ClockTime {
    let ns = u128::from(index) * 1_000_000_000 / u128::from(per_second.max(1));
    gst::ClockTime::from_nseconds(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// Turns an error or early end-of-stream message on the bus into an error.
fn bus_failure(message: &gst::Message, path: &Path) -> Error {
    match message.view() {
        gst::MessageView::Error(e) => {
            let source = message
                .src()
                .map(|s| s.path_string().to_string())
                .unwrap_or_else(|| "pipeline".into());
            let debug = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
            crate::err!(
                Video,
                "{}: GStreamer error from {source}: {}{debug}",
                path.display(),
                e.error()
            )
        }
        _ => crate::err!(
            Video,
            "{}: the pipeline ended before all data was written",
            path.display()
        ),
    }
}

/// Lets a muxer queue hold as much as the other stream's encoder latency needs:
/// no time or buffer limit, a 64 MiB byte bound (encoded data of these scenes is small).
fn unbounded_by_time(queue: &gst::Element) {
    queue.set_property("max-size-time", 0u64);
    queue.set_property("max-size-buffers", 0u32);
    queue.set_property("max-size-bytes", 64u32 << 20);
}

/// Fails if an error is waiting on the bus (does not block).
fn check_bus(bus: &gst::Bus, path: &Path) -> crate::Result<()> {
    match bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos]) {
        Some(message) => Err(bus_failure(&message, path)),
        None => Ok(()),
    }
}

/// Waits until `source` holds fewer than `limit` bytes, watching the bus; fails on a
/// pipeline error or when nothing drains for [`STALL_TIMEOUT`].
fn wait_for_room(
    source: &gst_app::AppSrc,
    limit: u64,
    bus: &gst::Bus,
    path: &Path,
) -> crate::Result<()> {
    let started = Instant::now();
    while source.current_level_bytes() >= limit {
        let wait = gst::ClockTime::from_mseconds(2);
        if let Some(message) =
            bus.timed_pop_filtered(wait, &[gst::MessageType::Error, gst::MessageType::Eos])
        {
            return Err(bus_failure(&message, path));
        }
        if started.elapsed() > STALL_TIMEOUT {
            return Err(crate::err!(
                Video,
                "{}: the encoder made no progress for {} s (queue of {} stays full)",
                path.display(),
                STALL_TIMEOUT.as_secs(),
                source.name()
            ));
        }
    }
    Ok(())
}

/// Pushes one buffer, mapping a refused push to an error naming the stream.
fn push(
    source: &gst_app::AppSrc,
    buffer: gst::Buffer,
    bus: &gst::Bus,
    path: &Path,
) -> crate::Result<()> {
    source.push_buffer(buffer).map_err(|flow| {
        // A refused push usually follows an error posted on the bus: report that.
        match bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(200),
            &[gst::MessageType::Error],
        ) {
            Some(message) => bus_failure(&message, path),
            None => crate::err!(
                Video,
                "{}: {} refused a buffer: {flow:?}",
                path.display(),
                source.name()
            ),
        }
    })?;
    Ok(())
}

/// A gst buffer of `bytes` bytes filled by `fill`, stamped with `pts` and `duration`.
fn stamped_buffer(
    bytes: usize,
    pts: gst::ClockTime,
    duration: gst::ClockTime,
    path: &Path,
    fill: impl FnOnce(&mut [u8]),
) -> crate::Result<gst::Buffer> {
    let failed = || {
        crate::err!(
            Video,
            "{}: cannot allocate a {bytes}-byte buffer",
            path.display()
        )
    };
    let mut buffer = gst::Buffer::with_size(bytes).map_err(|_| failed())?;
    {
        let buffer = buffer.get_mut().ok_or_else(failed)?;
        // Raw media: decode time equals presentation time (mp4mux needs a DTS).
        buffer.set_pts(pts);
        buffer.set_dts(pts);
        buffer.set_duration(duration);
        let mut map = buffer.map_writable().map_err(|_| failed())?;
        fill(map.as_mut_slice());
    }
    Ok(buffer)
}

/// Writes the scene as a media file with a video and an audio track through
/// GStreamer. The container comes from the extension: `.mkv` (Motion JPEG at
/// quality 95 + FLAC), `.mp4`/`.m4v` (MPEG-4 part 2 at quantizer 2 + AAC), `.mov`
/// (Motion JPEG + AAC) or `.webm` (VP9 + Vorbis). Memory stays bounded: frames and audio blocks are
/// rendered into reusable buffers and the appsrc queues are kept short.
///
/// # Errors
/// [`Config`](crate::ErrorKind::Config) for an extension other than `.mkv`, `.mp4` or
/// `.webm`; [`Io`](crate::ErrorKind::Io) when the file cannot be written;
/// [`Unavailable`](crate::ErrorKind::Unavailable) when an encoder plugin is missing.
pub fn write_media(scene: &Scene, path: &Path) -> crate::Result<()> {
    let mut file_opened = false;
    let result = write_media_inner(scene, path, &mut file_opened);
    if result.is_err() && file_opened {
        // Do not leave a truncated file that looks like a valid one. (A file that
        // was never opened, e.g. on a bad extension, is left alone.)
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Generates the scene of `config` and writes it to `path` ([`write_media`]): the one
/// way tests, benches, the demo and `avaction features` make a media file of a scene.
/// Returns the scene, whose [`timeline`](Scene::timeline) is the ground truth.
///
/// # Errors
/// An invalid configuration ([`Scene::generate`]) or a file that cannot be written
/// ([`write_media`]).
pub fn render_to_file(config: &super::SceneConfig, path: &Path) -> crate::Result<Scene> {
    let scene = Scene::generate(config)?;
    write_media(&scene, path)?;
    Ok(scene)
}

/// Does the work of [`write_media`]; sets `file_opened` once the sink may have
/// created or truncated the file.
fn write_media_inner(scene: &Scene, path: &Path, file_opened: &mut bool) -> crate::Result<()> {
    let recipe = recipe_for(path)?;
    let location = path
        .to_str()
        .ok_or_else(|| crate::err!(Config, "{}: the path is not valid UTF-8", path.display()))?;
    gst::init()
        .map_err(|e| crate::err!(Unavailable, "cannot initialise GStreamer").caused_by(e))?;
    let cfg = scene.config();
    let width = cfg.width as usize;
    let height = cfg.height as usize;
    // GStreamer's packed RGB rows are padded to a multiple of 4 bytes.
    let stride = (width * 3 + 3) & !3;
    let frame_bytes = stride * height;

    let video_caps = gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .field("width", cfg.width as i32)
        .field("height", cfg.height as i32)
        .field("framerate", gst::Fraction::new(cfg.fps as i32, 1))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    let audio_caps = gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("layout", "interleaved")
        .field("rate", cfg.audio_rate as i32)
        .field("channels", 1i32)
        .build();
    let video_limit = frame_bytes as u64 * VIDEO_QUEUE_FRAMES;
    let audio_limit = u64::from(cfg.audio_rate); // a quarter second of f32 samples
    let video_source = gst_app::AppSrc::builder()
        .name("synth_video")
        .caps(&video_caps)
        .format(gst::Format::Time)
        .is_live(false)
        .block(false)
        .max_bytes(video_limit)
        .build();
    let audio_source = gst_app::AppSrc::builder()
        .name("synth_audio")
        .caps(&audio_caps)
        .format(gst::Format::Time)
        .is_live(false)
        .block(false)
        .max_bytes(audio_limit)
        .build();

    let video_convert = make("videoconvert", path)?;
    // VP9 would otherwise pick 4:4:4 (profile 1), which many decoders lack.
    let video_format = make("capsfilter", path)?;
    if let Some(format) = recipe.raw_format {
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", format)
            .build();
        video_format.set_property("caps", caps);
    }
    let video_encoder = make(recipe.video_encoder, path)?;
    for (name, value) in recipe.video_options {
        set_option(&video_encoder, name, value);
    }
    if recipe.restamp_video {
        restamp_frames(&video_encoder, cfg.fps, path)?;
    }
    let video_queue = make("queue", path)?;
    unbounded_by_time(&video_queue);
    let audio_convert = make("audioconvert", path)?;
    let audio_resample = make("audioresample", path)?;
    let audio_encoder = make(recipe.audio_encoder, path)?;
    for (name, value) in recipe.audio_options {
        set_option(&audio_encoder, name, value);
    }
    let audio_queue = make("queue", path)?;
    unbounded_by_time(&audio_queue);
    let muxer = make(recipe.muxer, path)?;
    let sink = make("filesink", path)?;
    sink.set_property("location", location);

    let pipeline = gst::Pipeline::new();
    let guard = StopOnDrop(pipeline.clone());
    let link_failed = |what: &str| {
        crate::err!(
            Video,
            "{}: cannot link the {what} branch for {} ({} -> {})",
            path.display(),
            recipe.container,
            recipe.video_encoder,
            recipe.muxer
        )
    };
    pipeline
        .add_many([
            video_source.upcast_ref(),
            &video_convert,
            &video_format,
            &video_encoder,
            &video_queue,
            audio_source.upcast_ref(),
            &audio_convert,
            &audio_resample,
            &audio_encoder,
            &audio_queue,
            &muxer,
            &sink,
        ])
        .map_err(|_| link_failed("whole"))?;
    gst::Element::link_many([
        video_source.upcast_ref(),
        &video_convert,
        &video_format,
        &video_encoder,
        &video_queue,
        &muxer,
        &sink,
    ])
    .map_err(|_| link_failed("video"))?;
    gst::Element::link_many([
        audio_source.upcast_ref(),
        &audio_convert,
        &audio_resample,
        &audio_encoder,
        &audio_queue,
        &muxer,
    ])
    .map_err(|_| link_failed("audio"))?;

    let bus = pipeline
        .bus()
        .ok_or_else(|| crate::err!(Video, "{}: the pipeline has no bus", path.display()))?;
    *file_opened = true;
    if pipeline.set_state(gst::State::Playing).is_err() {
        return Err(
            match bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(500),
                &[gst::MessageType::Error],
            ) {
                Some(message) => bus_failure(&message, path),
                None => crate::err!(Video, "{}: the pipeline refused to start", path.display()),
            },
        );
    }

    let mut frame = vec![0u8; cfg.frame_bytes()];
    let block_samples = (u64::from(cfg.audio_rate) * AUDIO_BLOCK_MS / 1000).max(1);
    let mut audio = vec![0.0f32; block_samples as usize];
    let total_samples = scene.num_audio_samples();
    let mut next_sample = 0u64;
    let mut push_audio_until = |until: gst::ClockTime| -> crate::Result<()> {
        while next_sample < total_samples && nanos(next_sample, cfg.audio_rate) < until {
            let count = (total_samples - next_sample).min(block_samples);
            let block = &mut audio[..count as usize];
            scene.render_audio(next_sample, block);
            let pts = nanos(next_sample, cfg.audio_rate);
            let end = nanos(next_sample + count, cfg.audio_rate);
            let buffer = stamped_buffer(block.len() * 4, pts, end - pts, path, |bytes| {
                for (out, sample) in bytes.chunks_exact_mut(4).zip(block.iter()) {
                    out.copy_from_slice(&sample.to_le_bytes());
                }
            })?;
            wait_for_room(&audio_source, audio_limit, &bus, path)?;
            push(&audio_source, buffer, &bus, path)?;
            next_sample += count;
        }
        Ok(())
    };

    for index in 0..scene.num_frames() {
        let pts = nanos(index, cfg.fps);
        let end = nanos(index + 1, cfg.fps);
        // Audio leads video slightly so the muxer never waits on audio.
        push_audio_until(end)?;
        scene.render_frame(index, &mut frame);
        let buffer = stamped_buffer(frame_bytes, pts, end - pts, path, |bytes| {
            for (out_row, in_row) in bytes
                .chunks_exact_mut(stride)
                .zip(frame.chunks_exact(width * 3))
            {
                out_row[..width * 3].copy_from_slice(in_row);
            }
        })?;
        check_bus(&bus, path)?;
        wait_for_room(&video_source, video_limit, &bus, path)?;
        push(&video_source, buffer, &bus, path)?;
    }
    push_audio_until(gst::ClockTime::MAX)?;
    let eos_failed = |_| crate::err!(Video, "{}: cannot send end-of-stream", path.display());
    video_source.end_of_stream().map_err(eos_failed)?;
    audio_source.end_of_stream().map_err(eos_failed)?;

    let started = Instant::now();
    loop {
        let left = FINISH_TIMEOUT.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(crate::err!(
                Video,
                "{}: the muxer did not finish within {} s after end-of-stream",
                path.display(),
                FINISH_TIMEOUT.as_secs()
            ));
        }
        let wait = gst::ClockTime::from_nseconds(left.as_nanos() as u64);
        match bus.timed_pop_filtered(wait, &[gst::MessageType::Error, gst::MessageType::Eos]) {
            Some(message) => match message.view() {
                gst::MessageView::Eos(_) => break,
                _ => return Err(bus_failure(&message, path)),
            },
            None => continue,
        }
    }
    drop(guard);
    log::debug!(
        "synth: wrote {} ({} frames, {} samples, {})",
        path.display(),
        scene.num_frames(),
        total_samples,
        recipe.container
    );
    Ok(())
}
