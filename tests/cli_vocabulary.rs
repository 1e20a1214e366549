//! Open vocabulary from the command line: `inspect` shows stages and label source,
//! `run --labels` adds sentences (embedded on the device by MiniLM), and every way it
//! cannot work says why.

mod common;

use common::{avaction, avaction_env, temp_dir};
use serde_json::Value;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// Renders a compositional scene of `classes` to `media`.
fn compositional_scene(media: &std::path::Path, classes: &str, seed: &str, seconds: &str) {
    let out = media.to_str().unwrap();
    let synth = avaction(
        &[
            "synth",
            "--task",
            "compositional",
            "--classes",
            classes,
            "--seed",
            seed,
            "--duration",
            seconds,
            "--out",
            out,
        ],
        LIMIT,
    );
    assert_eq!(synth.code, Some(0), "{}", synth.stderr);
}

#[test]
fn inspect_shows_stages_label_source_and_decoder() {
    let run = avaction(&["inspect", "models/mov-small"], LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for expect in [
        "graph: staged",
        "encoder frames",
        "encoder logmel",
        "(4 mel frames each)",
        "head    stages/head.onnx",
        "labels: open vocabulary, all-MiniLM-L6-v2",
        "fused (tau 0.01",
        "video (tau 0.003",
        "label source: 33 precomputed",
        "decoder: Softmax",
        "nothing happens",
    ] {
        assert!(
            run.stdout.contains(expect),
            "missing {expect:?} in:\n{}",
            run.stdout
        );
    }
    let closed = avaction(&["inspect", "models/cavnet-small"], LIMIT);
    assert!(closed.stdout.contains("single graph") && closed.stdout.contains("labels: fixed"));
}

#[test]
fn labels_on_a_closed_set_model_are_refused() {
    let run = avaction(
        &[
            "run",
            "--model",
            "models/cavnet-small",
            "--video",
            "test:ball",
            "--audio",
            "none",
            "--labels",
            "a cat",
        ],
        LIMIT,
    );
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("fixed label set"), "{}", run.stderr);
}

#[test]
fn a_new_sentence_without_the_text_model_says_what_to_do() {
    let dir = temp_dir("no-minilm");
    let missing = dir.join("minilm");
    let run = avaction_env(
        &[
            "run",
            "--model",
            "models/mov-small",
            "--video",
            "test:ball",
            "--labels",
            "a ball bounces with a click",
        ],
        &[("AVACTION_MINILM", missing.to_str().unwrap())],
        LIMIT,
    );
    assert_ne!(run.code, Some(0));
    assert!(
        run.stderr.contains(missing.to_str().unwrap()),
        "{}",
        run.stderr
    );
    // a held-out sentence has a precomputed embedding in the bundle: no text model needed
    let media = dir.join("novel.mkv");
    compositional_scene(&media, "novel", "9010", "4");
    let run = avaction_env(
        &[
            "run",
            "--model",
            "models/mov-small",
            "--video",
            media.to_str().unwrap(),
            "--json",
            "--labels",
            "a disc falls with a scream",
        ],
        &[("AVACTION_MINILM", missing.to_str().unwrap())],
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.lines().count() > 10);
}

#[test]
fn labels_added_on_the_command_line_are_scored() {
    if !common::repo("models/minilm/model.onnx").is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "models/minilm missing under CI: make test runs scripts/setup-minilm.sh first"
        );
        println!("skipped: models/minilm missing (run scripts/setup-minilm.sh)");
        return;
    }
    let dir = temp_dir("labels");
    let media = dir.join("scene.mkv");
    compositional_scene(&media, "seen", "9011", "6");
    let file = dir.join("labels.txt");
    std::fs::write(&file, "a red ball bounces twice\n\n").unwrap();
    let run = avaction_env(
        &[
            "run",
            "--model",
            "models/mov-small",
            "--video",
            media.to_str().unwrap(),
            "--json",
            "--labels",
            "a ball bounces with a click",
            "--labels",
            "nothing happens",
            "--label-file",
            file.to_str().unwrap(),
        ],
        &[("RUST_LOG", "avaction=info")],
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // "nothing happens" is already a label; the two new sentences go through MiniLM
    assert!(
        run.stderr
            .contains("labels: 29 (27 precomputed, 2 embedded on this device by the text model)"),
        "{}",
        run.stderr
    );
    let mut predictions = 0;
    for line in run.stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["type"] == "prediction" {
            predictions += 1;
            let mut sum = 0.0;
            for t in v["top"].as_array().unwrap() {
                let s = t["score"].as_f64().unwrap();
                assert!((0.0..=1.0 + 1e-6).contains(&s), "{line}");
                sum += s;
            }
            assert!(
                sum <= 1.0 + 1e-4,
                "top-3 probabilities sum to {sum}: {line}"
            );
        }
    }
    assert!(predictions > 50, "{predictions} predictions for 6 s");
}
