//! Start-up: routing `uridecodebin`'s dynamic pads to the branches, and waiting (bounded)
//! until the pipeline plays, with clear errors for missing plugins and stopped demuxers.

use super::pipeline::{attach_discard_sink, build_audio_branch};
use super::plan::SourcePlan;
use super::VideoConfig;
use crate::{err, Error, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a file's demuxer may sit stopped with no stream before start gives up.
const STALL_GRACE: Duration = Duration::from_millis(500);
/// How long [`VideoCapture::start`](super::VideoCapture::start) waits for the pipeline to
/// play or preroll.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Live URIs: how long to wait for more streams (audio) once the video pad is linked.
const LIVE_PADS_GRACE: Duration = Duration::from_secs(3);

/// What `uridecodebin`'s dynamic pads turned out to contain.
#[derive(Default)]
pub(super) struct PadState {
    pub(super) video_linked: bool,
    pub(super) audio_sink: Option<gst_app::AppSink>,
    pub(super) no_more_pads: bool,
    pub(super) link_error: Option<String>,
}

/// Routes `uridecodebin`'s pads: the first video stream to the video branch, the first
/// audio stream to a new audio branch when asked, the rest to fakesinks.
pub(super) fn connect_decoder_pads(
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
    let limits = cfg.limits;
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
        if st.link_error.is_some() {
            // Refused (media limits) or failed already: link nothing more.
            return;
        }
        let result = if media.starts_with("video/") && !st.video_linked {
            // Refused before linking: nothing downstream allocates for it.
            if let Err(e) = limits.check_caps(&caps) {
                st.link_error.get_or_insert_with(|| e.message().to_string());
                return;
            }
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
    // Encoded streams carry their size too (demuxer and parser caps): refusing there
    // stops decodebin before it plugs a decoder that would allocate the large frames.
    let state = pads.clone();
    decoder.connect("autoplug-continue", false, move |args| {
        let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
        let refused = caps.and_then(|caps| limits.check_caps(&caps).err());
        if let Some(e) = refused {
            if let Ok(mut st) = state.lock() {
                st.link_error.get_or_insert_with(|| e.message().to_string());
            }
            // Stop plugging: the still-encoded pad is exposed and left unlinked.
            return Some(false.to_value());
        }
        Some(true.to_value())
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
pub(super) fn wait_until_playing(
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
    let mut linked_at: Option<Instant> = None;
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
                    // A refused pad (media limits) leaves it unlinked: report the refusal,
                    // not the "not-linked" that follows it.
                    if let Some(refused) = pads.lock().ok().and_then(|st| st.link_error.clone()) {
                        return Err(err!(Video, "{source_name}: {refused}"));
                    }
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
        if video_linked && linked_at.is_none() {
            linked_at = Some(Instant::now());
        }
        // A live URI (RTSP) exposes its streams after PLAYING: wait for the video pad,
        // and for the others until decodebin says there are no more (audio may come a
        // little later than video; LIVE_PADS_GRACE bounds the wait).
        let live_pads_ready =
            no_more_pads || linked_at.is_some_and(|t| t.elapsed() >= LIVE_PADS_GRACE);
        let ready = !is_uri || no_more_pads || (plan.is_live() && live_pads_ready);
        if current == target && ready {
            if target == gst::State::Playing {
                return Ok(());
            }
            target = gst::State::Playing;
            pipeline
                .set_state(target)
                .map_err(|e| err!(Video, "{source_name} cannot play").caused_by(e))?;
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
pub(super) fn describe_gst_error(e: &gst::message::Error) -> String {
    let from = e
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_else(|| "unknown element".into());
    match e.debug() {
        Some(debug) => format!("{} (from {from}; debug: {debug})", e.error()),
        None => format!("{} (from {from})", e.error()),
    }
}
