//! The label sentence encoder (`avaction::text::TextEncoder`): tract + the Rust tokenizer
//! against the goldens of tests/golden/make_text_goldens.py (transformers' BertModel and
//! pure-Python BertTokenizer), cosine sanity on the compositional labels, clear errors on a
//! missing or corrupt model folder, and the folder lookup.
//!
//! The model folder models/minilm is generated (scripts/setup-minilm.sh, `make minilm`), not
//! committed: without it the tests that need it say so and return, except under CI (env `CI`
//! set), where the setup step has run and its absence is a failure.

mod common;

use avaction::text::{TextEncoder, DIM, MAX_TOKENS};
use avaction::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(serde::Deserialize)]
struct Goldens {
    max_tokens: usize,
    dim: usize,
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    sentence: String,
    ids: Vec<u32>,
}

/// The generated model folder, or `None` (after saying why) when it is absent outside CI.
fn model_dir() -> Option<PathBuf> {
    let dir = common::repo("models/minilm");
    if dir.join("model.onnx").is_file() && dir.join("tokenizer.json").is_file() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!("models/minilm missing under CI: the setup step (scripts/setup-minilm.sh) must run first");
    }
    println!("skipped: models/minilm missing (run scripts/setup-minilm.sh)");
    None
}

fn goldens() -> (Goldens, Vec<f32>) {
    let meta: Goldens = serde_json::from_slice(
        &std::fs::read(common::repo("tests/data/text/sentences.json")).expect("sentences.json"),
    )
    .expect("parse sentences.json");
    let values = common::f32_le(
        &std::fs::read(common::repo("tests/data/text/embeddings.f32")).expect("embeddings.f32"),
    );
    assert_eq!(meta.dim, DIM);
    assert_eq!(meta.max_tokens, MAX_TOKENS);
    assert_eq!(values.len(), meta.cases.len() * DIM);
    (meta, values)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn tokens_and_embeddings_match_the_reference() {
    let Some(dir) = model_dir() else { return };
    let (meta, expected) = goldens();
    let mut encoder = TextEncoder::load(&dir).expect("load models/minilm");
    let mut worst = 0.0f32;
    for (case, want) in meta.cases.iter().zip(expected.chunks_exact(DIM)) {
        let ids = encoder.tokenize(&case.sentence).expect("tokenize");
        assert_eq!(ids, case.ids, "token ids of {:?}", case.sentence);
        let got = encoder.embed(&case.sentence).expect("embed");
        assert_eq!(got.len(), DIM);
        let norm = got.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-5,
            "norm {norm} for {:?}",
            case.sentence
        );
        let diff = common::max_abs_diff(&got, want);
        assert!(diff <= 1e-4, "{:?}: max abs diff {diff:e}", case.sentence);
        worst = worst.max(diff);
    }
    println!(
        "text_encoder: {} sentences (2 to {MAX_TOKENS} tokens), max abs diff vs reference {worst:.2e}",
        meta.cases.len()
    );
    // The batch call gives the same vectors as one call per sentence.
    let sentences: Vec<String> = meta.cases.iter().map(|c| c.sentence.clone()).collect();
    let all = encoder.embed_all(&sentences).expect("embed_all");
    assert_eq!(all.len(), sentences.len());
    for (got, want) in all.iter().zip(expected.chunks_exact(DIM)) {
        assert!(common::max_abs_diff(got, want) <= 1e-4);
    }
}

#[test]
fn similar_labels_are_closer() {
    let Some(dir) = model_dir() else { return };
    let mut encoder = TextEncoder::load(&dir).expect("load models/minilm");
    let e = encoder
        .embed_all(&[
            "a disc falls with a click",
            "a disc drops with a click",
            "nothing happens",
            "two squares collide with a thud",
            "two boxes crash into each other with a thud",
        ])
        .expect("embed");
    assert!(cosine(&e[0], &e[1]) > cosine(&e[0], &e[2]));
    assert!(cosine(&e[0], &e[1]) > cosine(&e[0], &e[3]));
    assert!(cosine(&e[3], &e[4]) > cosine(&e[3], &e[2]));
    assert!(cosine(&e[0], &e[1]) > 0.8, "{}", cosine(&e[0], &e[1]));
    // Case and surrounding spaces do not change the embedding (lower-casing tokenizer).
    let loud = encoder
        .embed("  A DISC FALLS WITH A CLICK ")
        .expect("embed");
    assert!(common::max_abs_diff(&loud, &e[0]) < 1e-6);
}

/// Speed of the label sentences, tract on this thread: printed, checked only loosely.
#[test]
fn speed_per_sentence() {
    let Some(dir) = model_dir() else { return };
    let (meta, _) = goldens();
    let labels: Vec<&str> = meta
        .cases
        .iter()
        .map(|c| c.sentence.as_str())
        .filter(|s| s.len() < 80)
        .collect();
    let mut encoder = TextEncoder::load(&dir).expect("load models/minilm");
    encoder.embed_all(&labels).expect("warm-up");
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        encoder.embed_all(&labels).expect("embed");
    }
    let ms = started.elapsed().as_secs_f64() * 1e3 / (rounds * labels.len()) as f64;
    let long = &meta.cases.last().expect("cases").sentence;
    let started = Instant::now();
    encoder.embed(long).expect("embed long");
    let long_ms = started.elapsed().as_secs_f64() * 1e3;
    println!(
        "text_encoder: tract, 1 thread: {ms:.1} ms/sentence for {} short labels (2-15 tokens), \
         {long_ms:.0} ms for one of {MAX_TOKENS} tokens",
        labels.len()
    );
    assert!(ms < 1000.0, "{ms} ms per short sentence");
}

/// A tokenizer.json the crate accepts, with no model behind it: for the model.onnx errors.
const TINY_TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,
"added_tokens":[],"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},
"post_processor":null,"decoder":null,
"model":{"type":"WordLevel","vocab":{"[UNK]":0,"a":1},"unk_token":"[UNK]"}}"#;

fn load_err(dir: &Path) -> avaction::Error {
    let e = TextEncoder::load(dir).expect_err("load must fail");
    println!("{e}");
    e
}

#[test]
fn missing_or_corrupt_folder_is_a_clear_error() {
    let root = common::temp_dir("text-encoder-errors");

    let missing = root.join("nowhere");
    let e = load_err(&missing);
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(
        e.message().contains("nowhere") && e.message().contains("setup-minilm"),
        "{e}"
    );

    let dir = root.join("empty");
    std::fs::create_dir_all(&dir).unwrap();
    let e = load_err(&dir);
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.message().contains("tokenizer.json"), "{e}");

    std::fs::write(dir.join("tokenizer.json"), "{\"not\": \"a tokenizer\"}").unwrap();
    let e = load_err(&dir);
    assert_eq!(e.kind(), ErrorKind::Model);
    assert!(e.message().contains("tokenizer.json"), "{e}");

    std::fs::write(dir.join("tokenizer.json"), TINY_TOKENIZER).unwrap();
    let e = load_err(&dir);
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.message().contains("model.onnx"), "{e}");

    std::fs::write(dir.join("model.onnx"), b"\x08\x07garbage, not protobuf").unwrap();
    let e = load_err(&dir);
    assert_eq!(e.kind(), ErrorKind::Model);
    assert!(e.message().contains("model.onnx"), "{e}");

    // A real ONNX graph of the wrong kind (an image model of the repository).
    std::fs::copy(
        common::repo("models/cavnet-small/model.onnx"),
        dir.join("model.onnx"),
    )
    .unwrap();
    let e = load_err(&dir);
    assert_eq!(e.kind(), ErrorKind::Model);
    assert!(e.message().contains("model.onnx"), "{e}");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn locate_prefers_the_environment_then_the_bundle_neighbour() {
    let root = common::temp_dir("text-encoder-locate");
    let bundle = root.join("models").join("my-model");
    std::fs::create_dir_all(&bundle).unwrap();
    let beside = root.join("models").join("minilm");
    // Only this test touches the variable; the other tests name their folder directly.
    std::env::remove_var("AVACTION_MINILM");
    assert_ne!(
        TextEncoder::locate(Some(&bundle)),
        Some(bundle.join("..").join("minilm")),
        "no model.onnx there yet"
    );
    std::fs::create_dir_all(&beside).unwrap();
    std::fs::write(beside.join("model.onnx"), b"").unwrap();
    assert_eq!(
        TextEncoder::locate(Some(&bundle)),
        Some(bundle.join("..").join("minilm"))
    );
    std::env::set_var("AVACTION_MINILM", root.join("elsewhere"));
    assert_eq!(
        TextEncoder::locate(Some(&bundle)),
        Some(root.join("elsewhere"))
    );
    std::env::remove_var("AVACTION_MINILM");
    std::fs::remove_dir_all(&root).ok();
}

/// The encoder can be built on one thread and moved to another (e.g. a runtime worker).
#[test]
fn encoder_is_send() {
    fn send<T: Send>() {}
    send::<TextEncoder>();
}
