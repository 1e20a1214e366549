//! Device profiles through the CLI and the builder: `run --target NAME` applies the
//! profile (backend order, stride, flow estimator) and still labels a file; unknown
//! targets and estimators are errors naming the valid ones; `devices` names this
//! machine's profile; `inspect` and `devices` say why TensorRT is not used.

mod common;

use std::time::Duration;

use avaction::synth::{self, SceneConfig};
use avaction::{AudioSource, ErrorKind, Output, Runtime, VideoSource};

fn scene_file(name: &str) -> std::path::PathBuf {
    let path = common::temp_dir(name).join("scene.mkv");
    let config = SceneConfig {
        seed: 9005,
        duration_s: 2.0,
        ..SceneConfig::default()
    };
    synth::render_to_file(&config, &path).expect("media");
    path
}

#[test]
fn run_with_a_jetson_profile_uses_its_settings_and_labels_the_file() {
    let media = scene_file("target-run");
    let media = media.display().to_string();
    let run = common::avaction(
        &[
            "run",
            "--target",
            "jetson-orin-nano",
            "--video",
            &media,
            "--json",
            "--stats",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("target jetson-orin-nano (chosen by name)"),
        "{}",
        run.stderr
    );
    // the profile's estimator differs from the model's: said once, as a warning
    assert!(run.stderr.contains("dis-ultrafast"), "{}", run.stderr);
    assert!(
        run.stdout.lines().any(|l| l.contains("\"label\"")),
        "{}",
        run.stdout
    );
}

#[test]
fn unknown_target_lists_the_shipped_ones() {
    let run = common::avaction(
        &["run", "--target", "jetson-tx1", "--video", "test:ball"],
        Duration::from_secs(30),
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("jetson-tx1") && run.stderr.contains("jetson-orin-nano"),
        "{}",
        run.stderr
    );
}

#[test]
fn devices_names_the_detected_profile() {
    let run = common::avaction(&["devices"], Duration::from_secs(30));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("target: "), "{}", run.stdout);
}

#[test]
fn an_unknown_flow_estimator_is_a_config_error() {
    let media = scene_file("target-flow");
    let err = Runtime::builder()
        .model(concat!(env!("CARGO_MANIFEST_DIR"), "/models/cavnet-small"))
        .video(VideoSource::Uri(media.display().to_string()))
        .audio(AudioSource::FromVideo)
        .flow_estimator("farneback")
        .build()
        .expect_err("farneback is not an estimator");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("dis-fast"), "{err}");
}

#[test]
fn the_builder_applies_a_profile_file() {
    let media = scene_file("target-file");
    let dir = media.parent().expect("dir").to_path_buf();
    let profile = dir.join("mine.toml");
    std::fs::write(
        &profile,
        "name = \"mine\"\ndescription = \"test\"\ndevice_tree_match = []\n\
         [backend]\norder = [\"tract\"]\nprecision = \"fp32\"\nthreads = 2\n\
         [capture]\nwidth = 0\nheight = 0\nfps = 0\n[window]\nhop_frames = 4\n[flow]\nestimator = \"tvl1\"\n",
    )
    .expect("profile");
    let (target, _) =
        avaction::target::Target::resolve(&profile.display().to_string()).expect("profile");
    let runtime = Runtime::builder()
        .model(concat!(env!("CARGO_MANIFEST_DIR"), "/models/cavnet-small"))
        .video(VideoSource::Uri(media.display().to_string()))
        .audio(AudioSource::FromVideo)
        .target(&target)
        .expect("valid profile")
        .build()
        .expect("runtime");
    let predictions = runtime
        .outputs()
        .filter(|o| matches!(o, Output::Prediction(_)))
        .count();
    runtime.finish().expect("run");
    // 50 frames, windows of 16 every 4 frames: (50 - 16) / 4 + 1 = 9
    assert_eq!(predictions, 9);
}

#[test]
fn inspect_and_devices_say_why_tensorrt_is_not_used() {
    let inspect = common::avaction(&["inspect", "models/cavnet-small"], Duration::from_secs(30));
    assert_eq!(inspect.code, Some(0), "{}", inspect.stderr);
    assert!(
        inspect
            .stdout
            .contains("backend: tract (tensorrt unavailable: "),
        "{}",
        inspect.stdout
    );
    assert!(
        inspect.stdout.contains("flow dis-fast"),
        "{}",
        inspect.stdout
    );
    let devices = common::avaction(&["devices"], Duration::from_secs(30));
    assert!(
        devices.stdout.contains("tensorrt: unavailable: "),
        "{}",
        devices.stdout
    );
}
