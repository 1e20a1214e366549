//! Offline end to end: a synthetic scene whose seed was never used in training goes
//! through `avaction run --json` (GStreamer decode, frontends, tract, decoder); the
//! predictions and events are scored against the scene's ground truth.

mod common;

use common::{avaction, temp_dir};
use serde_json::Value;
use std::time::Duration;

/// Seeds 1-99 are reserved for training and validation (models/train/README.md).
const TEST_SEED: &str = "9001";
const DURATION: &str = "40";

struct Truth {
    events: Vec<(String, f64, f64)>,
}

impl Truth {
    fn label_at(&self, t: f64) -> &str {
        self.events
            .iter()
            .find(|(_, s, e)| t >= *s && t < *e)
            .map_or("background", |(l, _, _)| l.as_str())
    }
}

#[test]
fn synthetic_scene_events_match_ground_truth() {
    let dir = temp_dir("e2e");
    let media = dir.join("scene.mkv");
    let synth = avaction(
        &[
            "synth",
            "--seed",
            TEST_SEED,
            "--duration",
            DURATION,
            "--out",
            media.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(synth.code, Some(0), "synth failed: {}", synth.stderr);
    let gt: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("scene.json")).unwrap()).unwrap();
    let truth = Truth {
        events: gt["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["label"].as_str().unwrap().to_string(),
                    e["start_s"].as_f64().unwrap(),
                    e["end_s"].as_f64().unwrap(),
                )
            })
            .collect(),
    };
    let labels: Vec<String> = gt["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().into())
        .collect();

    let run = avaction(
        &[
            "run",
            "--video",
            media.to_str().unwrap(),
            "--json",
            "--stats",
        ],
        Duration::from_secs(300),
    );
    assert_eq!(run.code, Some(0), "run failed: {}", run.stderr);

    // window-level accuracy per class (truth at the window centre)
    let mut hits = vec![0usize; labels.len()];
    let mut totals = vec![0usize; labels.len()];
    let mut onsets: Vec<(String, f64)> = Vec::new();
    let mut last_end = 0.0f64;
    let mut windows = 0;
    for line in run.stdout.lines() {
        let v: Value = serde_json::from_str(line).expect("one JSON object per line");
        match v["type"].as_str() {
            Some("prediction") => {
                windows += 1;
                let (s, e) = (v["start_s"].as_f64().unwrap(), v["end_s"].as_f64().unwrap());
                assert!(e > last_end - 1e-9, "windows go forward in time");
                last_end = e;
                let skew = v["skew_ms"].as_f64().expect("every window has audio");
                assert!(skew.abs() <= 40.0, "skew {skew} ms exceeds one frame");
                let truth_label = truth.label_at((s + e) / 2.0);
                let k = labels.iter().position(|l| l == truth_label).unwrap();
                totals[k] += 1;
                if v["top"][0]["label"].as_str() == Some(truth_label) {
                    hits[k] += 1;
                }
            }
            Some("event") => {
                if v["kind"] == "onset" {
                    onsets.push((
                        v["label"].as_str().unwrap().into(),
                        v["time_s"].as_f64().unwrap(),
                    ));
                }
            }
            other => panic!("unknown output type {other:?}"),
        }
    }
    let duration: f64 = DURATION.parse().unwrap();
    // 16-frame windows every 2 frames at 25 fps
    let expected = ((duration * 25.0 - 16.0) / 2.0) as usize;
    assert!(
        windows + 2 >= expected,
        "{windows} windows, expected about {expected}"
    );

    // event-level: an onset of the right label inside the event (0.5 s slack)
    let mut found = 0;
    let mut onset_err = Vec::new();
    for (label, s, e) in &truth.events {
        if let Some((_, t)) = onsets
            .iter()
            .find(|(l, t)| l == label && *t >= s - 0.5 && *t <= *e)
        {
            found += 1;
            onset_err.push((t - s).abs());
        }
    }
    let false_onsets = onsets
        .iter()
        .filter(|(l, t)| {
            !truth
                .events
                .iter()
                .any(|(tl, s, e)| tl == l && *t >= s - 0.5 && *t <= *e)
        })
        .count();
    println!("class            windows  accuracy");
    for (k, l) in labels.iter().enumerate() {
        let acc = hits[k] as f64 / totals[k].max(1) as f64;
        println!("{l:<16} {:>7}  {acc:.3}", totals[k]);
    }
    let acc = hits.iter().sum::<usize>() as f64 / totals.iter().sum::<usize>().max(1) as f64;
    let recall = found as f64 / truth.events.len().max(1) as f64;
    let mean_onset = onset_err.iter().sum::<f64>() / onset_err.len().max(1) as f64;
    println!(
        "window accuracy {acc:.3}; events found {found}/{} ({recall:.3}), false onsets {false_onsets}, mean onset error {mean_onset:.3} s",
        truth.events.len()
    );
    println!("stats: {}", run.stderr.trim());
    let stats: Value = serde_json::from_str(run.stderr.lines().last().unwrap_or("{}"))
        .expect("stats JSON on stderr");
    assert_eq!(stats["frames"], 1000, "a file is decoded completely");
    assert_eq!(stats["windows_dropped"], 0, "a file loses no window");
    assert_eq!(stats["windows_skipped"], 0, "a file skips no window");
    // chance is 1/6 per window; thresholds sit below what the shipped model reaches
    assert!(acc >= 0.75, "window accuracy {acc:.3} below 0.75");
    assert!(recall >= 0.85, "event recall {recall:.3} below 0.85");
    assert!(mean_onset <= 0.4, "mean onset error {mean_onset:.3} s");
}
