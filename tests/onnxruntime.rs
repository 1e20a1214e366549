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

/// The library folder: `$AVACTION_ONNXRUNTIME`, else the wheel's in `.venv-train`.
fn library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AVACTION_ONNXRUNTIME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let lib = common::repo(".venv-train/lib");
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/onnxruntime/capi"))
        .find(|p| p.is_dir())
}

/// Loads the library for this process; `false` (the test skips) where there is none.
fn loaded() -> bool {
    let Some(path) = library() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have onnxruntime: `make byo` installs it in .venv-train"
        );
        println!("skipped: no onnxruntime library (set AVACTION_ONNXRUNTIME or run `make byo`)");
        return false;
    };
    backend::onnxruntime::use_library(&path).expect("the onnxruntime library loads");
    assert_eq!(backend::onnxruntime_unavailable_reason(), None);
    true
}

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
