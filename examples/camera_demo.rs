//! The first thing to run: live action labels from the camera and microphone, or,
//! on a machine with neither, from the built-in synthetic scene played in real time
//! through the same GStreamer path, with its ground truth printed alongside.
//!
//! `cargo run --example camera_demo [-- --model models/mov-small --seconds 60]`
//!
//! The default model is `models/cavnet-ov-small`, the best of the shipped models on
//! held-out scenes (see its README); it is open vocabulary: its labels are
//! sentences, and the held-out classes of its README are added by their sentences, so
//! the synthetic scene shows classes it never saw in training).

use avaction::capture::{audio, video};
use avaction::health::State;
use avaction::model::Bundle;
use avaction::synth::{self, ClassSet, SceneConfig, Task};
use avaction::{AudioSource, EventKind, Output, Runtime, VideoSource};
use std::time::{Duration, Instant};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    if let Err(e) = demo() {
        eprintln!("camera_demo: {e}");
        std::process::exit(1);
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn demo() -> avaction::Result<()> {
    let model = arg("--model").unwrap_or_else(|| "models/cavnet-ov-small".into());
    // An open-vocabulary bundle trained on the compositional task also gets its
    // held-out sentences, and the synthetic scene draws from all its classes.
    let bundle = Bundle::load(avaction::model::locate(&model)?)?;
    let open_vocabulary = bundle.vocabulary.is_some();
    let novel: Vec<String> = std::fs::read_to_string(bundle.dir.join("novel_labels.txt"))
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let seconds: f64 = arg("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(60.0);
    let cameras = video::list_cameras();
    let mics = audio::list_microphones();
    let mut scene = None;
    let (video_source, audio_source) = if !cameras.is_empty() && !mics.is_empty() {
        println!("camera: {}   microphone: {}", cameras[0], mics[0]);
        (VideoSource::Camera(None), AudioSource::DefaultMicrophone)
    } else {
        println!(
            "{}; playing the built-in synthetic scene instead (real time, through GStreamer)",
            match (cameras.is_empty(), mics.is_empty()) {
                (true, true) => "no camera and no microphone found",
                (true, false) => "no camera found",
                _ => "no microphone found",
            }
        );
        let path = std::env::temp_dir().join(format!("avaction-demo-{}.mkv", std::process::id()));
        let config = SceneConfig {
            seed: 4242,
            duration_s: seconds,
            task: if open_vocabulary {
                Task::Compositional {
                    classes: ClassSet::All,
                }
            } else {
                Task::Basic
            },
            ..SceneConfig::default()
        };
        let s = synth::render_to_file(&config, &path)?;
        let source = VideoSource::Uri(path.display().to_string());
        scene = Some((s, path));
        (source, AudioSource::FromVideo)
    };
    let has_display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    let mut builder = Runtime::builder()
        .model(&model)
        .video(video_source)
        .audio(audio_source)
        .labels(novel)
        .realtime(true);
    if has_display {
        println!("display found: frames with the current label are shown in a window");
        builder = builder.display("autovideosink");
    }
    let mut runtime = builder.build()?;
    println!(
        "model {} on {}; Ctrl-C to stop\n",
        runtime.bundle().manifest.name,
        runtime.stats().backend
    );
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds + 1.0 {
        match runtime.recv_timeout(Duration::from_millis(200)) {
            Ok(Output::Prediction(p)) => {
                let truth = scene
                    .as_ref()
                    .map(|(s, _)| format!("   truth: {}", s.label_at((p.start_s + p.end_s) / 2.0)))
                    .unwrap_or_default();
                let best = &p.top[0];
                println!(
                    "{:7.2}s  {:<44} {:.2}   latency {:5.1} ms{truth}",
                    p.end_s, best.label, best.score, p.latency_ms
                );
            }
            Ok(Output::Event(e)) if e.kind == EventKind::Onset => {
                println!("{:7.2}s  >>> {} <<<", e.time_s, e.label)
            }
            Ok(Output::Health(h)) if h.state != State::Running => {
                let why: Vec<String> = h.reasons.iter().map(|r| format!("{r:?}")).collect();
                println!("          health: {:?} {}", h.state, why.join(", "))
            }
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    runtime.stop();
    let s = runtime.stats();
    println!(
        "\n{} windows, {:.1} labels/s, latency p50 {:.1} ms p99 {:.1} ms, A/V skew max {:.1} ms, {} frames dropped",
        s.windows, s.windows_per_s, s.latency_p50_ms, s.latency_p99_ms, s.skew_max_abs_ms, s.frames_dropped
    );
    if let Some((_, path)) = scene {
        let _ = std::fs::remove_file(path);
    }
    match runtime.error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
