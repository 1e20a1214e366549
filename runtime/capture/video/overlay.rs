//! The label drawn on the displayed frames: a narrow handle on the display branch's
//! `textoverlay`, so that callers set and read text without touching GStreamer.

use gstreamer as gst;
use gstreamer::prelude::*;
use std::sync::{Arc, Mutex};

/// Name of the `textoverlay` element of the display branch.
pub(super) const OVERLAY_NAME: &str = "avaction-overlay";

/// The text drawn over the displayed frames (from [`VideoCapture::overlay`]); cheap to
/// clone and safe to share between threads. After a supervised source is reopened, the
/// runtime points it at the new pipeline's overlay ([`follow`](Self::follow)), so that
/// holders of a clone keep drawing.
///
/// [`VideoCapture::overlay`]: super::VideoCapture::overlay
#[derive(Debug, Clone)]
pub struct LabelOverlay {
    slot: Arc<Mutex<Slot>>,
}

#[derive(Debug)]
struct Slot {
    element: gst::Element,
    text: String,
}

impl LabelOverlay {
    /// The display branch's overlay in `pipeline`, if it has one.
    pub(super) fn find(pipeline: &gst::Pipeline) -> Option<LabelOverlay> {
        pipeline.by_name(OVERLAY_NAME).map(|element| LabelOverlay {
            slot: Arc::new(Mutex::new(Slot {
                element,
                text: String::new(),
            })),
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Draws `text` on the frames from now on (empty: nothing).
    pub fn set_text(&self, text: &str) {
        let mut slot = self.slot();
        slot.element.set_property("text", text);
        slot.text.clear();
        slot.text.push_str(text);
    }

    /// The text currently drawn.
    pub fn text(&self) -> String {
        self.slot().element.property::<String>("text")
    }

    /// Draws from now on through `other`'s element (the overlay of a reopened
    /// pipeline), starting with the text this one draws.
    pub fn follow(&self, other: &LabelOverlay) {
        let element = other.slot().element.clone();
        let mut slot = self.slot();
        element.set_property("text", slot.text.as_str());
        slot.element = element;
    }
}

#[cfg(test)]
mod tests {
    use super::LabelOverlay;
    use gstreamer::prelude::*;

    fn overlay_in_a_pipeline() -> (gstreamer::Pipeline, LabelOverlay) {
        gstreamer::init().expect("gst");
        let pipeline = gstreamer::Pipeline::new();
        let element = gstreamer::ElementFactory::make("textoverlay")
            .name(super::OVERLAY_NAME)
            .build()
            .expect("textoverlay (gstreamer1.0-plugins-base)");
        pipeline.add(&element).expect("add");
        let overlay = LabelOverlay::find(&pipeline).expect("found");
        (pipeline, overlay)
    }

    #[test]
    fn an_overlay_follows_a_reopened_pipeline_with_its_text() {
        let (_old_pipeline, shown) = overlay_in_a_pipeline();
        let (_new_pipeline, reopened) = overlay_in_a_pipeline();
        shown.set_text("a disc falls 0.91");
        shown.follow(&reopened);
        assert_eq!(reopened.text(), "a disc falls 0.91", "carried over");
        shown.set_text("nothing happens 0.80");
        assert_eq!(
            reopened.text(),
            "nothing happens 0.80",
            "drawn on the new one"
        );
        assert_eq!(shown.text(), "nothing happens 0.80");
    }

    #[test]
    fn label_overlay_is_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<LabelOverlay>();
    }
}
