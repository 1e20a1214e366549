//! The onnxruntime backend against the PyTorch goldens of every shipped bundle and the
//! exporter's bundle, `auto` choosing it, and its errors. The library comes from
//! `$AVACTION_ONNXRUNTIME`, else from the PyPI wheel in `.venv-train` (which `make test`
//! installs, `make byo`); where neither exists the tests say so and skip, except under
//! `CI`, where a missing library fails them.
#![cfg(feature = "onnxruntime")]

mod common;

use avaction::backend::{self, BackendChoice, BackendOptions};
use avaction::infer::verify::{verify, VerifyOptions};
use avaction::model::Bundle;
use std::path::PathBuf;
use std::time::Duration;

use common::onnxruntime_loaded as loaded;

#[test]
fn every_bundle_agrees_with_its_goldens_on_onnxruntime() {
    if !loaded() {
        return;
    }
    let mut bundles: Vec<PathBuf> = std::fs::read_dir(common::repo("models"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.toml").is_file())
        .collect();
    bundles.push(common::repo("tests/data/bundles/byo-mov-tiny"));
    bundles.sort();
    assert!(bundles.len() >= 5, "{bundles:?}");
    let opts = VerifyOptions {
        backend: BackendChoice::OnnxRuntime,
        repeat: 1,
    };
    for dir in bundles {
        let bundle = Bundle::load(&dir).expect("bundle");
        let report = verify(&bundle, &opts).expect("verify on onnxruntime");
        for c in &report.checks {
            println!("{}: {:<50} {:e}", dir.display(), c.name, c.max_diff);
            assert!(
                c.name.contains("onnxruntime") || c.ms.is_none(),
                "{}",
                c.name
            );
        }
        assert!(report.passed(), "{}: {report:?}", dir.display());
    }
}

#[test]
fn auto_prefers_onnxruntime_to_tract_without_a_gpu() {
    if !loaded() {
        return;
    }
    if backend::tensorrt_unavailable_reason().is_none() {
        println!("skipped: TensorRT works here, so auto picks it");
        return;
    }
    let bundle = Bundle::load(common::repo("models/cavnet-small")).unwrap();
    let (b, status) = backend::open(&bundle.graph(), &BackendOptions::default()).unwrap();
    assert_eq!((b.name(), status.active()), ("onnxruntime", "onnxruntime"));
    let tract = BackendOptions {
        choice: BackendChoice::Tract,
        ..BackendOptions::default()
    };
    assert_eq!(
        backend::open(&bundle.graph(), &tract).unwrap().0.name(),
        "tract"
    );
}

#[test]
fn a_wrong_library_path_is_named() {
    let run = common::avaction_env(
        &["verify", "models/cavnet-small", "--backend", "onnxruntime"],
        &[("AVACTION_ONNXRUNTIME", "/nonexistent/onnxruntime")],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stderr.contains("AVACTION_ONNXRUNTIME") && run.stderr.contains("/nonexistent"),
        "{}",
        run.stderr
    );
    // `devices` says why, and tract still serves `auto`
    let run = common::avaction_env(
        &["devices"],
        &[("AVACTION_ONNXRUNTIME", "/nonexistent/onnxruntime")],
        Duration::from_secs(60),
    );
    assert!(
        run.stdout
            .contains("onnxruntime: unavailable: $AVACTION_ONNXRUNTIME"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_fixed_dimension_that_disagrees_with_the_manifest_is_refused_at_load() {
    if !loaded() {
        return;
    }
    let bundle = Bundle::load(common::repo("models/mov-small")).unwrap();
    let mut encoder = bundle.staged().unwrap().encoders.remove(0).graph;
    encoder.inputs[0].dims[0] = 2; // the graph fixes a batch of 1
    encoder.output.dims[0] = 2;
    let ort = BackendOptions {
        choice: BackendChoice::OnnxRuntime,
        ..BackendOptions::default()
    };
    let err = backend::open(&encoder, &ort).err().map(|e| e.to_string());
    let msg = err.unwrap_or_default();
    assert!(
        msg.contains("video_encoder.onnx")
            && msg
                .contains("input `image` has shape [1, 3, 64, 64] in the graph but [2, 3, 64, 64]"),
        "{msg}"
    );
}
