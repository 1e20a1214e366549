//! The label drawn on the displayed frames: a narrow handle on the display branch's
//! `textoverlay`, so that callers set and read text without touching GStreamer.

use gstreamer as gst;
use gstreamer::prelude::*;

/// Name of the `textoverlay` element of the display branch.
pub(super) const OVERLAY_NAME: &str = "avaction-overlay";

/// The text drawn over the displayed frames (from [`VideoCapture::overlay`]); cheap to
/// clone and safe to share between threads.
///
/// [`VideoCapture::overlay`]: super::VideoCapture::overlay
#[derive(Debug, Clone)]
pub struct LabelOverlay {
    element: gst::Element,
}

impl LabelOverlay {
    /// The display branch's overlay in `pipeline`, if it has one.
    pub(super) fn find(pipeline: &gst::Pipeline) -> Option<LabelOverlay> {
        pipeline
            .by_name(OVERLAY_NAME)
            .map(|element| LabelOverlay { element })
    }

    /// Draws `text` on the frames from now on (empty: nothing).
    pub fn set_text(&self, text: &str) {
        self.element.set_property("text", text);
    }

    /// The text currently drawn.
    pub fn text(&self) -> String {
        self.element.property::<String>("text")
    }
}

#[cfg(test)]
mod tests {
    use super::LabelOverlay;

    #[test]
    fn label_overlay_is_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<LabelOverlay>();
    }
}
