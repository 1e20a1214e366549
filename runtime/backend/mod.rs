//! Inference backends behind one trait: [`tract`] on the CPU (always built),
//! `onnxruntime` on the CPU (feature `onnxruntime`, the library loaded at run time where
//! one is installed) and [`tensorrt`] on NVIDIA GPUs (feature `tensorrt`, where build.rs
//! finds TensorRT). [`open`] picks one (`auto`: TensorRT > onnxruntime > tract, where
//! present); [`switch`] serves the CPU backend while a TensorRT engine builds in the
//! background.

pub mod engine_cache;
mod inflight;
#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;
pub mod switch;
pub mod tensorrt;
pub mod tract;

pub use switch::{BackendStatus, BackendSwitch};

use crate::{err, Result};
use engine_cache::Precision;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A graph input's or output's name and fixed shape (from the manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorShape {
    /// The ONNX name.
    pub name: String,
    /// Its dimensions, batch first.
    pub dims: Vec<usize>,
}

/// One ONNX graph a backend runs, as the manifest declares it: the file, the inputs in
/// the order the runtime passes them, and the one output. A single-graph bundle has one
/// ([`Bundle::graph`](crate::model::Bundle::graph)); a staged bundle one per stage
/// ([`Bundle::runtime_graphs`](crate::model::Bundle::runtime_graphs)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// The ONNX file.
    pub path: PathBuf,
    /// Inputs, in the order [`Backend::run`] receives them.
    pub inputs: Vec<TensorShape>,
    /// The output.
    pub output: TensorShape,
}

/// A dense float32 tensor in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A zero tensor of `shape`.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
        }
    }
}

/// Runs a model: inputs in manifest order, one output tensor back.
pub trait Backend: Send {
    /// Short name for logs and stats (`tract`, `tensorrt`).
    fn name(&self) -> &'static str;
    /// Runs one inference. `inputs` are in the manifest's input order.
    ///
    /// # Errors
    /// [`Backend`](crate::ErrorKind::Backend) when an input has the wrong shape or the
    /// inference fails (the library's error is the source).
    fn run(&mut self, inputs: &[Tensor]) -> Result<Tensor>;
}

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The best available: TensorRT where built and working, else onnxruntime where
    /// its library is found, else tract.
    #[default]
    Auto,
    /// tract on the CPU.
    Tract,
    /// onnxruntime on the CPU; fails with the reason where it is unavailable.
    OnnxRuntime,
    /// TensorRT; fails with the reason where it is unavailable.
    TensorRt,
}

impl std::str::FromStr for BackendChoice {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "tract" | "cpu" => Ok(BackendChoice::Tract),
            "onnxruntime" | "ort" => Ok(BackendChoice::OnnxRuntime),
            "tensorrt" | "trt" => Ok(BackendChoice::TensorRt),
            other => Err(err!(
                Config,
                "backend {other:?}: expected auto, tract, onnxruntime or tensorrt"
            )),
        }
    }
}

/// How to open a backend: which one, CPU threads for tract, and how TensorRT engines
/// are built and cached.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// `auto`, `tract` or `tensorrt`.
    pub choice: BackendChoice,
    /// Threads tract may use for one inference (1: the inference thread only).
    pub threads: usize,
    /// TensorRT precision and engine cache.
    pub engine: tensorrt::EngineOptions,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            choice: BackendChoice::Auto,
            threads: 1,
            engine: tensorrt::EngineOptions::default(),
        }
    }
}

/// Why onnxruntime cannot be used here, or `None` where it can (the first call looks
/// for the library and loads it).
pub fn onnxruntime_unavailable_reason() -> Option<String> {
    #[cfg(feature = "onnxruntime")]
    return onnxruntime::unavailable_reason();
    #[cfg(not(feature = "onnxruntime"))]
    Some("this build has no onnxruntime backend (build with the feature `onnxruntime`)".into())
}

/// onnxruntime for `graph` with `threads` threads, or why not.
fn open_onnxruntime(graph: &Graph, threads: usize) -> Result<Box<dyn Backend>> {
    #[cfg(feature = "onnxruntime")]
    return Ok(Box::new(onnxruntime::OrtBackend::load(graph, threads)?));
    #[cfg(not(feature = "onnxruntime"))]
    {
        let _ = (graph, threads);
        Err(err!(
            Unavailable,
            "onnxruntime: {}",
            onnxruntime_unavailable_reason().unwrap_or_default()
        ))
    }
}

/// Why TensorRT cannot be used here, or `None` where it can.
pub fn tensorrt_unavailable_reason() -> Option<String> {
    tensorrt::availability().err()
}

/// Opens one graph of a bundle as `opts` say and returns it with its status (what
/// serves, what is being prepared, the switch once it happens).
///
/// - `tract`: tract on the CPU.
/// - `tensorrt`: the cached engine, or one built now (minutes on a Jetson); fails
///   with the reason where TensorRT is unavailable.
/// - `auto`: where TensorRT is unavailable, tract (the reason is logged once per
///   process). Where it is available, the cached engine; on a cache miss tract
///   serves at once while the engine builds in the background, and the runtime
///   switches to TensorRT between windows once the engine's output agrees with
///   tract's (relative difference at most 1e-2 for FP16, 1e-3 for FP32).
///
/// # Errors
/// [`Unavailable`](crate::ErrorKind::Unavailable) for `tensorrt` where it cannot run (the
/// reason is in the message); [`Backend`](crate::ErrorKind::Backend) or
/// [`Model`](crate::ErrorKind::Model) when the graph cannot be loaded or disagrees with the
/// manifest's shapes.
pub fn open(
    graph: &Graph,
    opts: &BackendOptions,
) -> Result<(Box<dyn Backend>, Arc<BackendStatus>)> {
    open_with(graph, opts, tensorrt::provider())
}

pub(crate) fn open_with(
    graph: &Graph,
    opts: &BackendOptions,
    provider: Arc<dyn tensorrt::EngineProvider>,
) -> Result<(Box<dyn Backend>, Arc<BackendStatus>)> {
    let settled = |backend: Box<dyn Backend>| {
        let status = BackendStatus::new(backend.name());
        (backend, status)
    };
    let tract = || -> Result<Box<dyn Backend>> {
        Ok(Box::new(tract::TractBackend::load(graph, opts.threads)?))
    };
    // The CPU backend of `auto`: onnxruntime where it is found and takes the graph,
    // else tract.
    let cpu = || -> Result<Box<dyn Backend>> {
        if onnxruntime_unavailable_reason().is_none() {
            match open_onnxruntime(graph, opts.threads) {
                Ok(backend) => return Ok(backend),
                Err(e) => log::warn!(
                    "backend: onnxruntime cannot run {} ({e}); using tract",
                    graph.path.display()
                ),
            }
        }
        tract()
    };
    match opts.choice {
        BackendChoice::Tract => Ok(settled(tract()?)),
        BackendChoice::OnnxRuntime => Ok(settled(open_onnxruntime(graph, opts.threads)?)),
        BackendChoice::TensorRt => {
            provider
                .gpu()
                .map_err(|reason| err!(Unavailable, "tensorrt: {reason}"))?;
            let status = BackendStatus::new("tensorrt");
            let backend = tensorrt::open_with(provider.as_ref(), graph, &opts.engine, &status)?;
            Ok((backend, status))
        }
        BackendChoice::Auto => {
            if let Err(reason) = provider.gpu() {
                // Once per process: a program that opens many runtimes is told once.
                static SKIPPED: std::sync::Once = std::sync::Once::new();
                SKIPPED.call_once(|| match onnxruntime_unavailable_reason() {
                    None => log::info!("backend: tensorrt skipped ({reason}); using onnxruntime"),
                    Some(ort) => log::info!(
                        "backend: tensorrt skipped ({reason}); onnxruntime skipped ({ort}); using tract"
                    ),
                });
                return Ok(settled(cpu()?));
            }
            tensorrt::check_precision(opts.engine.precision)?;
            // A cached engine serves from the first window. Anything else (none, or
            // one TensorRT refuses, or an unreadable cache) is rebuilt in the
            // background below, where a second failure is reported in the status.
            let unusable = match tensorrt::open_cached(provider.as_ref(), graph, &opts.engine) {
                Ok(tensorrt::Cached::Loaded(b)) => return Ok(settled(b)),
                Ok(tensorrt::Cached::Missing) => None,
                Ok(tensorrt::Cached::Refused(e)) | Err(e) => Some(e),
            };
            if let Some(e) = unusable {
                log::warn!("backend: cached tensorrt engine not used ({e}); rebuilding it while tract serves");
            }
            let current = cpu()?;
            let status = BackendStatus::new(current.name());
            let tolerance = if opts.engine.precision == Precision::Fp32 {
                1e-3
            } else {
                1e-2
            };
            let (graph, engine, counts) = (graph.clone(), opts.engine.clone(), status.clone());
            // Joins a build of the same engine already running in this process; the
            // flag is set when the runtime stops (see `switch` for what happens then).
            let job = Box::new(move |cancel: &AtomicBool| {
                let prepared = tensorrt::prepare_with(
                    provider.as_ref(),
                    &graph.path,
                    &graph.inputs,
                    &engine,
                    false,
                    cancel,
                )?;
                if prepared.not_cached.is_some() {
                    counts.count_engine_not_cached();
                }
                if cancel.load(Ordering::Relaxed) {
                    return Err(err!(
                        Stopped,
                        "runtime stopped before the engine was loaded"
                    ));
                }
                provider.load(&prepared.engine.plan, &graph)
            });
            let switching =
                switch::Switching::start(current, "tensorrt", tolerance, status.clone(), job)?;
            Ok((Box::new(switching), status))
        }
    }
}
