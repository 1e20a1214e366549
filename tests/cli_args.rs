//! Hostile command-line values (issue 14): each is refused with the option's name and
//! the rule, exit code 2 (a usage error), no panic, no hang; a valid run still works.

mod common;

use common::{avaction, temp_dir};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// Runs the CLI and checks it refused the value: exit code 2, the option named, no panic.
fn refused(args: &[&str], needles: &[&str]) -> String {
    let run = avaction(args, LIMIT);
    assert_eq!(
        run.code,
        Some(2),
        "{args:?}: exit code {:?}, stderr: {}",
        run.code,
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "{args:?}: stderr lacks {n:?}: {}",
            run.stderr
        );
    }
    run.stderr.lines().next().unwrap_or_default().to_string()
}

#[test]
fn durations_must_be_finite_and_positive() {
    for bad in ["inf", "1e300", "NaN", "0", "-1", "-inf"] {
        // `--duration=-1`: as two words clap reads `-1` as an unknown flag (also exit 2)
        let arg = format!("--duration={bad}");
        let first = refused(
            &["run", "--video", "test:ball", "--audio", "none", &arg],
            &["--duration", "seconds"],
        );
        println!("--duration {bad}: {first}");
    }
    refused(
        &["synth", "--out", "x.mkv", "--duration", "inf"],
        &["--duration"],
    );
    refused(
        &["features", "--seeds", "1", "--out", "x", "--duration", "0"],
        &["--duration"],
    );
}

#[test]
fn clip_settings_are_checked_before_anything_opens() {
    for (flag, bad) in [
        ("--clip-pre-roll", "121"),
        ("--clip-post-roll", "-1"),
        ("--clip-pre-roll", "NaN"),
        ("--clip-max-days", "0"),
        ("--clip-max-days", "inf"),
    ] {
        let arg = format!("{flag}={bad}");
        let first = refused(
            &["run", "--video", "test:ball", "--audio", "none", &arg],
            &[
                flag,
                if flag.ends_with("days") {
                    "days"
                } else {
                    "seconds"
                },
            ],
        );
        println!("{flag} {bad}: {first}");
    }
    // Refused by the runtime (exit 1), naming what is wrong, before any source opens.
    let dir = temp_dir("clips-args");
    let file = dir.join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let inside = file.join("clips");
    for (args, needle) in [
        (
            vec!["--clips", inside.to_str().unwrap()],
            "cannot create the clips folder",
        ),
        (
            vec![
                "--clips",
                dir.to_str().unwrap(),
                "--clip-encoder",
                "nvh264enc",
            ],
            "unknown clip encoder 'nvh264enc'",
        ),
    ] {
        let mut all = vec![
            "run",
            "--video",
            "camera:/dev/nonexistent",
            "--audio",
            "none",
        ];
        all.extend(args);
        let run = avaction(&all, LIMIT);
        assert_eq!(run.code, Some(1), "{all:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{all:?}: {}", run.stderr);
        assert!(
            !run.stderr.contains("/dev/nonexistent"),
            "{all:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn counts_must_be_at_least_one() {
    for (flag, bad) in [("--hop", "0"), ("--threads", "0"), ("--threads", "100000")] {
        let first = refused(
            &["run", "--video", "test:ball", "--audio", "none", flag, bad],
            &[flag],
        );
        println!("{flag} {bad}: {first}");
    }
    refused(
        &["features", "--seeds", "1", "--out", "x", "--hop", "0"],
        &["--hop"],
    );
}

#[test]
fn empty_sentences_are_refused() {
    for bad in ["", "   "] {
        let first = refused(
            &["run", "--video", "test:ball", "--labels", bad],
            &["--labels", "empty"],
        );
        println!("--labels {bad:?}: {first}");
    }
}

#[test]
fn label_files_that_never_end_or_block_are_refused() {
    let dir = temp_dir("cli-args-fifo");
    let fifo = dir.join("labels.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    let mut cases = vec!["/dev/zero".to_string()];
    if made {
        cases.push(fifo.display().to_string());
    }
    for file in &cases {
        let run = avaction(
            &[
                "run",
                "--video",
                "test:ball",
                "--audio",
                "none",
                "--duration",
                "1",
                "--label-file",
                file,
            ],
            LIMIT,
        );
        assert_eq!(run.code, Some(1), "{file}: {}", run.stderr);
        assert!(
            run.stderr.contains("--label-file") && run.stderr.contains("not a regular file"),
            "{}",
            run.stderr
        );
        assert!(
            run.elapsed < Duration::from_secs(10),
            "{file}: took {:?}",
            run.elapsed
        );
        println!("--label-file {file}: {}", run.stderr.trim());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn seed_ranges_are_bounded() {
    let run = avaction(
        &[
            "features",
            "--seeds",
            "1-18446744073709551615",
            "--out",
            "x",
        ],
        LIMIT,
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("--seeds"), "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(10));
}
