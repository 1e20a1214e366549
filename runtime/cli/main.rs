//! The `avaction` command: run a model on any source, list devices, inspect a model
//! bundle, render synthetic scenes, and dump training features.

/// Builds an [`avaction::Error`] with `format!` arguments: `err!(Config, "--hop {h}")`.
macro_rules! err {
    ($kind:ident, $($arg:tt)*) => {
        avaction::Error::new(avaction::ErrorKind::$kind, format!($($arg)*))
    };
}

mod args;
mod config;
mod features;
mod logging;
mod notify;
mod npy;

use avaction::backend::engine_cache::{EngineCache, Precision};
use avaction::backend::{self, tensorrt, BackendChoice};
use avaction::capture::{audio, video};
use avaction::model::{Bundle, Manifest};
use avaction::synth::{self, SceneConfig, Task};
use avaction::{EventKind, Output, Result, Runtime, VideoSource};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `println!` that ignores a closed stdout (e.g. piped into `head`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "avaction",
    version,
    about = "Real-time audio-video action recognition"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model on a camera, file, URI or test source and print labels and events.
    #[command(
        after_help = "Exit codes: 0 done (a file processed completely, or stopped by \
--duration or Ctrl-C); 1 an error; 2 invalid arguments; 3 a file processed only in part \
(truncated, or failed mid-stream: with --json the last line is \
{\"type\":\"end\",\"complete\":false,\"reason\":…,\"media_end_s\":…})."
    )]
    Run(Box<config::RunOptions>),
    /// List cameras, microphones and backends found on this machine.
    Devices {
        /// Also list ALSA's converter, routing and output plugins (`lavrate`, `upmix`…),
        /// which are not microphones.
        #[arg(long)]
        all: bool,
    },
    /// Show a model bundle: inputs, outputs, labels, window, decoder.
    Inspect {
        /// The bundle folder (with model.toml).
        bundle: PathBuf,
    },
    /// Check a bundle against its goldens: the runtime's own frontends and backend on the
    /// golden frames and audio, single graph and staged, with the largest differences.
    #[command(
        after_help = "Exit codes: 0 every check passed; 1 a check failed or the bundle \
could not be verified (no goldens, a graph that does not load)."
    )]
    Verify {
        /// The bundle folder (with model.toml and golden/golden.json).
        bundle: PathBuf,
        /// Runs of each model check; their mean time is reported (the first run is not
        /// timed when there are several).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// Backend for every check: tract (default), onnxruntime, tensorrt or auto.
        #[arg(long, default_value = "tract")]
        backend: String,
    },
    /// Render a synthetic audio-visual scene to a media file and its ground truth.
    Synth {
        /// Output media file (.mkv); ground truth goes next to it as .json.
        #[arg(long, short)]
        out: PathBuf,
        /// Scene seed (deterministic).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Duration in seconds.
        #[arg(long, default_value_t = 30.0, value_parser = args::seconds)]
        duration: f64,
        /// Also write the audio as a 48 kHz stereo WAV next to it.
        #[arg(long)]
        wav: bool,
        /// Task: `basic` (the six classes of cavnet-small) or `compositional`
        /// (object-motion-sound sentences, late sounds, crowd noise).
        #[arg(long, default_value = "basic")]
        task: String,
        /// Compositional task: which classes to draw, `seen`, `novel` or `all`
        /// (default `seen`).
        #[arg(long)]
        classes: Option<String>,
    },
    /// Check a config file for `avaction run --config`.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Build TensorRT engines ahead of time (for deployment images).
    Engine {
        #[command(subcommand)]
        command: EngineCommand,
    },
    /// Dump training windows of synthetic scenes through the runtime's own frontends.
    Features {
        /// Manifest whose window and frontends to use.
        #[arg(long, default_value = "models/cavnet-small/model.toml")]
        manifest: PathBuf,
        /// Scene seeds, comma-separated or ranges (e.g. 1-8,20).
        #[arg(long)]
        seeds: String,
        /// Seconds per scene.
        #[arg(long, default_value_t = 60.0, value_parser = args::seconds)]
        duration: f64,
        /// Frames between dumped windows.
        #[arg(long, default_value_t = 4, value_parser = args::hop)]
        hop: usize,
        /// Task: `basic` (the six classes of cavnet-small) or `compositional`
        /// (object-motion-sound sentences, with moderation attributes).
        #[arg(long, default_value = "basic")]
        task: String,
        /// Compositional task: which classes the scenes draw, `seen`, `novel` or `all`
        /// (default `seen`); labels index the full list either way.
        #[arg(long)]
        classes: Option<String>,
        /// Optical flow estimator to use instead of the manifest's (e.g. `tvl1`).
        #[arg(long)]
        flow_estimator: Option<String>,
        /// Output folder.
        #[arg(long, short)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file and print the effective configuration (every key with
    /// the value `avaction run --config FILE` would use).
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum EngineCommand {
    /// Build (or find in the cache) the TensorRT engine of a bundle and check it loads.
    Build {
        /// The bundle folder (with model.toml).
        bundle: PathBuf,
        /// fp16 or fp32 (default: the target's, else fp16).
        #[arg(long)]
        precision: Option<String>,
        /// Device profile whose precision to use (`auto`, a name or a .toml file).
        #[arg(long)]
        target: Option<String>,
        /// Engine cache folder (default: $AVACTION_CACHE_DIR, else the user cache).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Rebuild even if a valid engine is cached.
        #[arg(long)]
        force: bool,
    },
}

/// `avaction verify`: the report as a table (or JSON); an error when a check fails.
fn verify(dir: &std::path::Path, repeat: usize, json: bool, backend: BackendChoice) -> Result<()> {
    use avaction::infer::verify::{verify, VerifyOptions};
    let bundle = Bundle::load(dir)?;
    let opts = VerifyOptions {
        repeat: repeat.clamp(1, 1000),
        backend,
    };
    let report = verify(&bundle, &opts)?;
    if json {
        let value = serde_json::json!({
            "bundle": dir.display().to_string(),
            "window_from": report.window_from,
            "passed": report.passed(),
            "checks": report.checks.iter().map(|c| serde_json::json!({
                "check": c.name,
                "max_diff": if c.max_diff.is_finite() { serde_json::json!(c.max_diff) } else { serde_json::Value::Null },
                "tolerance": c.tolerance,
                "ms": c.ms,
                "passed": c.passed(),
            })).collect::<Vec<_>>(),
        });
        outln!("{value}");
    } else {
        outln!("verify {}", dir.display());
        outln!(
            "  {:<52} {:>10} {:>10} {:>9}  result",
            "check",
            "max |diff|",
            "tolerance",
            "ms/run"
        );
        for c in &report.checks {
            outln!(
                "  {:<52} {:>10.2e} {:>10.0e} {:>9}  {}",
                c.name,
                c.max_diff,
                c.tolerance,
                c.ms.map_or(String::new(), |ms| format!("{ms:.2}")),
                if c.passed() { "pass" } else { "FAIL" }
            );
        }
    }
    let failed = report.checks.iter().filter(|c| !c.passed()).count();
    if failed > 0 {
        return Err(err!(
            Model,
            "verify {}: {failed} of {} checks failed",
            dir.display(),
            report.checks.len()
        ));
    }
    if !json {
        outln!("verify: {} checks passed", report.checks.len());
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    // The config file may set the log filter: read it before the logger starts.
    let command = match cli.command {
        Command::Run(options) => match options.with_file() {
            Ok(options) => Ok(Command::Run(Box::new(options))),
            Err(e) => Err(e),
        },
        other => Ok(other),
    };
    let filter = match &command {
        Ok(Command::Run(options)) => options.log.clone(),
        _ => None,
    };
    logging::init(filter.as_deref());
    let result = command.and_then(|command| match command {
        Command::Run(options) => match run(*options) {
            Ok(Ran::Incomplete) => std::process::exit(3),
            other => other.map(|_| ()),
        },
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Devices { all } => devices(all),
        Command::Inspect { bundle } => inspect(bundle),
        Command::Verify {
            bundle,
            repeat,
            json,
            backend,
        } => backend
            .parse()
            .and_then(|backend| verify(&bundle, repeat, json, backend)),
        Command::Engine {
            command:
                EngineCommand::Build {
                    bundle,
                    precision,
                    target,
                    cache_dir,
                    force,
                },
        } => engine_build(bundle, precision, target, cache_dir, force),
        Command::Synth {
            out,
            seed,
            duration,
            wav,
            task,
            classes,
        } => features::parse_task(&task, classes.as_deref())
            .and_then(|task| synth_cmd(out, seed, duration, wav, task)),
        Command::Features {
            manifest,
            seeds,
            duration,
            hop,
            task,
            classes,
            flow_estimator,
            out,
        } => features_cmd(
            &manifest,
            &seeds,
            duration,
            hop,
            (&task, classes.as_deref()),
            flow_estimator.as_deref(),
            &out,
        ),
    });
    if let Err(e) = result {
        logging::fatal(&e);
        std::process::exit(1);
    }
}

/// `avaction config check FILE`: everything that can be checked without opening a
/// device: the file, its values, the bundle, the target, the label files.
fn config_check(file: &std::path::Path) -> Result<()> {
    let options = config::RunOptions::load(file)?;
    let in_file = |e: avaction::Error| err!(Config, "{}: {}", file.display(), e);
    let bundle = avaction::model::locate(options.model()).map_err(in_file)?;
    Bundle::load(&bundle).map_err(in_file)?;
    if let Some(spec) = &options.target {
        avaction::target::Target::resolve(spec).map_err(in_file)?;
    }
    for f in &options.label_file {
        args::label_file(f).map_err(in_file)?;
    }
    for spec in &options.sink {
        avaction::deliver::check(spec).map_err(in_file)?;
    }
    options.clip_options().map_err(in_file)?;
    options.ui_address().map_err(in_file)?;
    options.ros2_options().map_err(in_file)?;
    outln!("# {}: valid; bundle {}", file.display(), bundle.display());
    outln!("{}", options.effective_toml()?.trim_end());
    Ok(())
}

fn features_cmd(
    manifest: &std::path::Path,
    seeds: &str,
    duration: f64,
    hop: usize,
    (task, classes): (&str, Option<&str>),
    flow_estimator: Option<&str>,
    out: &std::path::Path,
) -> Result<()> {
    let task = features::parse_task(task, classes)?;
    let seeds = args::seeds(seeds)?;
    let mut manifest = Manifest::load(manifest)?;
    if let Some(name) = flow_estimator {
        features::override_flow_estimator(&mut manifest, name)?;
    }
    features::dump(&manifest, &seeds, duration, hop, task, out)
}

/// How `avaction run` ended, when it did not fail.
enum Ran {
    /// Complete, or stopped by --duration / Ctrl-C.
    Done,
    /// A file processed only up to a cut (exit code 3).
    Incomplete,
}

/// Set by SIGINT / SIGTERM: the run loop stops within 100 ms.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM stop the run cleanly (final stats, end record); a second one
/// ends the process at once (the handler is reset to the default after the first).
fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only stores to an atomic; SA_RESETHAND
        // restores the default so that a second signal kills the process.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

fn run(args: config::RunOptions) -> Result<Ran> {
    let video = VideoSource::parse(args.video());
    let audio = args.audio();
    let mut labels = args.labels.clone();
    for file in &args.label_file {
        labels.extend(args::label_file(file)?);
    }
    let mut builder = Runtime::builder()
        .model(args.model())
        .video(video)
        .audio(audio)
        .labels(labels)
        .realtime(args.realtime());
    if let Some(spec) = &args.target {
        let (target, why) = avaction::target::Target::resolve(spec)?;
        eprintln!("avaction: target {} ({why})", target.name);
        builder = builder.target(&target)?;
    }
    if let Some(b) = &args.backend {
        builder = builder.backend(b.parse::<BackendChoice>()?);
    }
    if let Some(p) = &args.precision {
        builder = builder.precision(p.parse::<Precision>()?);
    }
    if let Some(t) = args.threads {
        builder = builder.threads(t);
    }
    if let Some(dir) = &args.engine_cache {
        builder = builder.engine_cache(dir);
    }
    if let Some(h) = args.hop {
        builder = builder.hop_frames(h);
    }
    if let Some(sink) = &args.display {
        builder = builder.display(sink.clone());
    }
    builder = builder.supervision(args.supervision.policy()?);
    if let Some(clips) = args.clip_options()? {
        builder = builder.clips(clips);
    }
    let sink_options = args.sink_options();
    for spec in &args.sink {
        builder = builder.sink(avaction::deliver::open(spec, &sink_options)?);
    }
    let metrics = args
        .metrics
        .as_ref()
        .map(|_| avaction::metrics::Metrics::new());
    if let Some(m) = &metrics {
        builder = builder.sink(m.sink());
    }
    let ui = match args.ui_options()? {
        Some((addr, options)) => {
            let ui = avaction::ui::Ui::new(options);
            builder = builder.live_view(ui.view()).sink(ui.sink());
            Some((addr, ui))
        }
        None => None,
    };
    #[cfg(feature = "ros2")]
    let ros2 = match args.ros2_options()? {
        Some(options) => {
            let ros2 = avaction::ros2::Ros2::new(options)?;
            builder = builder.sink(ros2.sink()?);
            eprintln!("avaction: ROS 2 node {}", ros2.node_name());
            Some(ros2)
        }
        None => None,
    };
    #[cfg(not(feature = "ros2"))]
    if args.ros2_options()?.is_some() {
        return Err(err!(
            Config,
            "--ros2: this avaction was built without ROS 2; build it with the default features (the `ros2` feature)"
        ));
    }
    catch_interrupts();
    let mut runtime = builder.build()?;
    #[cfg(feature = "ros2")]
    let _ros2_diagnostics = match &ros2 {
        Some(r) => Some(r.diagnostics(runtime.observer())?),
        None => None,
    };
    // With the live view on, its server also hosts /metrics and /health.
    let _ui_server = match &ui {
        Some((addr, ui)) => {
            let server = ui.serve(addr, runtime.observer(), metrics.as_ref())?;
            eprintln!("avaction: live view on http://{}/", server.addr());
            Some(server)
        }
        None => None,
    };
    let _metrics_server = match (&metrics, &args.metrics, &ui) {
        (Some(m), Some(addr), None) => Some(m.serve(addr, runtime.observer())?),
        _ => None,
    };
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + Duration::from_secs_f64(d));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut notifier = notify::Notifier::from_env();
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d)
            || INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
        {
            break;
        }
        if let Some(n) = notifier.as_mut() {
            n.tick(runtime.health().state);
        }
        let output = match runtime.recv_timeout(Duration::from_millis(100)) {
            Ok(o) => o,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(n) = notifier.as_mut() {
            match &output {
                Output::Prediction(_) => n.labels_flow(),
                Output::Health(h) => n.health(h),
                _ => {}
            }
        }
        if args.events_only() && matches!(output, Output::Prediction(_)) {
            continue;
        }
        let line = if args.json() {
            serde_json::to_string(&output).map_err(|e| err!(Io, "json").caused_by(e))?
        } else {
            human(&output)
        };
        if writeln!(out, "{line}").is_err() {
            break; // stdout closed (e.g. piped into head)
        }
    }
    drop(out);
    if let Some(n) = notifier.as_mut() {
        n.stopping();
    }
    runtime.stop();
    let stats = runtime.stats();
    if args.stats() {
        if args.json() {
            eprintln!("{}", serde_json::to_string(&stats).unwrap_or_default());
        } else {
            eprintln!(
                "{} frames ({:.1} fps, {} dropped), {} windows ({:.1}/s, {} skipped), latency p50 {:.1} ms p99 {:.1} ms, skew p50 {:.1} ms max {:.1} ms, frontend {:.2} ms/frame, inference {:.2} ms/window on {}",
                stats.frames, stats.fps, stats.frames_dropped, stats.windows, stats.windows_per_s,
                stats.windows_skipped, stats.latency_p50_ms, stats.latency_p99_ms, stats.skew_p50_ms,
                stats.skew_max_abs_ms, stats.frontend_ms_per_frame, stats.inference_ms_per_window, stats.backend
            );
            if stats.tokens_computed + stats.tokens_reused > 0 {
                eprintln!(
                    "stages: {} tokens computed, {} reused from the rings",
                    stats.tokens_computed, stats.tokens_reused
                );
            }
            if let Some(s) = &stats.backend_switch {
                eprintln!(
                    "backend: switched from {} to {} after {} windows ({:.1} s), outputs agreed within {:.1e}",
                    s.from, s.to, s.after_windows, s.after_s, s.max_rel_diff
                );
            }
            if let Some(p) = &stats.backend_pending {
                eprintln!("backend: {p}");
            }
            for s in stats.sinks.iter().filter(|s| s.name != "metrics") {
                if s.name == "ui" {
                    eprintln!(
                        "live view: {} messages streamed, {} missed by slow viewers",
                        s.delivered, s.spool_dropped
                    );
                    continue;
                }
                if let Some(node) = s.name.strip_prefix("ros2:") {
                    eprintln!(
                        "ros2 {node}: {} messages published, {} refused",
                        s.delivered, s.failed
                    );
                    continue;
                }
                if s.name.starts_with("clips:") {
                    eprintln!(
                        "{}: {} clips written, {} onsets skipped, {} failed",
                        s.name, s.delivered, s.spool_dropped, s.failed
                    );
                    continue;
                }
                eprintln!(
                    "sink {}: {} delivered, {} waiting in the spool, {} dropped from it, {} refused",
                    s.name, s.delivered, s.spooled, s.spool_dropped, s.failed
                );
            }
        }
    }
    match runtime.error() {
        Some(e) => Err(e),
        None if runtime.end().is_some_and(|e| !e.complete) => Ok(Ran::Incomplete),
        None => Ok(Ran::Done),
    }
}

fn human(output: &Output) -> String {
    match output {
        Output::Prediction(p) => {
            let top: Vec<String> = p
                .top
                .iter()
                .map(|l| format!("{} {:.2}", l.label, l.score))
                .collect();
            let skew = p
                .skew_ms
                .map_or("no audio".to_string(), |s| format!("skew {s:+.1} ms"));
            format!(
                "{:8.2}s  {:<40} latency {:.0} ms, {skew}",
                p.end_s,
                top.join(" | "),
                p.latency_ms
            )
        }
        Output::Health(h) => {
            let sources: Vec<String> = h
                .sources
                .iter()
                .map(|s| {
                    let mut line = format!("{} {:?}", s.name, s.state).to_lowercase();
                    if !s.reasons.is_empty() {
                        line.push_str(&format!(" {:?}", s.reasons).to_lowercase());
                    }
                    if let Some(retry) = s.next_retry_s {
                        line.push_str(&format!(" (attempt {} in {retry:.1} s)", s.attempt));
                    }
                    line
                })
                .collect();
            format!("          health: {:?}: {}", h.state, sources.join("; "))
        }
        Output::End(e) if e.complete => format!("{:8.2}s  end of media", e.media_end_s),
        Output::End(e) => format!(
            "{:8.2}s  INCOMPLETE: {}",
            e.media_end_s,
            e.reason.as_deref().unwrap_or("the media ended early")
        ),
        Output::Event(e) => match e.kind {
            EventKind::Onset => {
                format!("{:8.2}s  >> {} starts ({:.2})", e.time_s, e.label, e.score)
            }
            EventKind::Offset => format!(
                "{:8.2}s  << {} ends after {:.2} s",
                e.time_s,
                e.label,
                e.duration_s.unwrap_or(0.0)
            ),
        },
        other => format!("{other:?}"),
    }
}

fn devices(all: bool) -> Result<()> {
    let cameras = video::list_cameras();
    outln!("cameras:");
    if cameras.is_empty() {
        outln!("  (none found)");
    }
    for c in cameras {
        outln!("  {c}");
    }
    let mics = audio::microphones();
    let hidden = mics.iter().filter(|m| !(all || m.is_capture)).count();
    outln!("microphones:");
    if mics.len() == hidden {
        outln!("  (none found)");
    }
    for m in mics.iter().filter(|m| all || m.is_capture) {
        let format = m
            .format
            .as_deref()
            .map(|f| format!(": {f}"))
            .unwrap_or_default();
        let default = if m.is_default {
            " [default: what `mic` opens]"
        } else {
            ""
        };
        outln!("  {}{format}{default}", m.label);
    }
    if hidden > 0 {
        outln!("  ({hidden} ALSA converter/routing plugins hidden; --all shows them)");
    }
    match avaction::target::Target::detect() {
        Ok((target, why)) => outln!("target: {} ({why})", target.name),
        Err(e) => outln!("target: unknown ({e})"),
    }
    outln!("backends:");
    outln!("  tract: available (CPU)");
    match backend::onnxruntime_unavailable_reason() {
        None => outln!("  onnxruntime: available (CPU){}", onnxruntime_library()),
        Some(reason) => outln!("  onnxruntime: unavailable: {reason}"),
    }
    match tensorrt::availability() {
        Ok(gpu) => outln!(
            "  tensorrt: available: TensorRT {} on {} (compute {}.{}{})",
            gpu.tensorrt_version,
            gpu.name,
            gpu.compute_capability.0,
            gpu.compute_capability.1,
            if gpu.integrated { ", integrated" } else { "" }
        ),
        Err(reason) => outln!("  tensorrt: unavailable: {reason}"),
    }
    match EngineCache::default_dir() {
        Some(dir) => outln!("engine cache: {}", dir.display()),
        None => outln!("engine cache: off (set AVACTION_CACHE_DIR, XDG_CACHE_HOME or HOME)"),
    }
    Ok(())
}

/// ` from PATH` for the onnxruntime library loaded, where the build has the backend.
fn onnxruntime_library() -> String {
    #[cfg(feature = "onnxruntime")]
    if let Some(path) = backend::onnxruntime::library_path() {
        return format!(" from {}", path.display());
    }
    String::new()
}

fn engine_build(
    bundle: PathBuf,
    precision: Option<String>,
    target: Option<String>,
    cache_dir: Option<PathBuf>,
    force: bool,
) -> Result<()> {
    let mut opts = tensorrt::EngineOptions::default();
    if let Some(spec) = &target {
        let (target, why) = avaction::target::Target::resolve(spec)?;
        eprintln!("avaction: target {} ({why})", target.name);
        opts.precision = target.precision()?;
    }
    if let Some(p) = &precision {
        opts.precision = p.parse()?;
    }
    if let Some(dir) = cache_dir {
        opts.cache = EngineCache::new(dir);
    }
    let gpu = tensorrt::availability().map_err(|reason| err!(Unavailable, "tensorrt: {reason}"))?;
    eprintln!(
        "avaction: {} engine for {} on {} (TensorRT {}), cache {}",
        opts.precision.as_str(),
        bundle.display(),
        gpu.name,
        gpu.tensorrt_version,
        opts.cache.dir().display()
    );
    let graphs = Bundle::load(avaction::model::locate(&bundle)?)?.runtime_graphs();
    // Building takes minutes on a Jetson: say that it is still going.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let done = done.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut next = 15;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if t0.elapsed().as_secs() >= next {
                    eprintln!("avaction: still building ({} s)", next);
                    next += 15;
                }
            }
        })
    };
    let result = tensorrt::build_engines(&graphs, &opts, force);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = ticker.join();
    for e in result? {
        let how = match &e.source {
            tensorrt::EngineSource::Cache => "already cached".to_string(),
            tensorrt::EngineSource::Built { seconds, replaced } => match replaced {
                Some(why) => format!("built in {seconds:.1} s (replaced: {why})"),
                None => format!("built in {seconds:.1} s"),
            },
        };
        outln!("{}  {} bytes, {how}", e.path.display(), e.plan.len());
    }
    Ok(())
}

fn inspect(dir: PathBuf) -> Result<()> {
    let b = Bundle::load(avaction::model::locate(&dir)?)?;
    let m = &b.manifest;
    outln!("model: {} {} ({})", m.name, m.version, dir.display());
    if !m.description.is_empty() {
        outln!("  {}", m.description);
    }
    match b.staged() {
        None => outln!("graph: {} (single graph, runs on every window)", m.graph),
        Some(staged) => {
            outln!(
                "graph: staged (encoders once per new frame / segment, head every hop; single graph {} for checks)",
                m.graph
            );
            for e in &staged.encoders {
                outln!(
                    "  encoder {:<7} {} {:?} -> token [1, {}], {} tokens per window{}",
                    e.input.name,
                    relative(&e.graph.path, &b.dir),
                    e.graph.inputs[0].dims,
                    e.dim,
                    e.tokens,
                    if e.segment > 1 {
                        format!(" ({} mel frames each)", e.segment)
                    } else {
                        String::new()
                    }
                );
            }
            let inputs: Vec<String> = staged
                .head
                .inputs
                .iter()
                .map(|i| format!("{} {:?}", i.name, i.dims))
                .collect();
            outln!(
                "  head    {} {} -> {} {:?}",
                relative(&staged.head.path, &b.dir),
                inputs.join(", "),
                staged.head.output.name,
                staged.head.output.dims
            );
        }
    }
    // the CPU backend auto uses, and why not onnxruntime when it is tract
    let (cpu, no_ort) = match backend::onnxruntime_unavailable_reason() {
        None => (
            format!("onnxruntime{}", onnxruntime_library()),
            String::new(),
        ),
        Some(reason) => (
            "tract".to_string(),
            format!("; onnxruntime unavailable: {reason}"),
        ),
    };
    match backend::tensorrt_unavailable_reason() {
        None => {
            outln!("backend: tensorrt (auto: cached engine, else {cpu} while it builds{no_ort})")
        }
        Some(reason) => outln!("backend: {cpu} (tensorrt unavailable: {reason}{no_ort})"),
    }
    let w = &m.window;
    outln!(
        "window: {} frames at {} fps{} ({:.2} s), hop {} frames ({:.0} ms, {:.1} windows/s), audio {} ({} downmix), manifest version {}",
        w.frames,
        w.fps,
        match w.frame_stride() {
            1 => String::new(),
            s => format!(", every {s}th frame"),
        },
        w.span() as f64 / w.fps as f64,
        w.hop_frames,
        w.hop_frames as f64 * 1000.0 / w.fps as f64,
        w.fps as f64 / w.hop_frames as f64,
        if w.audio_optional { "optional" } else { "required" },
        m.downmix().name(),
        m.version()
    );
    outln!("inputs:");
    for i in &m.inputs {
        let extra = match (&i.estimator, &i.fbank) {
            (Some(e), _) => match i.encoding {
                Some(avaction::model::FlowEncodingName::Float) => format!(", flow {e}, float"),
                Some(avaction::model::FlowEncodingName::DxdyMagnitude) => {
                    format!(", flow {e}, dx dy magnitude")
                }
                _ => format!(", flow {e}, MOV bound {}", i.bound.unwrap_or(20.0)),
            },
            (_, Some(f)) => format!(
                ", {:.2} s ending at the window's end, {} Hz, {} mel bins{}, {} ms / {} ms, {:?} window",
                i.steps() as f64 * f64::from(f.frame_shift_ms) / 1000.0,
                f.sample_rate,
                f.num_mel_bins,
                if f.use_energy { " + energy" } else { "" },
                f.frame_length_ms,
                f.frame_shift_ms,
                f.window
            ),
            _ => String::new(),
        };
        outln!(
            "  {:<8} {:?} {:?} {} float32, mean {:?} std {:?}{extra}",
            i.name,
            i.frontend,
            i.shape,
            i.layout().name(),
            i.mean,
            i.std
        );
    }
    outln!("output: {} {:?}", m.output.name, m.output.shape);
    let d = &m.decoder;
    outln!(
        "decoder: {:?}, top {}, smoothing {} windows, enter {} exit {}, min duration {} s, background {:?}",
        d.kind, d.top_k, d.smoothing, d.enter, d.exit, d.min_duration_s, d.background
    );
    match (&m.vocabulary, &b.vocabulary) {
        (Some(spec), Some(v)) => {
            let branches: Vec<String> = spec
                .branches
                .iter()
                .map(|br| {
                    format!(
                        "{} (tau {}, weight {} bundle labels / {} added labels)",
                        br.name, br.temperature, br.weight_base, br.weight_novel
                    )
                })
                .collect();
            outln!(
                "labels: open vocabulary, {} text space; scores = cosine / tau per branch: {}",
                spec.text_model,
                branches.join("; ")
            );
            outln!(
                "  label source: {} precomputed sentence embeddings ({}, {}-d); new sentences: {}",
                v.sentences.len(),
                spec.embeddings,
                v.dim,
                match avaction::text::TextEncoder::locate(Some(&b.dir)) {
                    Some(dir) => format!("embedded on this device by {}", dir.display()),
                    None => "text model not set up (run scripts/setup-minilm.sh), only precomputed sentences can be used".into(),
                }
            );
        }
        _ => outln!("labels: fixed, one output score per label"),
    }
    outln!("labels ({}): {}", b.labels.len(), b.labels.join(", "));
    Ok(())
}

/// `path` relative to `base` where it is inside it.
fn relative(path: &std::path::Path, base: &std::path::Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn synth_cmd(out: PathBuf, seed: u64, duration: f64, wav: bool, task: Task) -> Result<()> {
    let config = SceneConfig {
        seed,
        duration_s: duration,
        task,
        ..SceneConfig::default()
    };
    let scene = synth::render_to_file(&config, &out)?;
    let truth = out.with_extension("json");
    synth::write_ground_truth(&scene, &truth)?;
    outln!("wrote {} and {}", out.display(), truth.display());
    if wav {
        let wav_path = out.with_extension("wav");
        synth::write_wav(&scene, &wav_path, 2)?;
        outln!("wrote {}", wav_path.display());
    }
    for ev in scene.timeline() {
        let late = match ev.sound_delay_s {
            Some(delay) if delay > 0.0 => format!(" (sound {delay:.2} s late)"),
            _ => String::new(),
        };
        outln!(
            "  {:7.2}s - {:7.2}s  {}{late}",
            ev.start_s,
            ev.end_s,
            ev.label
        );
    }
    Ok(())
}
