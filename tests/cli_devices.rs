//! `avaction devices` lists capture devices, not ALSA's converter and routing plugins
//! (`lavrate`, `upmix`, `null`…), unless `--all` is given.

mod common;

use std::time::Duration;

fn microphone_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .skip_while(|l| *l != "microphones:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.trim_start().starts_with('('))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn devices_hides_alsa_plugins_unless_asked() {
    let plain = common::avaction(&["devices"], Duration::from_secs(60));
    let all = common::avaction(&["devices", "--all"], Duration::from_secs(60));
    assert_eq!(
        (plain.code, all.code),
        (Some(0), Some(0)),
        "{}",
        plain.stderr
    );
    let (shown, every) = (
        microphone_lines(&plain.stdout),
        microphone_lines(&all.stdout),
    );
    for line in &shown {
        let id = line.split(' ').next().unwrap_or_default();
        assert!(avaction::capture::audio::is_capture_device(id), "{line}");
        assert!(every.contains(line), "{line} missing from --all");
    }
    let hidden: Vec<&String> = every.iter().filter(|l| !shown.contains(l)).collect();
    for line in &hidden {
        let id = line.split(' ').next().unwrap_or_default();
        assert!(!avaction::capture::audio::is_capture_device(id), "{line}");
    }
    if !hidden.is_empty() {
        assert!(
            plain.stdout.contains("hidden; --all shows them"),
            "{}",
            plain.stdout
        );
    }
    println!("shown {shown:?}, hidden {}", hidden.len());
}
