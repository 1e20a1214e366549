//! The display branch: frames go to a video sink through a `textoverlay` that shows
//! the current top label, without holding the model back. Runs with `fakesink` so no
//! display is needed; `camera_demo` uses `autovideosink` where a display exists.

use avaction::synth::{self, SceneConfig};
use avaction::{AudioSource, Output, Runtime, VideoSource};

#[test]
fn overlay_shows_the_latest_label_and_the_model_sees_every_frame() {
    let path = std::env::temp_dir().join(format!("avaction-display-{}.mkv", std::process::id()));
    let config = SceneConfig {
        seed: 9003,
        duration_s: 4.0,
        ..SceneConfig::default()
    };
    synth::render_to_file(&config, &path).unwrap();
    let runtime = Runtime::builder()
        .model(concat!(env!("CARGO_MANIFEST_DIR"), "/models/cavnet-small"))
        .video(VideoSource::Uri(path.display().to_string()))
        .audio(AudioSource::FromVideo)
        .display("fakesink")
        .build()
        .expect("runtime with a display branch");
    let mut last = None;
    for output in runtime.outputs() {
        if let Output::Prediction(p) = output {
            last = Some(format!("{} {:.2}", p.top[0].label, p.top[0].score));
        }
    }
    let shown = runtime.overlay_text();
    let stats = runtime.finish().expect("run");
    std::fs::remove_file(&path).ok();
    assert_eq!(
        stats.frames, 100,
        "the display must not cost the model frames"
    );
    assert!(last.is_some());
    assert_eq!(shown, last, "the overlay shows the latest prediction");
}

#[test]
fn unknown_display_sink_is_a_clear_error() {
    let e = Runtime::builder()
        .model(concat!(env!("CARGO_MANIFEST_DIR"), "/models/cavnet-small"))
        .video(VideoSource::TestPattern("ball".into()))
        .audio(AudioSource::None)
        .display("nosuchvideosink")
        .build()
        .expect_err("unknown sink");
    assert!(e.to_string().contains("nosuchvideosink"), "{e}");
}
