//! Delivery: the bus thread, one puller thread per appsink, timestamps on the runtime
//! [`Timeline`], sending [`CaptureEvent`]s (blocking or live) and end-of-stream checks.

use super::pads::describe_gst_error;
use crate::capture::clip::{ClipTap, EncodedFrame};
use crate::capture::downmix::{self, Downmix, Speaker};
use crate::capture::preview::PreviewTap;
use crate::capture::{CaptureEvent, CaptureStats, SourceWatch};
use crate::clock::{AudioChunk, Nanos, Timeline, VideoFrame};
use crate::{err, Error, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest single wait of a puller or bus thread, so that stop requests are seen quickly.
const POLL_INTERVAL_MS: u64 = 100;

/// Flags shared by the capture threads.
#[derive(Debug, Default)]
pub(super) struct Flags {
    /// Set by `stop()`: every thread leaves its loop.
    pub(super) stop: AtomicBool,
    /// Set once a failure was reported (or the receiver is gone): nothing more is sent.
    pub(super) halted: AtomicBool,
    /// Branches (appsinks) that have not reached end of stream yet.
    pub(super) branches_left: AtomicUsize,
    /// Time of the last frame delivered plus one (0: none yet); paces file audio.
    pub(super) video_progress: AtomicI64,
    /// The video branch has ended: audio no longer waits for it.
    pub(super) video_done: AtomicBool,
    /// Time of the end of the last audio buffer delivered (0: none yet).
    pub(super) audio_end: AtomicI64,
}

/// Files read as fast as possible: how far audio may run ahead of video. Without
/// this bound, decodebin's multiqueue lets the cheaper stream race ahead by tens of
/// seconds while frontends work on video, and the window's audio is gone.
const MAX_AUDIO_LEAD_NS: Nanos = Nanos::SECOND;

/// Where timestamps come from, decided at start.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stamping {
    /// Running time of the buffer (files decoded as fast as possible).
    RunningTime,
    /// `base_time + running_time - offset`: pipeline clock time mapped to the timeline.
    Clock { base_time: Nanos, offset: Nanos },
}

/// What a puller needs, besides its appsink.
#[derive(Clone)]
pub(super) struct PullContext {
    pub(super) tx: SyncSender<CaptureEvent>,
    pub(super) stats: Arc<CaptureStats>,
    pub(super) flags: Arc<Flags>,
    pub(super) stamping: Stamping,
    /// Live delivery: `try_send` and count drops; otherwise block until sent.
    pub(super) live_delivery: bool,
    pub(super) source_name: String,
    /// Declared media duration, to tell a truncated file at end of stream.
    pub(super) duration: Option<Nanos>,
    /// Liveness for the supervisor; a supervised source reports failures there only.
    pub(super) watch: Arc<SourceWatch>,
    /// A source that runs on its own clock (its end of stream is a loss).
    pub(super) live: bool,
}

/// A GStreamer clock or running time (unsigned nanoseconds) on our signed timeline.
pub(super) fn gst_nanos(ns: u64) -> Nanos {
    Nanos::from_nanos(i64::try_from(ns).unwrap_or(i64::MAX))
}

/// The offset `clock time - timeline time`, measured with the tightest of a few brackets.
pub(super) fn measure_clock_offset(clock: &gst::Clock, timeline: &Timeline) -> Nanos {
    let mut best: Option<(Nanos, Nanos)> = None; // (bracket width, offset)
    for _ in 0..5 {
        let before = timeline.now();
        let clock_now = gst_nanos(clock.time().nseconds());
        let after = timeline.now();
        let width = after - before;
        let offset = clock_now - (before + width / 2);
        if best.is_none_or(|(w, _)| width < w) {
            best = Some((width, offset));
        }
    }
    best.map_or(Nanos::ZERO, |(_, offset)| offset)
}

pub(super) fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|e| err!(Video, "cannot start thread {name}").caused_by(e))
}

/// Watches the bus: errors become one `Failed` event (and halt delivery); warnings are logged.
pub(super) fn bus_loop(bus: gst::Bus, ctx: PullContext) {
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
                let started = ctx.flags.video_progress.load(Ordering::SeqCst) > 0;
                if !ctx.live && !ctx.watch.supervised() && started {
                    // A file that fails mid-stream was processed up to there: it ends
                    // early (complete: false), it does not fail the run.
                    log::warn!("{error}; ending the file here");
                    if !ctx.flags.halted.swap(true, Ordering::SeqCst) {
                        deliver(&ctx, CaptureEvent::Cut(error.to_string()), false, true);
                    }
                } else {
                    fail(&ctx, error);
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

/// Marks one branch finished; the last one sends `EndOfStream`, or `Cut` for a file
/// that ends well before its declared duration (once). A live source that ends has
/// been lost.
fn finish_branch(ctx: &PullContext, video_end: Option<Nanos>) {
    if ctx.flags.branches_left.fetch_sub(1, Ordering::SeqCst) != 1
        || ctx.flags.halted.load(Ordering::SeqCst)
    {
        return;
    }
    if ctx.live {
        fail(
            ctx,
            err!(Video, "{}: the live stream ended", ctx.source_name),
        );
        return;
    }
    log::info!("{}: end of stream", ctx.source_name);
    let audio_end = Nanos::from_nanos(ctx.flags.audio_end.load(Ordering::SeqCst));
    let end = video_end.map_or(audio_end, |v| v.max(audio_end));
    match truncation(ctx, end) {
        Some(reason) => {
            log::warn!("{}: {reason}", ctx.source_name);
            deliver(ctx, CaptureEvent::Cut(reason), false, false);
        }
        None => {
            deliver(ctx, CaptureEvent::EndOfStream, false, false);
        }
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
    let running = gst_nanos(running.nseconds());
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
pub(super) fn video_loop(sink: gst_app::AppSink, ctx: PullContext, fps: u32, size: (u32, u32)) {
    let period = 1e9 / fps as f64;
    let mut info: Option<(gst::Caps, gst_video::VideoInfo)> = None;
    let mut previous: Option<Nanos> = None;
    let mut last_end: Option<Nanos> = None;
    while !ctx.flags.stop.load(Ordering::SeqCst) && !ctx.flags.halted.load(Ordering::SeqCst) {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(POLL_INTERVAL_MS))
        else {
            if sink.is_eos() && !ctx.flags.stop.load(Ordering::SeqCst) {
                ctx.flags.video_done.store(true, Ordering::SeqCst);
                finish_branch(&ctx, last_end);
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
                let periods = ((t_ns - prev).as_nanos() as f64 / period).round() as i64;
                if periods > 1 {
                    CaptureStats::add(&ctx.stats.frames_dropped, (periods - 1) as u64);
                }
            }
        }
        previous = Some(t_ns);
        last_end = Some(t_ns + Nanos::from_nanos(period as i64));
        let rgb = match copy_rgb(&sample, vinfo) {
            Ok(rgb) => rgb,
            Err(e) => {
                fail(&ctx, err!(Video, "{}: {e}", ctx.source_name));
                return;
            }
        };
        ctx.watch.frame(&rgb);
        let frame = VideoFrame {
            t_ns,
            width: size.0,
            height: size.1,
            rgb,
        };
        if deliver(&ctx, CaptureEvent::Frame(frame), ctx.live_delivery, false) {
            ctx.flags
                .video_progress
                .store(t_ns.as_nanos().saturating_add(1), Ordering::SeqCst);
            CaptureStats::add(&ctx.stats.frames, 1);
        } else if ctx.live_delivery && !ctx.flags.halted.load(Ordering::SeqCst) {
            CaptureStats::add(&ctx.stats.frames_dropped, 1);
        }
    }
}

/// Hands each sample of a side branch's appsink (clips, live view) to `take` until end
/// of stream or stop. A side branch neither ends nor fails the capture.
fn side_loop(sink: &gst_app::AppSink, ctx: &PullContext, mut take: impl FnMut(gst::Sample)) {
    while !ctx.flags.stop.load(Ordering::SeqCst) {
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(POLL_INTERVAL_MS)) {
            Some(sample) => take(sample),
            None if sink.is_eos() => return,
            None => {}
        }
    }
}

/// Pulls encoded frames from the clip appsink into the clip tap.
pub(super) fn clip_loop(sink: gst_app::AppSink, ctx: PullContext, tap: Arc<ClipTap>) {
    side_loop(&sink, &ctx, |sample| {
        let (Some(caps), Some(buffer)) = (sample.caps_owned(), sample.buffer_owned()) else {
            return;
        };
        let Some(t_ns) = buffer_time(&sample, &buffer, ctx.stamping) else {
            return;
        };
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        tap.push_video(EncodedFrame {
            t_ns,
            keyframe,
            buffer,
            caps,
        });
    });
}

/// Pulls JPEG images from the live view's appsink into its tap.
pub(super) fn preview_loop(sink: gst_app::AppSink, ctx: PullContext, tap: Arc<PreviewTap>) {
    side_loop(&sink, &ctx, |sample| {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let t_ns = buffer_time(&sample, buffer, ctx.stamping).unwrap_or(Nanos::ZERO);
        if let Ok(map) = buffer.map_readable() {
            tap.put(t_ns, map.as_slice());
        }
    });
}

/// Pulls mono f32 audio from the audio appsink until end of stream, failure or stop.
pub(super) fn audio_loop(sink: gst_app::AppSink, ctx: PullContext, rate: u32, mix: Downmix) {
    // The weights of the current layout: (channels, channel-mask) -> weights.
    let mut layout: Option<((usize, u64), Vec<f32>)> = None;
    let mut interleaved: Vec<f32> = Vec::new();
    while !ctx.flags.stop.load(Ordering::SeqCst) && !ctx.flags.halted.load(Ordering::SeqCst) {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(POLL_INTERVAL_MS))
        else {
            if sink.is_eos() && !ctx.flags.stop.load(Ordering::SeqCst) {
                finish_branch(&ctx, None);
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
        let key = channel_layout(&sample);
        if layout.as_ref().map(|(k, _)| *k) != Some(key) {
            let (channels, mask) = key;
            let speakers = Speaker::from_gst_mask(mask, channels)
                .unwrap_or_else(|| Speaker::default_layout(channels));
            log::info!(
                "{}: audio track of {channels} channel(s) {speakers:?}, mixed to mono by `{}`",
                ctx.source_name,
                mix.name()
            );
            layout = Some((key, mix.weights(&speakers)));
        }
        let weights = layout.as_ref().map_or(&[1.0f32][..], |(_, w)| &w[..]);
        let samples = match buffer.map_readable() {
            Ok(map) => {
                interleaved.clear();
                interleaved.extend(
                    map.as_slice()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
                let mut mono = Vec::with_capacity(interleaved.len() / weights.len().max(1));
                downmix::mix(&interleaved, weights, &mut mono);
                mono
            }
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
        ctx.watch.audio(&samples);
        let end = t_ns + Nanos::from_count(n as i64, u64::from(rate.max(1)));
        ctx.flags
            .audio_end
            .fetch_max(end.as_nanos(), Ordering::SeqCst);
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

/// The channel count and GStreamer channel mask of an audio sample's caps (`(1, 0)` when
/// the caps do not say).
fn channel_layout(sample: &gst::Sample) -> (usize, u64) {
    let Some(s) = sample.caps().and_then(|c| c.structure(0)) else {
        return (1, 0);
    };
    let channels = s.get::<i32>("channels").unwrap_or(1).max(1) as usize;
    let mask = s
        .get::<gst::Bitmask>("channel-mask")
        .map(|m| m.0)
        .unwrap_or(0);
    (channels, mask)
}

/// Files: holds audio at `t_ns` until video has caught up to within
/// [`MAX_AUDIO_LEAD_NS`] (or ended, or the capture stops).
fn wait_for_video(ctx: &PullContext, t_ns: Nanos) {
    let f = &ctx.flags;
    loop {
        // the last video frame's time plus one ns, 0 before the first frame
        let progress = f.video_progress.load(Ordering::SeqCst);
        let caught_up = progress > 0 && t_ns <= Nanos::from_nanos(progress - 1) + MAX_AUDIO_LEAD_NS;
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

/// Reports a failure once and halts delivery: to the supervisor for a supervised
/// source (which reopens it), as a `Failed` event otherwise (which ends the run).
fn fail(ctx: &PullContext, error: Error) {
    if ctx.flags.halted.swap(true, Ordering::SeqCst) {
        return;
    }
    if ctx.watch.supervised() {
        log::warn!("{error}");
        ctx.watch.lose(error);
    } else {
        log::error!("{error}");
        deliver(ctx, CaptureEvent::Failed(error), false, true);
    }
}

/// Why a file that ended at `end` (the later of its tracks) is truncated, if it is: it
/// ended well before its declared duration (e.g. a Matroska file cut short, which
/// GStreamer plays up to the cut and then ends normally). A video track shorter than
/// the audio track is not a truncation: the later track counts.
fn truncation(ctx: &PullContext, end: Nanos) -> Option<String> {
    let duration = ctx.duration?;
    if !matches!(ctx.stamping, Stamping::RunningTime) || end <= Nanos::ZERO {
        return None;
    }
    let missing = duration - end;
    (missing > Nanos::SECOND / 2 && missing > duration / 10).then(|| {
        format!(
            "the media ended at {:.2} s but the container declares {:.2} s: the file is probably truncated",
            end.as_secs_f64(),
            duration.as_secs_f64()
        )
    })
}
