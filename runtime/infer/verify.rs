//! `avaction verify <bundle>`: a bundle's goldens (`golden/golden.json`, written by the
//! trainer or the exporter in models/train) through the runtime's own frontends and
//! backend, compared with the outputs PyTorch gave.
//!
//! Checks, each a row of the report with its largest absolute difference:
//! 1. the golden (normalised) inputs through the single graph, against the golden output;
//! 2. a window made by the runtime, through the input assembler, against the golden
//!    inputs: from `source` (raw frames and audio at their times, through the window
//!    scheduler: resize, flow, log-mel) when the golden has it, else from `raw` (the
//!    window's bytes, flow and log-mel as the trainer stored them);
//! 3. that window through the single graph, against the golden output;
//! 4. for staged bundles, that window through the encoders and head, against the golden
//!    output and against the single graph.
//!
//! ```no_run
//! use avaction::infer::verify::{verify, VerifyOptions};
//! use avaction::model::Bundle;
//!
//! let bundle = Bundle::load("models/mov-small")?;
//! let report = verify(&bundle, &VerifyOptions::default())?;
//! for check in &report.checks {
//!     println!("{} {:e} {}", check.name, check.max_diff, check.passed());
//! }
//! assert!(report.passed());
//! # Ok::<(), avaction::Error>(())
//! ```

use super::{plan, InputAssembler, ModelRunner};
use crate::backend::{open, BackendChoice, BackendOptions, Tensor};
use crate::clock::{AudioChunk, Nanos, VideoFrame};
use crate::model::{Bundle, Frontend};
use crate::window::{Window, WindowFlow, WindowScheduler};
use crate::{err, Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Backend for every check (`tract` by default: the one that runs everywhere).
    pub backend: BackendChoice,
    /// Runs of each model check, for its time (the first run is not timed when there
    /// are several: it warms caches).
    pub repeat: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            backend: BackendChoice::Tract,
            repeat: 1,
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What was compared.
    pub name: String,
    /// Largest absolute difference (NaN when the values could not be compared).
    pub max_diff: f32,
    /// Largest difference that passes.
    pub tolerance: f32,
    /// Mean milliseconds per run of the model, for checks that run one.
    pub ms: Option<f64>,
}

impl Check {
    /// Whether the difference is within the tolerance.
    pub fn passed(&self) -> bool {
        self.max_diff <= self.tolerance
    }
}

/// Everything `verify` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The bundle folder.
    pub bundle: PathBuf,
    /// Where the runtime's window came from: `source` (frames and audio) or `raw`.
    pub window_from: &'static str,
    /// The rows, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(Check::passed)
    }
}

/// Runs the checks of the module docs on `bundle`.
///
/// # Errors
/// [`Model`](crate::ErrorKind::Model) when the bundle has no goldens or they disagree
/// with its manifest (a missing entry, a file of the wrong size); as
/// [`crate::backend::open`] and the backend's `run`. A difference over the tolerance is
/// not an error: it is a failed [`Check`].
pub fn verify(bundle: &Bundle, opts: &VerifyOptions) -> Result<Report> {
    let golden = Golden::load(&bundle.dir.join("golden"))?;
    let m = &bundle.manifest;
    let tolerance = golden.json["tolerance"].as_f64().unwrap_or(1e-4) as f32;
    let expected = golden.output(&m.output.name)?;
    let backend = BackendOptions {
        choice: opts.backend,
        ..BackendOptions::default()
    };
    let repeat = opts.repeat.max(1);
    let mut checks = Vec::new();

    // 1. golden inputs -> single graph
    let inputs: Vec<Tensor> = m
        .inputs
        .iter()
        .map(|i| golden.tensor("inputs", &i.name, &i.shape))
        .collect::<Result<_>>()?;
    let (mut single, status) = open(&bundle.graph(), &backend)?;
    let name = status.active();
    let (out, ms) = timed(repeat, || single.run(&inputs))?;
    checks.push(Check {
        name: format!("golden inputs -> single graph ({name})"),
        max_diff: max_abs_diff(&out.data, &expected),
        tolerance,
        ms: Some(ms),
    });

    // 2. the runtime's own window -> inputs
    let (window, window_from, e2e_tolerance) = match golden.json.get("source") {
        Some(source) => (
            source_window(bundle, &golden, source)?,
            "source",
            source["tolerance"].as_f64().unwrap_or(1e-3) as f32,
        ),
        None => (raw_window(bundle, &golden)?, "raw", tolerance),
    };
    let mut assembler = InputAssembler::new(m);
    let filled = assembler.fill(&window)?.to_vec();
    for (i, (input, t)) in m.inputs.iter().zip(&filled).enumerate() {
        checks.push(Check {
            name: format!("{window_from} -> input `{}` (frontends)", input.name),
            max_diff: max_abs_diff(&t.data, &inputs[i].data),
            tolerance: e2e_tolerance,
            ms: None,
        });
    }

    // 3. window -> single graph
    let (out_single, ms) = timed(repeat, || single.run(&filled))?;
    checks.push(Check {
        name: format!("{window_from} -> single graph ({name})"),
        max_diff: max_abs_diff(&out_single.data, &expected),
        tolerance: e2e_tolerance,
        ms: Some(ms),
    });

    // 4. window -> staged
    if bundle.staged().is_some() {
        let (mut runner, _) = ModelRunner::open(bundle, &backend)?;
        // Every run numbers its frames and mel frames anew, so that no token comes from
        // the rings: the time is that of a window whose tokens are all new.
        let mut fresh = window.clone();
        let mut run = 0u64;
        let (out_staged, ms) = timed(repeat, || {
            run += 1;
            fresh.first_frame = window.first_frame + run * (1 << 32);
            fresh.audio_index = window.audio_index + run * (1 << 32);
            runner.run(&fresh, &mut assembler)
        })?;
        checks.push(Check {
            name: format!("{window_from} -> staged, all tokens new ({name})"),
            max_diff: max_abs_diff(&out_staged.data, &expected),
            tolerance: e2e_tolerance,
            ms: Some(ms),
        });
        checks.push(Check {
            name: "staged vs single graph".into(),
            max_diff: max_abs_diff(&out_staged.data, &out_single.data),
            tolerance,
            ms: None,
        });
    }
    Ok(Report {
        bundle: bundle.dir.clone(),
        window_from,
        checks,
    })
}

/// Runs `f` `repeat` times; its last result and the mean milliseconds of the runs after
/// the first (of the one run when `repeat` is 1).
fn timed(repeat: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<(Tensor, f64)> {
    let t0 = Instant::now();
    let mut out = f()?;
    let mut ms = t0.elapsed().as_secs_f64() * 1e3;
    if repeat > 1 {
        let t1 = Instant::now();
        for _ in 1..repeat {
            out = f()?;
        }
        ms = t1.elapsed().as_secs_f64() * 1e3 / (repeat - 1) as f64;
    }
    Ok((out, ms))
}

/// The largest absolute difference; NaN when the lengths differ or a value is NaN.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::NAN;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m, d| {
            if d.is_nan() || m.is_nan() {
                f32::NAN
            } else {
                m.max(d)
            }
        })
}

/// `golden/golden.json` and the folder its files are in.
struct Golden {
    dir: PathBuf,
    json: Value,
}

impl Golden {
    fn load(dir: &Path) -> Result<Golden> {
        let path = dir.join("golden.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::io(&path, e).context("the bundle has no goldens to verify against")
        })?;
        let json = serde_json::from_str(&text)
            .map_err(|e| err!(Model, "{}: not JSON", path.display()).caused_by(e))?;
        Ok(Golden {
            dir: dir.to_path_buf(),
            json,
        })
    }

    /// The entry `section.name`: its file and shape, checked against `dtype`.
    fn entry(&self, section: &str, name: &str, dtype: &str) -> Result<(PathBuf, Vec<usize>)> {
        let e = &self.json[section][name];
        let file = e["file"]
            .as_str()
            .filter(|f| !f.contains('/') && !f.contains('\\') && !f.starts_with('.'))
            .ok_or_else(|| {
                err!(
                    Model,
                    "{}: no {section}.{name} with a plain file name",
                    self.dir.join("golden.json").display()
                )
            })?;
        let shape = e["shape"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_u64().map(|d| d as usize))
                    .collect()
            })
            .unwrap_or_default();
        if e["dtype"].as_str().unwrap_or("f32") != dtype {
            return Err(err!(
                Model,
                "{}: {section}.{name} must have dtype {dtype}",
                self.dir.join("golden.json").display()
            ));
        }
        Ok((self.dir.join(file), shape))
    }

    /// The bytes of `section.name`, checked to hold `count` values of `size` bytes.
    fn bytes(&self, section: &str, name: &str, dtype: &str, size: usize) -> Result<Vec<u8>> {
        let (path, shape) = self.entry(section, name, dtype)?;
        let count: usize = shape.iter().product();
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if count == 0 || meta.len() != (count * size) as u64 {
            return Err(err!(
                Model,
                "{}: {} bytes, but {section}.{name} has shape {shape:?} of {dtype}",
                path.display(),
                meta.len()
            ));
        }
        std::fs::read(&path).map_err(|e| Error::io(&path, e))
    }

    fn f32s(&self, section: &str, name: &str) -> Result<Vec<f32>> {
        Ok(self
            .bytes(section, name, "f32", 4)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// `section.name` as a tensor of `shape`.
    fn tensor(&self, section: &str, name: &str, shape: &[usize]) -> Result<Tensor> {
        let data = self.f32s(section, name)?;
        if data.len() != shape.iter().product::<usize>() {
            return Err(err!(
                Model,
                "golden {section}.{name}: {} values, the manifest's shape {shape:?} needs {}",
                data.len(),
                shape.iter().product::<usize>()
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// The golden output: `outputs.<name>`, or the only entry of `outputs`.
    fn output(&self, name: &str) -> Result<Vec<f32>> {
        let outputs = self.json["outputs"].as_object();
        let key = match outputs {
            Some(o) if o.contains_key(name) => name.to_string(),
            Some(o) if o.len() == 1 => o.keys().next().cloned().unwrap_or_default(),
            _ => {
                return Err(err!(
                    Model,
                    "{}: no outputs.{name}",
                    self.dir.join("golden.json").display()
                ))
            }
        };
        self.f32s("outputs", &key)
    }
}

/// The window the trainer stored (`raw`): frames, flow and log-mel as the window holds
/// them.
fn raw_window(bundle: &Bundle, golden: &Golden) -> Result<Window> {
    let m = &bundle.manifest;
    let (w, h) = m.frame_size();
    let frames = golden.bytes("raw", "frames", "u8", 1)?;
    let flow = match m.flow() {
        None => WindowFlow::None,
        Some(f) if f.encoding == crate::frontend::flow::FlowEncoding::Float => {
            WindowFlow::Float(golden.f32s("raw", "flow")?)
        }
        Some(_) => WindowFlow::Mov(golden.bytes("raw", "flow", "u8", 1)?),
    };
    let mel = m.logmel().map(|l| l.frames);
    let logmel = match mel {
        Some(_) => golden.f32s("raw", "logmel")?,
        None => Vec::new(),
    };
    let t = m.window.frames;
    if frames.len() != t * w as usize * h as usize * 3 {
        return Err(err!(
            Model,
            "golden raw.frames: {} bytes, the window needs {t} frames of {w}x{h} RGB",
            frames.len()
        ));
    }
    let period = Nanos::SECOND / i64::from(m.window.fps.max(1));
    let t_end = period * m.window.span() as i64;
    Ok(Window {
        index: 0,
        t_start: Nanos::ZERO,
        t_end,
        t_last_frame: t_end - period,
        frames,
        flow,
        audio_start: mel.map(|_| Nanos::ZERO),
        skew_ns: mel.map(|_| Nanos::ZERO),
        audio_missing: 0,
        invalid_audio: 0,
        first_frame: 0,
        stride: m.window.frame_stride(),
        audio_slots: 0..mel.unwrap_or(0),
        audio_index: 0,
        logmel,
        video_complete_at: Instant::now(),
    })
}

/// The window the runtime makes from the golden's source frames and audio, at their
/// times, through the window scheduler (resize, flow, log-mel): the last window they
/// complete.
fn source_window(bundle: &Bundle, golden: &Golden, source: &Value) -> Result<Window> {
    let m = &bundle.manifest;
    let (frames_path, shape) = golden.entry("source", "frames", "u8")?;
    let [n, h, w, 3] = shape[..] else {
        return Err(err!(
            Model,
            "{}: source.frames must have shape [frames, height, width, 3], got {shape:?}",
            frames_path.display()
        ));
    };
    let bytes = golden.bytes("source", "frames", "u8", 1)?;
    let fps = m.window.fps.max(1);
    let period = Nanos::SECOND / i64::from(fps);
    let t0 = Nanos::from_secs_f64(source["frames_t0_s"].as_f64().unwrap_or(0.0));
    let mut scheduler = WindowScheduler::new(plan::window_config(m))?;
    if let Some(l) = m.logmel() {
        let samples = golden.f32s("source", "audio")?;
        scheduler.push_audio(&AudioChunk {
            t_ns: Nanos::from_secs_f64(source["audio_t0_s"].as_f64().unwrap_or(0.0)),
            rate: l.fbank.sample_rate,
            samples,
        });
    }
    let frame_bytes = w * h * 3;
    let mut last = None;
    for (k, rgb) in bytes.chunks_exact(frame_bytes).take(n).enumerate() {
        scheduler.push_frame(&VideoFrame {
            t_ns: t0 + period * k as i64,
            width: w as u32,
            height: h as u32,
            rgb: rgb.to_vec(),
        })?;
        while let Some(window) = scheduler.poll(None, false) {
            last = Some(window);
        }
    }
    while let Some(window) = scheduler.poll(None, true) {
        last = Some(window);
    }
    let window = last.ok_or_else(|| {
        err!(
            Model,
            "golden source: {n} frames make no window of {} frames at stride {}",
            m.window.frames,
            m.window.frame_stride()
        )
    })?;
    if m.input(Frontend::Logmel).is_some() && window.audio_missing > 0 {
        let (covered, total) = (
            window.audio_slots.len(),
            window.audio_slots.len() + window.audio_missing,
        );
        return Err(err!(
            Model,
            "golden source: the audio covers {covered} of the window's {total} mel frames (it \
             must reach from {total} mel frames before the window's end to its end)"
        ));
    }
    Ok(window)
}
