//! Frontend benchmark: optical flow (every estimator, 224x224 and 320x240), streaming
//! log-mel (per second of audio and per 10 ms hop) and image preprocessing (a 640x480 RGB
//! frame to a 224x224 normalised CHW input: short side 224, centre crop), one thread.
//!
//! `scripts/bench-frontends.sh` is the full benchmark: it extracts real frames and audio
//! from a video, runs this binary and the reference libraries (OpenCV, torchaudio, librosa)
//! on the same data in the same run, and prints one table of ratios. Alone:
//!
//! `cargo bench --bench frontends -- [--data DIR] [--seconds S] [--json FILE] [FILTER...]`
//!
//! Without `--data` the inputs are synthetic (a textured frame pair, a tone-and-noise clip,
//! colour ramps).
//! `--seconds` is the time budget per case (default 2). Filters keep only the cases whose
//! name contains every filter word (e.g. `flow 224`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use avaction::frontend::flow::{estimator, FlowField, ESTIMATOR_NAMES};
use avaction::frontend::image::{
    Crop, ImageNormalize, Preprocess, PreprocessConfig, ResizeFilter, ResizeTo,
};
use avaction::frontend::logmel::{FbankConfig, LogMel, WindowType};

/// Flow frame sizes (width, height) measured for every estimator.
const FLOW_SIZES: [(usize, usize); 2] = [(224, 224), (320, 240)];

struct Args {
    data: Option<PathBuf>,
    seconds: f64,
    json: Option<PathBuf>,
    filters: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        data: None,
        seconds: 2.0,
        json: None,
        filters: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {}
            "--data" => args.data = Some(it.next().ok_or("--data needs a directory")?.into()),
            "--json" => args.json = Some(it.next().ok_or("--json needs a file")?.into()),
            "--seconds" => {
                let s = it.next().ok_or("--seconds needs a number")?;
                args.seconds = s
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or(format!("--seconds {s:?} is not a positive number"))?;
            }
            _ if a.starts_with("--") => return Err(format!("unknown option {a}")),
            _ => args.filters.push(a),
        }
    }
    Ok(args)
}

/// Times `f` over `budget` in batches of about 20 ms; returns (best, mean) seconds per call.
/// The best batch is the one least disturbed by the rest of the machine.
fn measure(budget: Duration, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64().max(1e-7);
    let batch = ((0.02 / once) as usize).clamp(1, 10_000);
    let (mut best, mut total, mut calls) = (f64::INFINITY, 0.0, 0usize);
    let start = Instant::now();
    while start.elapsed() < budget || calls == 0 {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        let dt = t.elapsed().as_secs_f64();
        best = best.min(dt / batch as f64);
        total += dt;
        calls += batch;
    }
    (best, total / calls as f64)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A pair of gray frames as f32 0..255: from `DIR/gray_WxH_{0,1}.u8`, else synthetic.
fn frame_pair(data: Option<&Path>, w: usize, h: usize) -> Result<[Vec<f32>; 2], String> {
    if let Some(dir) = data {
        let load = |k: usize| -> Result<Vec<f32>, String> {
            let path = dir.join(format!("gray_{w}x{h}_{k}.u8"));
            let bytes = read_bytes(&path)?;
            if bytes.len() != w * h {
                return Err(format!(
                    "{}: {} bytes, expected {w} x {h}",
                    path.display(),
                    bytes.len()
                ));
            }
            Ok(bytes.iter().map(|&b| f32::from(b)).collect())
        };
        return Ok([load(0)?, load(1)?]);
    }
    let tex = |x: f32, y: f32| {
        128.0
            + 40.0 * (0.31 * x + 0.17 * y).sin()
            + 30.0 * (0.23 * y - 0.41 * x + 1.0).sin()
            + 20.0 * (0.67 * x + 0.53 * y + 2.0).sin()
            + 15.0 * (0.9 * y + 0.2 * x).cos()
    };
    let render = |ox: f32, oy: f32| -> Vec<f32> {
        (0..w * h)
            .map(|i| tex((i % w) as f32 - ox, (i / w) as f32 - oy))
            .collect()
    };
    Ok([render(0.0, 0.0), render(2.5, -1.5)])
}

/// Mono 16 kHz audio: `DIR/audio_16k.f32` (little-endian f32), else 10 s of tones + noise.
fn audio(data: Option<&Path>) -> Result<Vec<f32>, String> {
    if let Some(dir) = data {
        let bytes = read_bytes(&dir.join("audio_16k.f32"))?;
        return Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect());
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    Ok((0..160_000)
        .map(|n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let t = n as f32 / 16_000.0;
            0.3 * (std::f32::consts::TAU * 440.0 * t).sin() + 0.05 * noise
        })
        .collect())
}

/// A 640x480 RGB frame: `DIR/rgb_640x480.u8`, else colour ramps with some texture.
fn camera_frame(data: Option<&Path>) -> Result<Vec<u8>, String> {
    if let Some(dir) = data {
        let path = dir.join("rgb_640x480.u8");
        let bytes = read_bytes(&path)?;
        if bytes.len() != 640 * 480 * 3 {
            return Err(format!("{}: expected 640 x 480 x 3 bytes", path.display()));
        }
        return Ok(bytes);
    }
    Ok((0..640 * 480)
        .flat_map(|i| {
            let (x, y) = (i % 640, i / 640);
            let t = ((x * 7 + y * 13) % 32) as u8;
            [
                (x * 255 / 639) as u8 ^ t,
                (y * 255 / 479) as u8 ^ t,
                ((x + y) % 256) as u8,
            ]
        })
        .collect())
}

/// One measured case: seconds per item (best batch and mean) and what an item is.
struct Row {
    best: f64,
    mean: f64,
    unit: &'static str,
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("frontends bench: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("frontends bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let budget = Duration::from_secs_f64(args.seconds);
    let wanted = |name: &str| args.filters.iter().all(|f| name.contains(f.as_str()));
    let data = args.data.as_deref();
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut report = |name: String, row: Row| {
        println!(
            "{name:<34} {:>12.4} ms {:>12.4} ms   per {}",
            1e3 * row.best,
            1e3 * row.mean,
            row.unit
        );
        rows.insert(name, row);
    };
    println!("{:<34} {:>15} {:>15}", "case", "best", "mean");

    for est_name in ESTIMATOR_NAMES {
        for (w, h) in FLOW_SIZES {
            let name = format!("flow/{est_name}/{w}x{h}");
            if !wanted(&name) {
                continue;
            }
            let [prev, next] = frame_pair(data, w, h)?;
            let mut est = estimator(est_name).map_err(|e| e.to_string())?;
            let mut field = FlowField::new(w, h);
            let mut failed = None;
            let (best, mean) = measure(budget, || {
                if let Err(e) = est.compute(&prev, &next, w, h, &mut field) {
                    failed = Some(e.to_string());
                }
            });
            if let Some(e) = failed {
                return Err(format!("{name}: {e}"));
            }
            std::hint::black_box(&field);
            report(
                name,
                Row {
                    best,
                    mean,
                    unit: "field",
                },
            );
        }
    }

    let samples = audio(data)?;
    let clip_seconds = samples.len() as f64 / 16_000.0;
    let configs = [
        (
            "logmel/ast128",
            FbankConfig {
                window: WindowType::Hanning,
                ..FbankConfig::default()
            },
        ),
        (
            "logmel/kaldi80",
            FbankConfig {
                window: WindowType::Povey,
                num_mel_bins: 80,
                ..FbankConfig::default()
            },
        ),
    ];
    for (name, cfg) in configs {
        if !wanted(name) || samples.len() < 16_000 {
            continue;
        }
        let mut log_mel = LogMel::new(&cfg).map_err(|e| e.to_string())?;
        let hop = log_mel.frame_shift();
        let hops = log_mel.frames_in(samples.len()).max(1);
        let mut checksum = 0.0f32;
        // Streaming, hop by hop, as a microphone delivers it.
        let (best, mean) = measure(budget, || {
            log_mel.reset();
            for chunk in samples.chunks(hop) {
                log_mel.push(chunk, &mut |f| checksum += f[0]);
            }
        });
        std::hint::black_box(checksum);
        let per_second = |t: f64| t / clip_seconds;
        report(
            format!("{name}/second"),
            Row {
                best: per_second(best),
                mean: per_second(mean),
                unit: "second of audio",
            },
        );
        report(
            format!("{name}/hop"),
            Row {
                best: best / hops as f64,
                mean: mean / hops as f64,
                unit: "10 ms hop",
            },
        );
    }

    let frame = camera_frame(data)?;
    for (label, filter) in [
        ("bilinear", ResizeFilter::Bilinear),
        ("area", ResizeFilter::Area),
    ] {
        let name = format!("preprocess/{label}/640x480->224");
        if !wanted(&name) {
            continue;
        }
        let config = PreprocessConfig {
            resize: filter,
            resize_to: Some(ResizeTo::ShortSide(224)),
            crop: Crop::Center,
        };
        let mut pre = Preprocess::new(&config, &ImageNormalize::IMAGENET, (224, 224))
            .map_err(|e| e.to_string())?;
        let mut chw = vec![0.0f32; 3 * 224 * 224];
        let mut failed = None;
        let (best, mean) = measure(budget, || {
            if let Err(e) = pre.to_chw(&frame, 640, 480, &mut chw) {
                failed = Some(e.to_string());
            }
        });
        if let Some(e) = failed {
            return Err(format!("{name}: {e}"));
        }
        std::hint::black_box(&chw);
        report(
            name,
            Row {
                best,
                mean,
                unit: "frame",
            },
        );
    }

    if let Some(path) = &args.json {
        let json: BTreeMap<&String, serde_json::Value> = rows
            .iter()
            .map(|(k, r)| {
                (
                    k,
                    serde_json::json!({"best_s": r.best, "mean_s": r.mean, "unit": r.unit}),
                )
            })
            .collect();
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
