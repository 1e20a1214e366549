//! Bad input through the CLI: each case must end with a clear error naming the
//! problem, a non-zero exit code, no panic and no hang (every run has a deadline).

mod common;

use common::{avaction, gst_launch, repo, temp_dir};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn assert_clear_failure(run: &common::CliRun, needles: &[&str]) {
    assert_ne!(run.code, Some(0), "should fail; stderr: {}", run.stderr);
    assert!(
        run.code.is_some(),
        "killed by a signal; stderr: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "panic: {}", run.stderr);
    let lower = run.stderr.to_lowercase();
    for n in needles {
        assert!(
            lower.contains(&n.to_lowercase()),
            "stderr lacks {n:?}: {}",
            run.stderr
        );
    }
}

fn run_file(path: &str) -> common::CliRun {
    avaction(&["run", "--video", path, "--json"], LIMIT)
}

#[test]
fn missing_file() {
    let run = run_file("no/such/video.mp4");
    assert_clear_failure(&run, &["no/such/video.mp4"]);
}

#[test]
fn text_file_renamed_mp4() {
    let dir = temp_dir("text-mp4");
    let path = dir.join("notes.mp4");
    std::fs::write(&path, "this is not a video, just some text\n".repeat(50)).unwrap();
    let run = run_file(path.to_str().unwrap());
    assert_clear_failure(&run, &["notes.mp4"]);
}

#[test]
fn truncated_mp4() {
    let dir = temp_dir("truncated");
    let full = dir.join("full.mp4");
    gst_launch(&format!(
        "videotestsrc num-buffers=100 pattern=ball ! video/x-raw,width=160,height=120,framerate=25/1 ! videoconvert ! avenc_mpeg4 ! mp4mux ! filesink location={}",
        full.display()
    ));
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let run = run_file(cut.to_str().unwrap());
    assert_clear_failure(&run, &["cut.mp4"]);
}

#[test]
fn audio_only_file() {
    let dir = temp_dir("audio-only");
    let path = dir.join("tone.mkv");
    gst_launch(&format!(
        "audiotestsrc num-buffers=50 ! audioconvert ! flacenc ! matroskamux ! filesink location={}",
        path.display()
    ));
    let run = run_file(path.to_str().unwrap());
    assert_clear_failure(&run, &["no video"]);
}

#[test]
fn manifest_with_unknown_key() {
    let dir = temp_dir("unknown-key");
    let bundle = dir.join("bundle");
    copy_bundle(&bundle);
    let text = std::fs::read_to_string(bundle.join("model.toml")).unwrap();
    std::fs::write(
        bundle.join("model.toml"),
        text.replace("[decoder]", "[decoder]\nthreshold = 0.5"),
    )
    .unwrap();
    let run = avaction(
        &[
            "run",
            "--model",
            bundle.to_str().unwrap(),
            "--video",
            "test:ball",
        ],
        LIMIT,
    );
    assert_clear_failure(&run, &["model.toml", "threshold"]);
}

#[test]
fn model_input_shape_mismatch() {
    let dir = temp_dir("shape");
    let bundle = dir.join("bundle");
    copy_bundle(&bundle);
    let text = std::fs::read_to_string(bundle.join("model.toml")).unwrap();
    // a valid manifest that disagrees with the ONNX graph: 32x32 frames
    let text = text.replace("3, 64, 64]", "3, 32, 32]");
    std::fs::write(bundle.join("model.toml"), text).unwrap();
    let run = avaction(
        &[
            "run",
            "--model",
            bundle.to_str().unwrap(),
            "--video",
            "test:ball",
        ],
        LIMIT,
    );
    assert_clear_failure(
        &run,
        &["input `frames`", "[1, 16, 3, 64, 64]", "[1, 16, 3, 32, 32]"],
    );
}

#[test]
fn no_microphone() {
    let run = avaction(
        &[
            "run",
            "--video",
            "test:ball",
            "--audio",
            "mic:no-such-microphone",
        ],
        LIMIT,
    );
    assert_clear_failure(&run, &["no-such-microphone", "needs audio"]);
}

#[test]
fn file_without_audio_track_for_an_audio_model() {
    let dir = temp_dir("no-audio-track");
    let path = dir.join("silent.mkv");
    gst_launch(&format!(
        "videotestsrc num-buffers=30 ! video/x-raw,width=160,height=120,framerate=25/1 ! videoconvert ! avenc_mpeg4 ! matroskamux ! filesink location={}",
        path.display()
    ));
    let run = run_file(path.to_str().unwrap());
    assert_clear_failure(&run, &["no audio track", "needs audio"]);
}

fn copy_bundle(to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["model.toml", "labels.txt", "model.onnx"] {
        std::fs::copy(repo("models/cavnet-small").join(f), to.join(f)).unwrap();
    }
}
