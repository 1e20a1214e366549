//! The command works from any directory: bundles are found by name in
//! `$AVACTION_MODELS`, the user and system data folders and the source tree
//! (`runtime/model/search.rs`), and a missing one is reported with every place looked at.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs the binary from `/` with `env`; returns (exit code, stdout, stderr).
fn from_root(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    run_from_root(Path::new(env!("CARGO_BIN_EXE_avaction")), args, env)
}

/// Runs `bin` from `/` with `env`; returns (exit code, stdout, stderr).
fn run_from_root(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("run avaction");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn the_default_model_runs_from_the_root_directory() {
    let (code, stdout, stderr) = from_root(
        &[
            "run",
            "--video",
            "test:ball",
            "--audio",
            "none",
            "--duration",
            "2",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(r#""type":"prediction""#), "{stdout}");
    let (code, stdout, stderr) = from_root(&["inspect", "cavnet-small"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("cavnet-small"), "{stdout}");
}

#[test]
fn bundles_are_found_in_avaction_models_by_name() {
    let dir = common::temp_dir("models-env");
    let bundle = dir.join("my-model");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(common::repo("models/cavnet-small"))
        .arg(&bundle)
        .status()
        .is_ok_and(|s| s.success());
    assert!(copied, "copy the bundle");
    let models = dir.display().to_string();
    let (code, stdout, stderr) = from_root(
        &[
            "run",
            "--model",
            "my-model",
            "--video",
            "test:ball",
            "--audio",
            "none",
            "--duration",
            "1",
            "--json",
        ],
        &[("AVACTION_MODELS", &models)],
    );
    // cavnet-small needs audio: found, then refused for the missing audio, by name.
    assert_eq!(code, Some(1), "{stdout} {stderr}");
    assert!(stderr.contains("needs audio"), "{stderr}");
}

#[test]
fn a_missing_bundle_lists_where_it_looked() {
    let (code, _, stderr) = from_root(
        &[
            "run",
            "--model",
            "no-such-bundle",
            "--video",
            "test:ball",
            "--audio",
            "none",
        ],
        &[("AVACTION_MODELS", "/nonexistent/models")],
    );
    assert_eq!(code, Some(1), "{stderr}");
    for place in [
        "/nonexistent/models/no-such-bundle",
        "/usr/share/avaction/models/no-such-bundle",
        "AVACTION_MODELS",
    ] {
        assert!(stderr.contains(place), "{place} missing from: {stderr}");
    }
}

#[test]
fn the_installed_binary_runs_the_default_model_from_the_root_directory() {
    // `cargo install --root` into a temp dir, reusing this build's artifacts (the dev
    // profile, as the tests were built): a copy, not a second build.
    let root = common::temp_dir("cargo-install");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    // The target folder this test binary was built into: `<target>/debug/avaction`.
    let target_dir = Path::new(env!("CARGO_BIN_EXE_avaction"))
        .ancestors()
        .nth(2)
        .expect("target folder");
    let out = Command::new(cargo)
        .args(["install", "--debug", "--locked", "--offline", "--path"])
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg("--root")
        .arg(&root)
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("cargo install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An empty AVACTION_MODELS names no folder: the bundle comes from the search.
    let (code, stdout, stderr) = run_from_root(
        &root.join("bin/avaction"),
        &[
            "run",
            "--video",
            "test:ball",
            "--audio",
            "none",
            "--duration",
            "2",
            "--json",
        ],
        &[("AVACTION_MODELS", "")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(r#""type":"prediction""#), "{stdout}");
    std::fs::remove_dir_all(&root).ok();
}
