//! Media limits: the largest decoded picture and frame rate a source may deliver, and the
//! decoder threads. A source beyond them is refused before frames of that size reach the
//! video branch: a decoder's pad is checked before it is linked, and a caps probe on the
//! branch entry refuses cameras, test sources and mid-stream changes.

use crate::{err, Result};
use gstreamer as gst;
use gstreamer::prelude::*;

/// Limits on what a video source may deliver (see [`VideoConfig::limits`](super::VideoConfig::limits)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLimits {
    /// Largest decoded width in pixels. Default 7680 (8K UHD).
    pub max_width: u32,
    /// Largest decoded height in pixels. Default 4320 (8K UHD).
    pub max_height: u32,
    /// Largest frame rate in frames per second. Default 240.
    pub max_fps: u32,
    /// Threads each libav decoder (`avdec_*`) may use (its `max-threads`). Default 2.
    pub decoder_threads: u32,
}

impl Default for MediaLimits {
    fn default() -> Self {
        MediaLimits {
            max_width: 7680,
            max_height: 4320,
            max_fps: 240,
            decoder_threads: 2,
        }
    }
}

impl MediaLimits {
    /// Checks that every limit is at least 1 (and the decoder threads at most 64).
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) naming the first invalid limit.
    pub fn validate(&self) -> Result<()> {
        if self.max_width == 0 || self.max_height == 0 {
            return Err(err!(
                Config,
                "maximum video resolution {}x{} is invalid (each side >= 1)",
                self.max_width,
                self.max_height
            ));
        }
        if self.max_fps == 0 {
            return Err(err!(Config, "maximum video frame rate 0 is invalid (>= 1)"));
        }
        if !(1..=64).contains(&self.decoder_threads) {
            return Err(err!(
                Config,
                "decoder threads {} is invalid (1..=64)",
                self.decoder_threads
            ));
        }
        Ok(())
    }

    /// Checks fixed video caps against the limits; caps without a size (or not fixed
    /// yet) pass.
    ///
    /// # Errors
    /// [`Video`](crate::ErrorKind::Video) naming the size or rate and the limit.
    pub(super) fn check_caps(&self, caps: &gst::CapsRef) -> Result<()> {
        for s in caps.iter() {
            if let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height")) {
                let (w, h) = (w.max(0) as u32, h.max(0) as u32);
                if w > self.max_width || h > self.max_height {
                    return Err(err!(
                        Video,
                        "the source's video is {w}x{h}, above the maximum resolution {}x{} (raise it with max_resolution)",
                        self.max_width,
                        self.max_height
                    ));
                }
            }
            if let Ok(rate) = s.get::<gst::Fraction>("framerate") {
                let (n, d) = (i64::from(rate.numer()), i64::from(rate.denom()));
                if d > 0 && n > i64::from(self.max_fps) * d {
                    return Err(err!(
                        Video,
                        "the source's video is {n}/{d} fps, above the maximum frame rate {} fps (raise it with max_fps)",
                        self.max_fps
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Refuses caps beyond `limits` on the video branch's entry: the caps event is dropped
/// and an error naming the size and the limit is posted on the bus (start-up reports it;
/// while running it ends the capture).
pub(super) fn guard_entry(entry: &gst::Element, limits: MediaLimits) -> Result<()> {
    let pad = entry
        .static_pad("sink")
        .ok_or_else(|| err!(Video, "internal: video branch entry without a sink pad"))?;
    let element = entry.clone();
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_pad, info| {
        let Some(gst::PadProbeData::Event(event)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let gst::EventView::Caps(caps) = event.view() else {
            return gst::PadProbeReturn::Ok;
        };
        match limits.check_caps(caps.caps()) {
            Ok(()) => gst::PadProbeReturn::Ok,
            Err(e) => {
                gst::element_error!(element, gst::StreamError::Format, ("{}", e.message()));
                // Taken and dropped here (`Handled`), so the caps never reach the branch.
                info.data = None;
                gst::PadProbeReturn::Handled
            }
        }
    });
    Ok(())
}

/// Bounds the threads of every libav decoder `decodebin` plugs (`max-threads`, which
/// libav otherwise sets to the number of cores).
pub(super) fn bound_decoder_threads(decoder: &gst::Element, threads: u32) {
    let Some(bin) = decoder.downcast_ref::<gst::Bin>() else {
        return;
    };
    let threads = i32::try_from(threads).unwrap_or(i32::MAX);
    bin.connect_deep_element_added(move |_bin, _sub_bin, element| {
        let is_libav = element
            .factory()
            .is_some_and(|f| f.name().starts_with("avdec_"));
        if is_libav && element.find_property("max-threads").is_some() {
            element.set_property("max-threads", threads);
            log::debug!("{}: max-threads {threads}", element.name());
        }
    });
}

/// Parsers `uridecodebin` must not plug. GStreamer 1.22's `mpeg4videoparse`
/// (plugins-bad) stamps MPEG-4 part 2 video from Matroska with wrapped-around
/// timestamps (about 2^63 ns); `videorate` then fills the gap from 0 with copies of the
/// first frame and a 2-second file never ends. `avdec_mpeg4` decodes the demuxer's
/// output directly, as it does where plugins-bad is not installed.
const SKIPPED_FACTORIES: &[&str] = &["mpeg4videoparse"];

/// Makes `uridecodebin` skip the factories of [`SKIPPED_FACTORIES`].
pub(super) fn skip_broken_parsers(decoder: &gst::Element) {
    let Some(result_type) = gst::glib::Type::from_name("GstAutoplugSelectResult") else {
        log::debug!("decodebin has no GstAutoplugSelectResult: no factory is skipped");
        return;
    };
    decoder.connect("autoplug-select", false, move |args| {
        let factory = args
            .get(3)
            .and_then(|v| v.get::<gst::ElementFactory>().ok());
        let skipped = factory
            .as_ref()
            .is_some_and(|f| SKIPPED_FACTORIES.contains(&f.name().as_str()));
        if skipped {
            log::debug!("decodebin: skipping {:?}", factory.map(|f| f.name()));
        }
        // GST_AUTOPLUG_SELECT_TRY = 0, GST_AUTOPLUG_SELECT_SKIP = 2.
        gst::glib::EnumClass::with_type(result_type)
            .and_then(|class| class.to_value(if skipped { 2 } else { 0 }))
    });
}
