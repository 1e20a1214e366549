//! Real time through a real microphone path: a synthetic scene's audio is played
//! into a virtual PulseAudio source and captured by cpal while its video is played
//! through GStreamer at real time. Labels must arrive continuously, the measured
//! audio-video skew must stay within one frame, and memory must not grow.
//!
//! Runs only inside `tests/virtual_mic.sh` (which sets AVACTION_TEST_PULSE=1);
//! elsewhere it reports itself skipped.

mod common;

use common::{avaction, temp_dir};
use serde_json::Value;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn live_microphone_and_realtime_video() {
    if std::env::var("AVACTION_TEST_PULSE").as_deref() != Ok("1") {
        println!("skipped: needs the virtual microphone (run through tests/virtual_mic.sh)");
        return;
    }
    let dir = temp_dir("realtime");
    let media = dir.join("scene.mkv");
    let synth = avaction(
        &[
            "synth",
            "--seed",
            "9002",
            "--duration",
            "20",
            "--wav",
            "--out",
            media.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(synth.code, Some(0), "synth: {}", synth.stderr);
    let wav = std::fs::File::open(dir.join("scene.wav")).unwrap();
    let mut player = Command::new("pacat")
        .args([
            "--latency-msec=20",
            "--format=s16le",
            "--rate=48000",
            "--channels=2",
        ])
        .stdin(wav)
        .spawn()
        .expect("pacat");

    let seconds = 14.0;
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_avaction"))
        .args([
            "run",
            "--video",
            media.to_str().unwrap(),
            "--realtime",
            "--audio",
            "mic",
            "--json",
            "--stats",
        ])
        .args(["--duration", &seconds.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn avaction");
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).ok();
        s
    });
    let mut rss = Vec::new();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        let t = started.elapsed().as_secs_f64();
        if (t > 5.0 && rss.is_empty()) || (t > 12.5 && rss.len() == 1) {
            if let Some(r) = rss_kib(pid) {
                rss.push(r);
            }
        }
        assert!(
            t < seconds + 30.0,
            "avaction did not stop after --duration (hang)"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    player.kill().ok();
    player.wait().ok();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .ok();
    assert!(status.success(), "avaction failed: {stderr}");
    let out = reader.join().unwrap();

    let predictions: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "prediction")
        .collect();
    // 12.5 windows/s nominal; allow for start-up and skipped windows
    assert!(
        predictions.len() as f64 >= (seconds - 3.0) * 12.5 * 0.7,
        "only {} predictions",
        predictions.len()
    );
    let ends: Vec<f64> = predictions
        .iter()
        .map(|p| p["end_s"].as_f64().unwrap())
        .collect();
    let max_gap = ends.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(max_gap < 0.5, "labels stalled for {max_gap:.2} s");
    let skews: Vec<f64> = predictions
        .iter()
        .filter_map(|p| p["skew_ms"].as_f64())
        .collect();
    assert!(
        skews.len() as f64 >= 0.8 * predictions.len() as f64,
        "{} of {} windows had audio",
        skews.len(),
        predictions.len()
    );
    let worst = skews.iter().fold(0.0f64, |m, s| m.max(s.abs()));
    assert!(
        worst <= 40.0,
        "audio-video skew {worst:.1} ms exceeds one frame (40 ms)"
    );
    let stats: Value =
        serde_json::from_str(stderr.lines().last().unwrap_or("{}")).expect("stats JSON");
    println!(
        "{} predictions, max gap {max_gap:.3} s, worst skew {worst:.1} ms, rss {rss:?} KiB",
        predictions.len()
    );
    println!("stats: {stats}");
    assert_eq!(stats["windows_dropped"], 0);
    if let [early, late] = rss[..] {
        assert!(
            late < early + 20 * 1024,
            "memory grew from {early} KiB to {late} KiB in 7.5 s"
        );
    }
}
