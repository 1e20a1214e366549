//! End-to-end benchmark: a synthetic scene from a file through the full runtime
//! (GStreamer decode, flow, log-mel, tract, decoder) as fast as possible. Prints one
//! table: frames/s and windows/s as ratios to real time (25 fps input, 12.5 windows/s
//! at the model's hop), and against decode alone measured in the same run.
//!
//! `cargo bench --bench pipeline [-- SECONDS]`

use avaction::capture::video::{VideoCapture, VideoConfig};
use avaction::capture::{CaptureEvent, CaptureStats, VideoSource};
use avaction::clock::Timeline;
use avaction::synth::{self, SceneConfig};
use avaction::{AudioSource, Runtime};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn main() -> avaction::Result<()> {
    let seconds: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30.0);
    let root = env!("CARGO_MANIFEST_DIR");
    let media = std::env::temp_dir().join(format!("avaction-bench-{}.mkv", std::process::id()));
    let config = SceneConfig {
        seed: 777,
        duration_s: seconds,
        ..SceneConfig::default()
    };
    synth::render_to_file(&config, &media)?;
    let uri = VideoSource::Uri(media.display().to_string());

    // reference: decode + scale only, same pipeline, no frontends or model
    let (tx, rx) = mpsc::sync_channel(64);
    let t0 = Instant::now();
    let mut cap = VideoCapture::start(
        &uri,
        &VideoConfig {
            audio_rate: Some(16_000),
            ..VideoConfig::new(64, 64, 25)
        },
        Timeline::start(),
        tx,
        Arc::new(CaptureStats::default()),
    )?;
    let mut frames = 0u64;
    while let Ok(ev) = rx.recv_timeout(Duration::from_secs(30)) {
        match ev {
            CaptureEvent::Frame(_) => frames += 1,
            CaptureEvent::EndOfStream | CaptureEvent::Cut(_) | CaptureEvent::Failed(_) => break,
            CaptureEvent::Audio(_) | CaptureEvent::Gap(_) => {}
        }
    }
    cap.stop();
    let decode_fps = frames as f64 / t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let runtime = Runtime::builder()
        .model(format!("{root}/models/cavnet-small"))
        .video(uri)
        .audio(AudioSource::FromVideo)
        .build()?;
    let mut predictions = 0u64;
    for output in runtime.outputs() {
        if matches!(output, avaction::Output::Prediction(_)) {
            predictions += 1;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let stats = runtime.finish()?;
    let _ = std::fs::remove_file(&media);
    let fps = stats.frames as f64 / wall;
    let wps = predictions as f64 / wall;
    println!("avaction pipeline benchmark: {seconds:.0} s synthetic scene (320x240 25 fps, 48 kHz) -> 64x64, {} backend", stats.backend);
    println!("| measure | value | ratio |");
    println!("|---|---|---|");
    println!(
        "| decode only (reference) | {decode_fps:.1} frames/s | {:.2}x real time |",
        decode_fps / 25.0
    );
    println!(
        "| full runtime | {fps:.1} frames/s | {:.2}x real time, {:.2}x decode-only |",
        fps / 25.0,
        fps / decode_fps
    );
    println!(
        "| windows (labels) | {wps:.1} /s | {:.2}x the live rate (12.5/s) |",
        wps / 12.5
    );
    println!(
        "| frontends (flow, log-mel, copies) | {:.2} ms/frame | {:.0}% of a 40 ms frame period |",
        stats.frontend_ms_per_frame,
        stats.frontend_ms_per_frame / 40.0 * 100.0
    );
    println!(
        "| inference (normalise + tract) | {:.2} ms/window | {:.0}% of an 80 ms hop |",
        stats.inference_ms_per_window,
        stats.inference_ms_per_window / 80.0 * 100.0
    );
    println!(
        "| processing latency p50 / p99 | {:.1} / {:.1} ms | |",
        stats.latency_p50_ms, stats.latency_p99_ms
    );
    println!(
        "| windows skipped / dropped | {} / {} | |",
        stats.windows_skipped, stats.windows_dropped
    );
    Ok(())
}
