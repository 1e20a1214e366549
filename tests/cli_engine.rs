//! The command line's TensorRT surface on a machine without TensorRT (CI): `devices`,
//! `inspect` and `engine build` say why TensorRT is unavailable instead of failing
//! silently or panicking. Where TensorRT works these checks are skipped.

mod common;

use std::time::Duration;

/// Runs the CLI (within 60 s) and returns (success, stdout, stderr).
fn avaction(args: &[&str]) -> (bool, String, String) {
    let run = common::avaction(args, Duration::from_secs(60));
    (run.code == Some(0), run.stdout, run.stderr)
}

#[test]
fn without_tensorrt_every_command_says_why() {
    if let Ok(gpu) = avaction::backend::tensorrt::availability() {
        eprintln!("skipped: TensorRT {} works here", gpu.tensorrt_version);
        return;
    }
    let reason = avaction::backend::tensorrt_unavailable_reason().expect("reason");

    let (ok, stdout, _) = avaction(&["devices"]);
    assert!(ok);
    assert!(
        stdout.contains(&format!("tensorrt: unavailable: {reason}")),
        "{stdout}"
    );
    assert!(stdout.contains("engine cache: "), "{stdout}");

    let (ok, stdout, _) = avaction(&["inspect", "models/cavnet-small"]);
    assert!(ok);
    assert!(
        stdout.contains("backend: tract (tensorrt unavailable: "),
        "{stdout}"
    );

    let (ok, _, stderr) = avaction(&["engine", "build", "models/cavnet-small"]);
    assert!(!ok, "engine build must fail without TensorRT");
    assert!(
        stderr.contains("tensorrt: ") && stderr.contains(&reason),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (ok, _, stderr) = avaction(&["engine", "build", "models/nope"]);
    assert!(!ok);
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (ok, _, stderr) = avaction(&[
        "engine",
        "build",
        "models/cavnet-small",
        "--precision",
        "fp8",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("fp8") && stderr.contains("fp16"),
        "{stderr}"
    );
}
