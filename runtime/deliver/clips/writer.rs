//! Writes a clip's media as one playable file: the encoded frames as they are (no
//! re-encoding), the audio encoded to Opus, muxed into WebM (VP8) or Matroska (H.264).
//!
//! ```text
//!  {appsrc video caps} -----------------------------------------------+
//!                                                                      v
//!  {appsrc F32LE mono} - {audioconvert} - {audioresample} - {opusenc} - {webmmux |
//!                                                         matroskamux} - {filesink}
//! ```

use crate::capture::clip::{ClipContainer, ClipMedia};
use crate::capture::video::make_element;
use crate::clock::Nanos;
use crate::{err, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::Path;
use std::time::Duration;

/// Longest a clip may take to write before it is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Written {
    /// Frames written (those with the first frame's caps).
    pub(super) frames: usize,
    /// End of the last frame, on the runtime timeline.
    pub(super) end: Nanos,
}

/// Writes `media` to `path` in `container`. `frame_period` is the duration given to
/// the last frame.
pub(super) fn write(
    path: &Path,
    media: &ClipMedia,
    container: ClipContainer,
    frame_period: Nanos,
) -> Result<Written> {
    let first = media
        .video
        .first()
        .ok_or_else(|| err!(Io, "clip {}: no video to write", path.display()))?;
    let start = first.t_ns;
    let caps = first.caps.clone();
    let pipeline = gst::Pipeline::new();
    let mux = make_element(container.muxer())?;
    let sink = make_element("filesink")?;
    sink.set_property("location", path.to_string_lossy().as_ref());
    let video_src = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .build();
    pipeline
        .add_many([video_src.upcast_ref(), &mux, &sink])
        .map_err(|e| err!(Video, "clip: cannot assemble the muxer").caused_by(e))?;
    video_src
        .link(&mux)
        .and_then(|_| mux.link(&sink))
        .map_err(|e| {
            err!(
                Video,
                "clip: cannot link the video to {}",
                container.muxer()
            )
            .caused_by(e)
        })?;
    let audio_src = match &media.audio {
        Some(audio) => {
            let caps = gst::Caps::builder("audio/x-raw")
                .field("format", "F32LE")
                .field("rate", audio.rate as i32)
                .field("channels", 1i32)
                .field("layout", "interleaved")
                .build();
            let src = gst_app::AppSrc::builder()
                .caps(&caps)
                .format(gst::Format::Time)
                .build();
            let chain = [
                src.upcast_ref(),
                &make_element("audioconvert")?,
                &make_element("audioresample")?,
                &make_element("opusenc")?,
            ]
            .map(Clone::clone);
            pipeline
                .add_many(&chain)
                .map_err(|e| err!(Audio, "clip: cannot assemble the audio encoder").caused_by(e))?;
            gst::Element::link_many(&chain)
                .and_then(|_| chain[3].link(&mux))
                .map_err(|e| err!(Audio, "clip: cannot link the audio encoder").caused_by(e))?;
            Some(src)
        }
        None => None,
    };
    let result = run(
        &pipeline,
        media,
        &video_src,
        audio_src.as_ref(),
        start,
        frame_period,
    );
    let _ = pipeline.set_state(gst::State::Null);
    let frames = result?;
    let end = media.video[frames - 1].t_ns + frame_period;
    Ok(Written { frames, end })
}

/// Plays the pipeline, pushes everything, waits for the end of stream; returns the
/// frames pushed.
fn run(
    pipeline: &gst::Pipeline,
    media: &ClipMedia,
    video_src: &gst_app::AppSrc,
    audio_src: Option<&gst_app::AppSrc>,
    start: Nanos,
    frame_period: Nanos,
) -> Result<usize> {
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| err!(Video, "clip: the muxer did not start").caused_by(e))?;
    let caps = &media.video[0].caps;
    let frames: Vec<_> = media.video.iter().take_while(|f| f.caps == *caps).collect();
    if frames.len() < media.video.len() {
        log::warn!(
            "clip: the video changed format after {} frames; the rest is left out",
            frames.len()
        );
    }
    for (i, f) in frames.iter().enumerate() {
        let next = frames.get(i + 1).map_or(f.t_ns + frame_period, |n| n.t_ns);
        let mut buffer = f.buffer.copy();
        {
            let b = buffer.make_mut();
            let pts = clock_time(f.t_ns - start);
            b.set_pts(pts);
            b.set_dts(pts);
            b.set_duration(clock_time(next - f.t_ns));
        }
        video_src
            .push_buffer(buffer)
            .map_err(|e| err!(Video, "clip: the muxer refused a frame: {e:?}"))?;
    }
    let _ = video_src.end_of_stream();
    if let (Some(src), Some(audio)) = (audio_src, &media.audio) {
        let bytes: Vec<u8> = audio.samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let b = buffer.make_mut();
            b.set_pts(clock_time(audio.t_ns - start));
            b.set_duration(clock_time(Nanos::from_count(
                audio.samples.len() as i64,
                u64::from(audio.rate),
            )));
        }
        src.push_buffer(buffer)
            .map_err(|e| err!(Audio, "clip: the audio encoder refused the audio: {e:?}"))?;
        let _ = src.end_of_stream();
    }
    let bus = pipeline
        .bus()
        .ok_or_else(|| err!(Video, "clip: the pipeline has no bus"))?;
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(WRITE_TIMEOUT.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => Ok(frames.len()),
        Some(gst::MessageView::Error(e)) => Err(err!(
            Video,
            "clip: writing failed: {} ({})",
            e.error(),
            e.debug().map(|d| d.to_string()).unwrap_or_default()
        )),
        _ => Err(err!(
            Video,
            "clip: writing did not finish within {} s",
            WRITE_TIMEOUT.as_secs()
        )),
    }
}

fn clock_time(t: Nanos) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(t.as_nanos().max(0) as u64)
}
