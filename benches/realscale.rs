//! Real-scale benchmark (issue 15): the whole runtime on a 720p H.264 clip against the
//! best-tuned Python pipeline (benches/reference/realscale_pipeline.py: OpenCV decode +
//! resize + DIS, torchaudio Kaldi fbank, onnxruntime with per-frame encoders cached), on
//! the same bundles, interleaved round by round in one run. Prints one table: x real time
//! (media seconds / wall seconds, as fast as possible, no window skipped), the ratio to
//! Python on the same bundle, CPU time per frame (all threads: the cost, less at the mercy
//! of other load than wall time), inference ms per window with its split over the stages, and
//! window latency p50 / p99 from a paced run of the staged bundles (frames and audio no
//! faster than real time, as from a camera and a microphone).
//!
//! `scripts/bench-realscale.sh` sets everything up (venv, bundles, clips) and runs
//!
//! ```text
//! cargo bench --bench realscale -- --clip FILE --bundle DIR [--bundle DIR]...
//!     [--python PY] [--paced-clip FILE] [--rounds N] [--threads N] [--ort-threads N]
//!     [--decoder-threads N]
//! ```
//!
//! `--threads` is tract's (default 1), `--ort-threads` onnxruntime's (default: the same).
//! onnxruntime rows appear where its library is found (README, "CPU backends"); Python
//! rows for bundles with `[stages]`.

use avaction::backend::BackendChoice;
use avaction::capture::VideoSource;
use avaction::{AudioSource, Output, Runtime};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Default)]
struct Args {
    clip: PathBuf,
    paced_clip: Option<PathBuf>,
    bundles: Vec<PathBuf>,
    python: Option<PathBuf>,
    rounds: usize,
    threads: usize,
    ort_threads: Option<usize>,
    decoder_threads: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        rounds: 2,
        threads: 1,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1).filter(|s| s != "--bench");
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--clip" => a.clip = value()?.into(),
            "--bundle" => a.bundles.push(value()?.into()),
            "--python" => a.python = Some(value()?.into()),
            "--rounds" => a.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--threads" => a.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--ort-threads" => {
                let n = value()?
                    .parse()
                    .map_err(|e| format!("--ort-threads: {e}"))?;
                a.ort_threads = Some(n);
            }
            "--paced-clip" => a.paced_clip = Some(value()?.into()),
            "--decoder-threads" => {
                let n = value()?
                    .parse()
                    .map_err(|e| format!("--decoder-threads: {e}"))?;
                a.decoder_threads = Some(n);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.clip.as_os_str().is_empty() || a.bundles.is_empty() {
        return Err(
            "needs --clip FILE and at least one --bundle DIR (scripts/bench-realscale.sh)".into(),
        );
    }
    Ok(a)
}

/// One end-to-end run of one system on one bundle.
#[derive(Clone, Default)]
struct Run {
    x_realtime: f64,
    /// CPU time (all threads, user + system) per video frame: the cost, whatever the
    /// other load on the machine does to the wall time.
    cpu_ms_per_frame: f64,
    windows: u64,
    p50_ms: f64,
    p99_ms: f64,
    inference_ms: f64,
    stages: String,
}

#[derive(Clone, Copy, PartialEq)]
enum System {
    Tract,
    OnnxRuntime,
    Python,
}

impl System {
    fn threads(self, a: &Args) -> usize {
        match self {
            System::OnnxRuntime => a.ort_threads.unwrap_or(a.threads),
            _ => a.threads,
        }
    }

    fn name(self, a: &Args) -> String {
        let threads = self.threads(a);
        match self {
            System::Tract => format!("avaction tract ({threads} thr)"),
            System::OnnxRuntime => format!("avaction onnxruntime ({threads} thr)"),
            System::Python => "Python onnxruntime (2 thr)".into(),
        }
    }
}

fn run_avaction(
    bundle: &Path,
    clip: &Path,
    a: &Args,
    system: System,
    paced: bool,
) -> Result<Run, String> {
    let choice = match system {
        System::Tract => BackendChoice::Tract,
        _ => BackendChoice::OnnxRuntime,
    };
    let mut builder = Runtime::builder()
        .model(bundle)
        .video(VideoSource::Uri(clip.display().to_string()))
        .audio(AudioSource::FromVideo)
        .backend(choice)
        .threads(system.threads(a))
        .realtime(paced);
    if let Some(n) = a.decoder_threads {
        builder = builder.decoder_threads(n);
    }
    let runtime = builder.build().map_err(|e| e.to_string())?;
    // from here: model loading left out (as the Python side does), capture started
    let (t0, cpu0) = (Instant::now(), cpu_seconds(libc::RUSAGE_SELF));
    let fps = runtime.bundle().manifest.window.fps as f64;
    let mut windows = 0;
    for output in runtime.outputs() {
        if matches!(output, Output::Prediction(_)) {
            windows += 1;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let stats = runtime.finish().map_err(|e| e.to_string())?;
    let cpu = cpu_seconds(libc::RUSAGE_SELF) - cpu0;
    // Paced, a model slower than real time skips windows as it would live; flat out, a
    // file must lose none.
    if !paced && stats.windows_skipped + stats.windows_dropped > 0 {
        return Err(format!(
            "{} windows skipped or dropped (a file must run with none)",
            stats.windows_skipped + stats.windows_dropped
        ));
    }
    let stages: Vec<String> = stats
        .inference_ms_per_stage
        .iter()
        .map(|(name, ms)| format!("{name} {ms:.1}"))
        .collect();
    Ok(Run {
        x_realtime: stats.frames as f64 / fps / wall,
        cpu_ms_per_frame: cpu * 1e3 / stats.frames.max(1) as f64,
        windows,
        p50_ms: stats.latency_p50_ms,
        p99_ms: stats.latency_p99_ms,
        inference_ms: stats.inference_ms_per_window,
        stages: stages.join(", "),
    })
}

fn run_python(bundle: &Path, clip: &Path, python: &Path, paced: bool) -> Result<Run, String> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/reference/realscale_pipeline.py"
    );
    let out = Command::new(python)
        .arg(script)
        .arg(bundle)
        .arg(clip)
        .args(paced.then_some("--realtime"))
        .output()
        .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "python failed: {}",
            err.lines().last().unwrap_or("")
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    let j: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("python printed no JSON ({e}): {line}"))?;
    let f = |k: &str| j[k].as_f64().unwrap_or(f64::NAN);
    let stage = &j["stage_ms"];
    let stages: Vec<String> = ["frames_encoder", "flow_encoder", "logmel_encoder", "head"]
        .iter()
        .filter_map(|k| stage[k].as_f64().map(|ms| format!("{k} {ms:.1}")))
        .collect();
    Ok(Run {
        x_realtime: f("x_realtime"),
        // the timed part: Python's threads and its ffmpeg child (imports, model loading
        // left out, as for avaction)
        cpu_ms_per_frame: f("cpu_s") * 1e3 / f("frames"),
        windows: j["windows"].as_u64().unwrap_or(0),
        p50_ms: f("latency_p50_ms"),
        p99_ms: f("latency_p99_ms"),
        inference_ms: f("inference_ms_per_window"),
        stages: format!("{} (per call)", stages.join(", ")),
    })
}

/// User + system CPU seconds of this process, all threads (`RUSAGE_SELF`).
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes one plain struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs `system` on `bundle`; `None` where it does not apply (Python on a bundle
/// without stages).
fn run(
    bundle: &Path,
    clip: &Path,
    a: &Args,
    system: System,
    paced: bool,
) -> Option<Result<Run, String>> {
    match (system, &a.python) {
        (System::Python, Some(py)) => bundle
            .join("stages")
            .is_dir()
            .then(|| run_python(bundle, clip, py, paced)),
        (System::Python, None) => None,
        _ => Some(run_avaction(bundle, clip, a, system, paced)),
    }
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("realscale: {e}");
            std::process::exit(2);
        }
    };
    let mut systems = vec![System::Tract];
    match avaction::backend::onnxruntime_unavailable_reason() {
        None => systems.push(System::OnnxRuntime),
        Some(why) => eprintln!("realscale: onnxruntime rows left out: {why}"),
    }
    if a.python.is_some() {
        systems.push(System::Python);
    }
    let name = |s: System| s.name(&a);
    // cells[bundle][system]: the throughput runs, the paced run, or the first error
    let n = systems.len();
    let mut runs = vec![vec![Vec::<Run>::new(); n]; a.bundles.len()];
    let mut paced = vec![vec![None::<Run>; n]; a.bundles.len()];
    let mut errors = vec![vec![None::<String>; n]; a.bundles.len()];
    let mut passes: Vec<(&Path, bool)> = vec![(&a.clip, false); a.rounds];
    if let Some(clip) = &a.paced_clip {
        passes.push((clip, true));
    }
    for (pass, &(clip, is_paced)) in passes.iter().enumerate() {
        for (b, bundle) in a.bundles.iter().enumerate() {
            // latency is compared where Python runs the same bundle (staged ones)
            if is_paced && !bundle.join("stages").is_dir() {
                continue;
            }
            for (s, &system) in systems.iter().enumerate() {
                if errors[b][s].is_some() {
                    continue;
                }
                match run(bundle, clip, &a, system, is_paced) {
                    None => {}
                    Some(Ok(r)) => {
                        eprintln!(
                            "realscale: pass {} ({}) {} {}: {:.2}x real time, {} windows, latency p50 {:.0} p99 {:.0} ms",
                            pass + 1,
                            if is_paced { "paced" } else { "as fast as possible" },
                            bundle.display(),
                            name(system),
                            r.x_realtime,
                            r.windows,
                            r.p50_ms,
                            r.p99_ms
                        );
                        if is_paced {
                            paced[b][s] = Some(r);
                        } else {
                            runs[b][s].push(r);
                        }
                    }
                    Some(Err(e)) => {
                        eprintln!("realscale: {} {}: {e}", bundle.display(), name(system));
                        errors[b][s] = Some(e);
                    }
                }
            }
        }
    }
    println!(
        "avaction real-scale benchmark: {} ({} rounds interleaved, medians; as fast as possible, no window skipped); latency paced on {}",
        a.clip.display(),
        a.rounds,
        a.paced_clip.as_ref().map_or("-".into(), |c| c.display().to_string())
    );
    println!("| bundle | system | x real time | vs Python | CPU ms/frame | inference ms/window | paced latency p50 / p99 ms | stages (ms per window; Python: per call) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (b, bundle) in a.bundles.iter().enumerate() {
        let label = bundle
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into());
        let x_of = |s: usize| median(runs[b][s].iter().map(|r| r.x_realtime).collect());
        let python = systems
            .iter()
            .position(|&s| s == System::Python)
            .filter(|&p| !runs[b][p].is_empty())
            .map(x_of);
        for (s, &system) in systems.iter().enumerate() {
            if let Some(e) = &errors[b][s] {
                println!("| {label} | {} | failed: {e} | | | | | |", name(system));
                continue;
            }
            let Some(last) = runs[b][s].last() else {
                continue;
            };
            let x = x_of(s);
            let ratio = python.map_or("-".into(), |p| format!("{:.2}", x / p));
            let latency = paced[b][s]
                .as_ref()
                .map_or("-".into(), |r| format!("{:.0} / {:.0}", r.p50_ms, r.p99_ms));
            println!(
                "| {label} | {} | {x:.2}x | {ratio} | {:.1} | {:.1} | {latency} | {} |",
                name(system),
                median(runs[b][s].iter().map(|r| r.cpu_ms_per_frame).collect()),
                median(runs[b][s].iter().map(|r| r.inference_ms).collect()),
                last.stages
            );
        }
    }
}
