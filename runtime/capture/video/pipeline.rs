//! The GStreamer elements of a capture and how they are linked: the video branch to the
//! model's size in RGB, the optional display branch, a file's audio branch, plugin hints.
//!
//! ```text
//!  {uridecodebin | camera source | videotestsrc}
//!        | video (decoder pads are routed in `pads`)
//!        v
//!  {videorate "avaction-video-in"}
//!        |
//!        |  with a display sink, clips or a live view only:
//!        |  {tee} -+- {queue} ---------------------------------------------------+
//!        |         |                                                              |
//!        |         +- display: {queue leaky=downstream} - {videoconvert}          |
//!        |         |    - {textoverlay "avaction-overlay"} - {videoconvert}       |
//!        |         |    - {display sink, sync=false}                              |
//!        |         +- clips: {queue (leaky when live)} - {videoconvert}           |
//!        |         |    - {videoscale} - {capsfilter I420, height <= max}         |
//!        |         |    - {encoder} - [{h264parse}] - {appsink} ==> clip puller   |
//!        |         |    (nvv4l2h264enc: {nvvidconv} - NVMM caps instead)         |
//!        |         +- live view: {queue leaky, 1} [probe: paced, only watched]    |
//!        |              - {videoconvert} - {videoscale} - {capsfilter I420,       |
//!        |              height <= max} - {jpegenc} - {appsink} ==> preview puller |
//!        v                                                                        |
//!  {videoconvert} - {videoscale} - {videoconvert} <-------------------------------+
//!        - {capsfilter RGB WxH PAR 1/1 fps} - {appsink}  ==> video puller
//!
//!  uridecodebin, first audio pad (when audio is asked for):
//!  {audioconvert} - {audioresample} - {capsfilter F32LE mono rate} - {appsink}
//!                                                          ==> audio puller
//!  uridecodebin, any other pad: {fakesink}
//! ```

use super::overlay::OVERLAY_NAME;
use super::VideoConfig;
use crate::capture::clip::ClipBranch;
use crate::capture::preview::PreviewTap;
use crate::{err, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::Arc;

/// Appsink queue length for files (back-pressure, no drops).
const FILE_MAX_BUFFERS: u32 = 4;

/// Which Debian/Ubuntu package ships a GStreamer element, for error messages.
pub(super) fn plugin_package(factory: &str) -> &'static str {
    match factory {
        "v4l2src" => "gstreamer1.0-plugins-good",
        "autovideosrc" => "gstreamer1.0-plugins-good",
        "vp8enc" | "jpegenc" => "gstreamer1.0-plugins-good",
        "openh264enc" | "h264parse" => "gstreamer1.0-plugins-bad",
        "x264enc" => "gstreamer1.0-plugins-ugly",
        "nvv4l2h264enc" | "nvvidconv" => "nvidia-l4t-gstreamer (JetPack)",
        _ => "gstreamer1.0-plugins-base",
    }
}

pub(crate) fn make_element(factory: &str) -> Result<gst::Element> {
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
pub(crate) fn set_enum_property(element: &gst::Element, property: &str, value: &str) -> Result<()> {
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

pub(super) fn add_and_link_source(
    pipeline: &gst::Pipeline,
    src: &gst::Element,
    entry: &gst::Element,
) -> Result<()> {
    pipeline
        .add(src)
        .map_err(|e| err!(Video, "cannot add the source element").caused_by(e))?;
    src.link(entry)
        .map_err(|e| err!(Video, "cannot link the source to the video branch").caused_by(e))
}

/// `videorate ! videoconvert ! videoscale ! videoconvert ! capsfilter ! appsink`; the
/// first element is named `avaction-video-in`. With a display, clips or a live view, a
/// `tee` after `videorate` feeds their branches too; returns the model's appsink and
/// those of the clips and the live view.
pub(super) fn build_video_branch(
    pipeline: &gst::Pipeline,
    cfg: &VideoConfig,
    live: bool,
    live_delivery: bool,
) -> Result<VideoSinks> {
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
        .map_err(|e| err!(Video, "cannot assemble the video branch").caused_by(e))?;
    let mut clip_sink = None;
    let mut preview_sink = None;
    if cfg.display_sink.is_none() && cfg.clip.is_none() && cfg.preview.is_none() {
        gst::Element::link_many([&rate, &convert_in])
            .map_err(|e| err!(Video, "cannot link the video branch").caused_by(e))?;
    } else {
        let tee = make_element("tee")?;
        let model_queue = make_element("queue")?;
        pipeline
            .add_many([&tee, &model_queue])
            .map_err(|e| err!(Video, "cannot assemble the video branch").caused_by(e))?;
        gst::Element::link_many([&rate, &tee, &model_queue, &convert_in])
            .map_err(|e| err!(Video, "cannot link the video branch").caused_by(e))?;
        if let Some(display) = &cfg.display_sink {
            add_display_branch(pipeline, &tee, display)?;
        }
        if let Some(clip) = &cfg.clip {
            clip_sink = Some(add_clip_branch(
                pipeline,
                &tee,
                clip,
                cfg.fps,
                live_delivery,
            )?);
        }
        if let Some(tap) = &cfg.preview {
            preview_sink = Some(add_preview_branch(pipeline, &tee, tap)?);
        }
    }
    gst::Element::link_many(model_path)
        .map_err(|e| err!(Video, "cannot link the video branch").caused_by(e))?;
    Ok(VideoSinks {
        model: sink,
        clip: clip_sink,
        preview: preview_sink,
    })
}

/// The appsinks of a video branch.
pub(super) struct VideoSinks {
    /// The model's frames.
    pub model: gst_app::AppSink,
    /// Encoded frames for evidence clips.
    pub clip: Option<gst_app::AppSink>,
    /// JPEG images for the live view.
    pub preview: Option<gst_app::AppSink>,
}

/// The live view's branch off `tee`: a leaky one-frame queue whose output pad drops
/// every frame the tap does not ask for (paced, and only while someone watches), then
/// `videoconvert ! videoscale ! capsfilter(I420, height <= max) ! jpegenc ! appsink`.
/// Never holds the model back, files read as fast as possible included.
fn add_preview_branch(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    tap: &Arc<PreviewTap>,
) -> Result<gst_app::AppSink> {
    let queue = make_element("queue")?;
    set_enum_property(&queue, "leaky", "downstream")?;
    queue.set_property("max-size-buffers", 1u32);
    queue.set_property("max-size-time", 0u64);
    queue.set_property("max-size-bytes", 0u32);
    let pad = queue
        .static_pad("src")
        .ok_or_else(|| err!(Video, "internal: queue without a src pad"))?;
    let gate = tap.clone();
    // Buffers only: caps and end-of-stream pass, so the branch stays negotiated and ends
    // with the pipeline.
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        if gate.pass_now() {
            gst::PadProbeReturn::Ok
        } else {
            gst::PadProbeReturn::Drop
        }
    });
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("height", gst::IntRange::new(2, tap.max_height() as i32))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    let encoder = make_element("jpegenc")?;
    encoder.set_property("quality", 75i32);
    let sink = gst_app::AppSink::builder()
        .max_buffers(1)
        .drop(true)
        .sync(false)
        .enable_last_sample(false)
        .build();
    // Frames reach it only while someone watches: it must not hold up the pipeline's
    // start (a sink that waits for its first buffer would keep a file from playing).
    sink.set_property("async", false);
    let elements = [
        queue,
        make_element("videoconvert")?,
        make_element("videoscale")?,
        capsfilter(&caps)?,
        encoder,
        sink.clone().upcast(),
    ];
    pipeline
        .add_many(&elements)
        .map_err(|e| err!(Video, "cannot assemble the live view branch").caused_by(e))?;
    let mut chain = vec![tee];
    chain.extend(elements.iter());
    gst::Element::link_many(chain)
        .map_err(|e| err!(Video, "cannot link the live view branch").caused_by(e))?;
    Ok(sink)
}

/// The clips' branch off `tee`: a queue (leaky for live sources, so that the encoder
/// never holds the model back; files wait for it so that clips are whole), the picture
/// scaled down to the clip's height, the encoder, the H.264 parser where there is one,
/// and an appsink read by the clip puller.
fn add_clip_branch(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    clip: &ClipBranch,
    fps: u32,
    live_delivery: bool,
) -> Result<gst_app::AppSink> {
    let queue = make_element("queue")?;
    if live_delivery {
        set_enum_property(&queue, "leaky", "downstream")?;
    }
    // Full-size raw frames: a few are enough to ride out the encoder's jitter.
    queue.set_property("max-size-buffers", 4u32);
    queue.set_property("max-size-time", 0u64);
    queue.set_property("max-size-bytes", 0u32);
    let height = gst::IntRange::new(2, clip.max_height.max(2) as i32);
    let mut elements = vec![queue];
    if clip.encoder.uses_nvmm() {
        let caps = gst::Caps::builder("video/x-raw")
            .features(["memory:NVMM"])
            .field("format", "NV12")
            .field("height", height)
            .build();
        elements.push(make_element("nvvidconv")?);
        elements.push(capsfilter(&caps)?);
    } else {
        // Square pixels: videoscale then keeps the aspect by scaling the width too
        // (without it, 1080p became 1920x720 with a 2:3 pixel aspect ratio).
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("height", height)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build();
        elements.push(make_element("videoconvert")?);
        elements.push(make_element("videoscale")?);
        elements.push(capsfilter(&caps)?);
    }
    let encoder = make_element(&clip.encoder.element)?;
    clip.encoder.configure(&encoder, fps);
    force_keyframe_each_second(&elements[0], &encoder)?;
    elements.push(encoder);
    if let Some(parser) = clip.encoder.parser() {
        elements.push(make_element(parser)?);
        let caps = gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .build();
        elements.push(capsfilter(&caps)?);
    }
    let sink = gst_app::AppSink::builder()
        .max_buffers(64)
        .drop(false)
        .sync(false)
        .enable_last_sample(false)
        .build();
    elements.push(sink.clone().upcast());
    pipeline
        .add_many(&elements)
        .map_err(|e| err!(Video, "cannot assemble the clip branch").caused_by(e))?;
    let mut chain = vec![tee];
    chain.extend(elements.iter());
    gst::Element::link_many(chain).map_err(|e| {
        err!(
            Video,
            "cannot link the clip branch ({})",
            clip.encoder.element
        )
        .caused_by(e)
    })?;
    Ok(sink)
}

/// Asks `encoder` for a keyframe whenever a second of media time has passed since the
/// last one asked for, judged on the buffers leaving `queue` (its upstream neighbour).
/// The encoder's own interval counts frames, and a leaky queue under load drops some:
/// clips must still start within a second of their pre-roll.
fn force_keyframe_each_second(queue: &gst::Element, encoder: &gst::Element) -> Result<()> {
    let (Some(out), Some(into)) = (queue.static_pad("src"), encoder.static_pad("sink")) else {
        return Err(err!(Video, "internal: clip queue or encoder without pads"));
    };
    let last = std::sync::atomic::AtomicU64::new(u64::MAX);
    out.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
            return gst::PadProbeReturn::Ok;
        };
        let (now, before) = (pts.nseconds(), last.load(Relaxed));
        let due = before == u64::MAX || now < before || now - before >= 1_000_000_000;
        if due {
            last.store(now, Relaxed);
            if before != u64::MAX {
                let event = gstreamer_video::DownstreamForceKeyUnitEvent::builder()
                    .all_headers(true)
                    .build();
                into.send_event(event);
            }
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

fn capsfilter(caps: &gst::Caps) -> Result<gst::Element> {
    let filter = make_element("capsfilter")?;
    filter.set_property("caps", caps);
    Ok(filter)
}

/// The display's branch off `tee`: a leaky
/// `queue ! videoconvert ! textoverlay ! videoconvert ! <display sink>`: the display
/// shows the full-size frames with the current label and never holds the model back.
fn add_display_branch(pipeline: &gst::Pipeline, tee: &gst::Element, display: &str) -> Result<()> {
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
        .add_many(show)
        .map_err(|e| err!(Video, "cannot assemble the display branch").caused_by(e))?;
    tee.link(&show_queue)
        .and_then(|_| gst::Element::link_many(show))
        .map_err(|e| err!(Video, "cannot link the display branch ({display})").caused_by(e))?;
    Ok(())
}

/// `audioconvert ! audioresample ! capsfilter(F32LE rate) ! appsink`, added while the
/// pipeline runs; returns the branch's entry element and its appsink. The channels are
/// left as the track has them: the pull loop mixes them to mono as the model asks
/// ([`Downmix`](crate::capture::Downmix)), not as `audioconvert` would.
pub(super) fn build_audio_branch(
    pipeline: &gst::Pipeline,
    rate: u32,
    realtime: bool,
) -> Result<(gst::Element, gst_app::AppSink)> {
    let convert = make_element("audioconvert")?;
    let resample = make_element("audioresample")?;
    let caps = gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
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
        .map_err(|e| err!(Audio, "cannot assemble the audio branch").caused_by(e))?;
    gst::Element::link_many(elements)
        .map_err(|e| err!(Audio, "cannot link the audio branch").caused_by(e))?;
    for e in elements {
        e.sync_state_with_parent()
            .map_err(|e| err!(Audio, "cannot start the audio branch").caused_by(e))?;
    }
    Ok((convert, sink))
}

/// A sink for decoded streams nobody asked for (extra video/audio tracks, subtitles), so
/// that unlinked pads do not stop the decoder.
pub(super) fn attach_discard_sink(pipeline: &gst::Pipeline, pad: &gst::Pad) -> Result<()> {
    let sink = make_element("fakesink")?;
    sink.set_property("sync", false);
    sink.set_property("async", false);
    pipeline
        .add(&sink)
        .map_err(|e| err!(Video, "cannot add a fakesink").caused_by(e))?;
    sink.sync_state_with_parent()
        .map_err(|e| err!(Video, "cannot start a fakesink").caused_by(e))?;
    let sink_pad = sink
        .static_pad("sink")
        .ok_or_else(|| err!(Video, "internal: fakesink without a sink pad"))?;
    pad.link(&sink_pad)
        .map(|_| ())
        .map_err(|e| err!(Video, "cannot link an unused stream: {e:?}"))
}
