//! A file whose video decoder is not available gives a clear error naming what is missing.
//! Its own test binary: it lowers a decoder's rank in this process's GStreamer registry.

use avaction::capture::video::{VideoCapture, VideoConfig};
use avaction::capture::{CaptureStats, VideoSource};
use avaction::clock::Timeline;
use avaction::ErrorKind;
use gstreamer as gst;
use gstreamer::prelude::*;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

#[test]
fn missing_video_decoder_is_named_in_the_error() {
    gst::init().expect("gst init");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capture-missing-plugin");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("mpeg4.mkv");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48,framerate=25/1 ! videoconvert \
         ! avenc_mpeg4 ! matroskamux ! filesink location={}",
        path.display()
    ))
    .expect("parse");
    pipeline.set_state(gst::State::Playing).expect("play");
    let bus = pipeline.bus().expect("bus");
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).expect("null");
    assert!(
        matches!(msg.map(|m| m.type_()), Some(gst::MessageType::Eos)),
        "writing failed"
    );

    // Hide every MPEG-4 part 2 decoder from autoplugging.
    let registry = gst::Registry::get();
    for name in ["avdec_mpeg4", "avdec_mpeg4_v4l2m2m"] {
        if let Some(feature) = registry.lookup_feature(name) {
            feature.set_rank(gst::Rank::NONE);
        }
    }
    let (tx, _rx) = mpsc::sync_channel(16);
    let started = Instant::now();
    let result = VideoCapture::start(
        &VideoSource::Uri(path.display().to_string()),
        &VideoConfig::new(32, 24, 25),
        Timeline::start(),
        tx,
        Arc::new(CaptureStats::default()),
    );
    assert!(started.elapsed() < Duration::from_secs(11));
    let e = result.expect_err("decoded without a decoder");
    assert_eq!(e.kind(), ErrorKind::Video);
    assert!(e.message().contains("mpeg4.mkv"), "{e}");
    assert!(e.message().contains("missing GStreamer plugin"), "{e}");
    assert!(e.message().contains("MPEG-4"), "{e}");
    println!("{e}");
}
