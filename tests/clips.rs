//! Evidence clips (`runtime/deliver/clips/`), checked by an independent reader: for a
//! synthetic scene with events, every onset gets a clip that `ffprobe` (Debian ffmpeg,
//! installed by scripts/setup-debian.sh) reads as one video and one audio stream,
//! lasting the pre-roll plus the post-roll, with a sidecar whose event time lies inside
//! the clip and whose SHA-256 is the model file's. Run once decoded as fast as possible
//! (VP8 in WebM) and once at real time, as a live source is (H.264 in Matroska through
//! openh264enc where GStreamer has it, with a label filter). Without ffprobe the test is
//! reported as skipped.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PRE: f64 = 2.0;
const POST: f64 = 1.5;
/// Keyframes come every second: a clip may start up to a second before its pre-roll.
const KEYFRAME_SLACK: f64 = 1.05;

fn has_command(name: &str) -> bool {
    Command::new(name).arg("-version").output().is_ok()
}

fn has_element(name: &str) -> bool {
    Command::new("gst-inspect-1.0")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `ffprobe` of a file: (codec types, format duration in seconds).
fn probe(path: &Path) -> (Vec<String>, f64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let types = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap_or("").to_string())
        .collect();
    let duration = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (types, duration)
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Onsets printed by `run --json`: (id-less) label and time.
fn onsets(stdout: &str) -> Vec<(String, f64)> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "event" && v["kind"] == "onset")
        .map(|v| {
            (
                v["label"].as_str().unwrap_or("").to_string(),
                v["time_s"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect()
}

/// Where the media lies on the runtime timeline: the first window's start and the end
/// record's end of the last frame.
fn bounds(stdout: &str) -> (f64, f64) {
    let records: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let first = records
        .iter()
        .find(|v| v["type"] == "prediction")
        .and_then(|v| v["start_s"].as_f64())
        .expect("a prediction");
    let end = records
        .iter()
        .find(|v| v["type"] == "end")
        .and_then(|v| v["media_end_s"].as_f64())
        .expect("an end record");
    (first, end)
}

fn sidecars(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut found: Vec<(PathBuf, Value)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .map(|p| {
                    let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                        .expect("sidecar is JSON");
                    (p, v)
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Checks every clip in `dir` against its sidecar and ffprobe; returns the labels.
fn check_clips(
    dir: &Path,
    (media_start, media_end): (f64, f64),
    extension: &str,
    model_sha: &str,
) -> Vec<String> {
    let mut labels = Vec::new();
    for (path, side) in sidecars(dir) {
        let clip = dir.join(side["clip"].as_str().expect("clip name"));
        assert_eq!(
            clip.extension().and_then(|e| e.to_str()),
            Some(extension),
            "{}",
            clip.display()
        );
        let (streams, duration) = probe(&clip);
        assert!(
            streams.contains(&"video".to_string()) && streams.contains(&"audio".to_string()),
            "{}: streams {streams:?}",
            clip.display()
        );
        let c = &side["capture"];
        let event_s = side["event"]["time_s"].as_f64().unwrap();
        let (start, end) = (c["start_s"].as_f64().unwrap(), c["end_s"].as_f64().unwrap());
        assert!(
            start <= event_s && event_s <= end,
            "{}: event at {event_s} s outside the clip {start}..{end} s",
            path.display()
        );
        // Pre-roll and post-roll are whole unless the media starts or ends inside them.
        let want_start = (event_s - PRE).max(media_start);
        let want_end = (event_s + POST).min(media_end);
        assert!(
            start <= want_start + 0.05 && start >= want_start - KEYFRAME_SLACK,
            "{}: starts at {start} s for a pre-roll from {want_start} s",
            path.display()
        );
        assert!(
            end >= want_end - 0.1,
            "{}: ends at {end} s before the post-roll's end {want_end} s",
            path.display()
        );
        assert!(
            duration >= want_end - want_start - 0.15 && duration <= end - start + 0.5,
            "{}: ffprobe says {duration} s for a clip of {start}..{end} s (asked {want_start}..{want_end})",
            clip.display()
        );
        let shas: Vec<&str> = side["model"]["sha256"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(shas.contains(&model_sha), "{}: {shas:?}", path.display());
        assert!(side["event"]["id"]
            .as_str()
            .is_some_and(|id| id.contains('-')));
        assert!(!side["scores"].as_array().unwrap().is_empty());
        assert_eq!(side["runtime"]["version"], env!("CARGO_PKG_VERSION"));
        labels.push(side["event"]["label"].as_str().unwrap().to_string());
    }
    labels
}

#[test]
fn every_onset_gets_a_playable_clip_with_its_sidecar() {
    if !has_command("ffprobe") {
        eprintln!("SKIPPED: ffprobe is not installed (scripts/setup-debian.sh installs ffmpeg)");
        return;
    }
    let dir = common::temp_dir("clips");
    let media = dir.join("scene.mkv");
    let run = common::avaction(
        &[
            "synth",
            "--out",
            media.to_str().unwrap(),
            "--seed",
            "4",
            "--duration",
            "14",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let model_sha = sha256(&common::repo("models/cavnet-small/model.onnx"));

    // As fast as possible: VP8 in WebM, every label.
    let fast = dir.join("fast");
    let pre = PRE.to_string();
    let post = POST.to_string();
    let run = common::avaction(
        &[
            "run",
            "--model",
            "cavnet-small",
            "--video",
            media.to_str().unwrap(),
            "--json",
            "--clips",
            fast.to_str().unwrap(),
            "--clip-pre-roll",
            &pre,
            "--clip-post-roll",
            &post,
        ],
        Duration::from_secs(180),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let events = onsets(&run.stdout);
    assert!(events.len() >= 3, "too few onsets: {events:?}");
    let labels = check_clips(&fast, bounds(&run.stdout), "webm", &model_sha);
    let mut want: Vec<String> = events.iter().map(|e| e.0.clone()).collect();
    let mut got = labels.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "one clip per onset");
    eprintln!("fast: {} onsets, {} clips", events.len(), labels.len());

    // At real time, like a live source; one label only.
    let (encoder, extension) = if has_element("openh264enc") && has_element("h264parse") {
        ("openh264enc", "mkv")
    } else {
        eprintln!("openh264enc or h264parse missing: the real-time run uses vp8enc");
        ("vp8enc", "webm")
    };
    let label = want[0].clone();
    let live = dir.join("live");
    let run = common::avaction(
        &[
            "run",
            "--model",
            "cavnet-small",
            "--video",
            media.to_str().unwrap(),
            "--realtime",
            "--json",
            "--clips",
            live.to_str().unwrap(),
            "--clip-pre-roll",
            &pre,
            "--clip-post-roll",
            &post,
            "--clip-encoder",
            encoder,
            "--clip-label",
            &label,
        ],
        Duration::from_secs(180),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let start = onsets(&run.stdout)
        .into_iter()
        .filter(|e| e.0 == label)
        .count();
    let labels = check_clips(&live, bounds(&run.stdout), extension, &model_sha);
    assert!(start >= 1, "no onset of {label:?} at real time");
    assert_eq!(labels.len(), start, "one clip per onset of {label:?}");
    assert!(labels.iter().all(|l| *l == label), "{labels:?}");
    eprintln!(
        "real time ({encoder}): {start} onsets of {label:?}, {} clips",
        labels.len()
    );
}
