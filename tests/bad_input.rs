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
            "--model",
            "models/cavnet-small", // needs audio (the others label video-only)
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
    let run = avaction(
        &[
            "run",
            "--model",
            "models/cavnet-small",
            "--video",
            path.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert_clear_failure(&run, &["no audio track", "needs audio"]);
}

fn copy_bundle(to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["model.toml", "labels.txt", "model.onnx"] {
        std::fs::copy(repo("models/cavnet-small").join(f), to.join(f)).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Media limits (issue 14, item 5), through the library: a source beyond the maximum
// resolution or frame rate is refused with an error naming its size and the limit.

mod media_limits {
    use super::common::temp_dir;
    use avaction::capture::video::{MediaLimits, VideoCapture, VideoConfig};
    use avaction::capture::{CaptureStats, VideoSource};
    use avaction::clock::Timeline;
    use avaction::{ErrorKind, Runtime};
    use std::path::Path;
    use std::process::Command;
    use std::sync::{mpsc, Arc};

    fn config(limits: MediaLimits) -> VideoConfig {
        VideoConfig {
            limits,
            ..VideoConfig::new(32, 24, 25)
        }
    }

    fn start(source: VideoSource, limits: MediaLimits) -> avaction::Result<VideoCapture> {
        let (tx, _rx) = mpsc::sync_channel(16);
        VideoCapture::start(
            &source,
            &config(limits),
            Timeline::start(),
            tx,
            Arc::new(CaptureStats::default()),
        )
    }

    /// Encodes `frames` black frames of `w` x `h` as Motion JPEG in Matroska, in a child
    /// process (so that the encoder's memory is not this process's).
    fn black_mjpeg(path: &Path, w: u32, h: u32, frames: u32) {
        let status = Command::new("gst-launch-1.0")
            .args([
                "-q",
                "videotestsrc",
                &format!("num-buffers={frames}"),
                "pattern=black",
                "!",
                &format!("video/x-raw,width={w},height={h},framerate=25/1"),
                "!",
                "jpegenc",
                "!",
                "matroskamux",
                "!",
                "filesink",
                &format!("location={}", path.display()),
            ])
            .status()
            .expect("gst-launch-1.0 runs");
        assert!(status.success(), "gst-launch-1.0 failed");
    }

    /// Peak resident memory of this process so far, in MiB.
    fn peak_rss_mib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    }

    #[test]
    fn video_of_16k_by_16k_is_refused_before_it_is_decoded() {
        let dir = temp_dir("huge-video");
        let path = dir.join("huge.mkv");
        black_mjpeg(&path, 16_000, 16_000, 1);
        let before = peak_rss_mib();
        let e = start(
            VideoSource::Uri(path.display().to_string()),
            MediaLimits::default(),
        )
        .err()
        .unwrap_or_else(|| panic!("a 16000x16000 video is refused"));
        assert_eq!(e.kind(), ErrorKind::Video, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("16000x16000") && msg.contains("7680x4320") && msg.contains("huge.mkv"),
            "{msg}"
        );
        // One decoded 16000x16000 frame alone would be 366 MiB (I420), 732 MiB in RGB.
        let grown = peak_rss_mib().saturating_sub(before);
        assert!(grown < 150, "peak RSS grew by {grown} MiB");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn limits_are_configurable_and_a_normal_file_still_plays() {
        let dir = temp_dir("limits-file");
        let path = dir.join("small.mkv");
        black_mjpeg(&path, 320, 240, 3);
        let uri = VideoSource::Uri(path.display().to_string());
        let mut capture = start(uri.clone(), MediaLimits::default()).expect("a 320x240 file plays");
        capture.stop();
        let small = MediaLimits {
            max_width: 160,
            max_height: 120,
            ..MediaLimits::default()
        };
        let e = start(uri, small)
            .err()
            .unwrap_or_else(|| panic!("refused under 160x120"));
        assert!(
            e.message().contains("320x240") && e.message().contains("160x120"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_test_source_above_the_frame_rate_limit_is_refused() {
        let slow = MediaLimits {
            max_fps: 10,
            ..MediaLimits::default()
        };
        let e = start(VideoSource::TestPattern("smpte".into()), slow)
            .err()
            .unwrap_or_else(|| panic!("videotestsrc runs at 30 fps"));
        assert_eq!(e.kind(), ErrorKind::Video, "{e}");
        assert!(e.to_string().contains("maximum frame rate 10 fps"), "{e}");
    }

    #[test]
    fn zero_limits_are_config_errors() {
        let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/cavnet-small");
        for builder in [
            Runtime::builder().model(model).max_resolution(0, 1080),
            Runtime::builder().model(model).max_fps(0),
            Runtime::builder().model(model).decoder_threads(0),
        ] {
            let e = builder
                .build()
                .err()
                .unwrap_or_else(|| panic!("zero refused"));
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        }
    }
}

/// The last JSON line of a run: its end record.
fn end_record(run: &common::CliRun) -> serde_json::Value {
    let last = run.stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "last line is not JSON ({e}): {last:?}; stderr {}",
            run.stderr
        )
    });
    assert_eq!(v["type"], "end", "the last line is the end record: {last}");
    v
}

/// Matroska with `frames` of MJPEG video (25 fps) and `audio_s` seconds of Vorbis.
/// MJPEG: avenc_mpeg4 in Matroska declares a wrapped-around duration with GStreamer
/// 1.22, which the capture treats as unknown.
fn mkv(path: &std::path::Path, frames: u32, audio_s: f64) {
    gst_launch(&format!(
        "videotestsrc num-buffers={frames} pattern=snow ! video/x-raw,width=160,height=120,framerate=25/1 \
         ! videoconvert ! jpegenc ! queue ! matroskamux name=mux ! filesink location={} \
         audiotestsrc num-buffers={} samplesperbuffer=800 ! audio/x-raw,rate=40000,channels=1 \
         ! audioconvert ! vorbisenc ! queue ! mux.",
        path.display(),
        (audio_s * 50.0).round()
    ));
}

#[test]
fn a_file_cut_short_exits_3_with_an_incomplete_end_record() {
    // Matroska plays up to the cut and then ends normally: only the declared duration
    // tells that the rest is missing.
    let dir = temp_dir("cut-mkv");
    let full = dir.join("full.mkv");
    mkv(&full, 150, 6.0);
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let run = run_file(cut.to_str().unwrap());
    assert_eq!(run.code, Some(3), "exit code 3; stderr: {}", run.stderr);
    let end = end_record(&run);
    assert_eq!(end["complete"], false, "{end}");
    assert!(
        end["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("truncated"),
        "{end}"
    );
    let media_end = end["media_end_s"].as_f64().unwrap_or(-1.0);
    assert!((0.5..5.5).contains(&media_end), "{end}");
}

#[test]
fn a_video_track_shorter_than_the_audio_is_not_a_truncation() {
    let dir = temp_dir("short-video");
    let path = dir.join("short-video.mkv");
    mkv(&path, 50, 4.0);
    let run = run_file(path.to_str().unwrap());
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(
        !run.stderr.contains("truncated"),
        "no false warning: {}",
        run.stderr
    );
    let end = end_record(&run);
    assert_eq!(end["complete"], true, "{end}");
}
