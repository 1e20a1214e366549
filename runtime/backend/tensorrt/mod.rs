//! The TensorRT backend: the bundle's ONNX graph is compiled into an engine by
//! TensorRT's ONNX parser and builder (FP16 or FP32), stored in the
//! [`EngineCache`], and run with a CUDA stream over buffers allocated once.
//!
//! The C++ side is a thin shim (runtime/backend/tensorrt/shim.cpp) compiled by build.rs
//! with the `tensorrt` feature where TensorRT and CUDA are found; elsewhere
//! [`availability`] says why the backend is absent and everything else returns
//! [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable).
//!
//! Engines are built once per model file, TensorRT version, GPU, precision and input
//! shapes: the engine is looked up in the cache and built only on a miss, a stale key
//! or a corrupt file (a cached engine TensorRT refuses to load is deleted and rebuilt
//! too). INT8 needs a calibration set, which avaction does not provide, so it
//! is refused with a message saying so.
//!
//! One process builds an engine once at a time: a request for an engine that is being
//! built (a second runtime opening the same model, the same cache) waits for that
//! build and shares its engine. An engine built but not written to the cache (a full
//! disk, a read-only folder) is still served, from memory, with a warning naming the
//! cache file and the error; only `avaction engine build`, whose purpose is the cache,
//! fails then.
//!
//! ```
//! match avaction::backend::tensorrt::availability() {
//!     Ok(gpu) => println!("TensorRT {} on {}", gpu.tensorrt_version, gpu.name),
//!     Err(reason) => println!("TensorRT not available: {reason}"),
//! }
//! ```

#[cfg(avaction_tensorrt)]
mod ffi;
pub mod probe;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use super::engine_cache::{EngineCache, EngineKey, Lookup, Precision};
use super::inflight::InFlight;
use super::{Backend, BackendStatus, Graph, TensorShape};
use crate::{err, Error, Result};

/// The GPU TensorRT would run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// Device name as the CUDA driver reports it (e.g. `Orin`).
    pub name: String,
    /// CUDA compute capability (major, minor).
    pub compute_capability: (u32, u32),
    /// Integrated GPU sharing memory with the CPU (Jetson).
    pub integrated: bool,
    /// Version of the loaded libnvinfer, `major.minor.patch`.
    pub tensorrt_version: String,
}

/// Builds and loads engines: TensorRT itself, or a fake in tests.
pub(crate) trait EngineProvider: Send + Sync {
    /// The GPU and TensorRT version, or why there is none.
    fn gpu(&self) -> std::result::Result<GpuInfo, String>;
    /// Compiles ONNX bytes into a serialised engine.
    fn build(&self, onnx: &[u8], shapes: &[TensorShape], precision: Precision) -> Result<Vec<u8>>;
    /// Deserialises an engine into a backend for `graph`'s inputs and output.
    fn load(&self, plan: &[u8], graph: &Graph) -> Result<Box<dyn Backend>>;
}

/// Where [`build_engines`] got an engine.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineSource {
    /// Found in the cache.
    Cache,
    /// Built now, in this many seconds (no usable cached engine).
    Built {
        /// Build time in seconds.
        seconds: f64,
        /// Why a cached file was not used, if there was one (stale or corrupt).
        replaced: Option<String>,
    },
}

/// An engine ready to load: its bytes, its key and where it is stored.
#[derive(Debug, Clone)]
pub struct PreparedEngine {
    /// The serialised engine.
    pub plan: Vec<u8>,
    /// What it was built from and for.
    pub key: EngineKey,
    /// Its file in the cache.
    pub path: PathBuf,
    /// Whether it came from the cache or was built.
    pub source: EngineSource,
}

/// How engines are built and where they are kept.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// FP16 (default) or FP32; INT8 is refused.
    pub precision: Precision,
    /// The engine cache.
    pub cache: EngineCache,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            precision: Precision::Fp16,
            cache: EngineCache::user_default(),
        }
    }
}

pub(crate) fn check_precision(precision: Precision) -> Result<()> {
    if precision == Precision::Int8 {
        return Err(err!(
            Config,
            "tensorrt: INT8 needs a calibration set and avaction has no INT8 calibrator; \
             use precision fp16 (half the memory of fp32, accuracy checked against tract) or fp32"
        ));
    }
    Ok(())
}

/// The cache key of `onnx` with these shapes and options on `gpu`.
pub(crate) fn engine_key(
    onnx: &[u8],
    gpu: &GpuInfo,
    shapes: &[TensorShape],
    precision: Precision,
) -> EngineKey {
    let shapes: Vec<String> = shapes
        .iter()
        .map(|s| {
            let dims: Vec<String> = s.dims.iter().map(|d| d.to_string()).collect();
            format!("{}={}", s.name, dims.join("x"))
        })
        .collect();
    EngineKey::new(
        onnx,
        &gpu.tensorrt_version,
        &gpu.name,
        gpu.compute_capability,
        precision,
        &format!("inputs {}", shapes.join(",")),
    )
}

/// The GPU, the ONNX bytes of `graph` and the engine's cache key; refuses INT8 and
/// reports a missing TensorRT as [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable).
fn keyed(
    provider: &dyn EngineProvider,
    graph: &Path,
    shapes: &[TensorShape],
    precision: Precision,
) -> Result<(GpuInfo, Vec<u8>, EngineKey)> {
    check_precision(precision)?;
    let gpu = provider
        .gpu()
        .map_err(|reason| err!(Unavailable, "tensorrt: {reason}"))?;
    let onnx = std::fs::read(graph).map_err(|e| Error::io(graph, e))?;
    let key = engine_key(&onnx, &gpu, shapes, precision);
    Ok((gpu, onnx, key))
}

/// An engine ready to load, and the error of its cache write if that failed (the
/// engine is then served from memory).
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) engine: PreparedEngine,
    pub(crate) not_cached: Option<Error>,
}

/// Engine builds in progress in this process, by cache file (see the module docs).
static BUILDS: LazyLock<InFlight<Result<Prepared>>> = LazyLock::new(InFlight::new);

/// Finds the engine for `graph` in the cache, or builds and stores it. `force`
/// rebuilds even on a hit. A build of the same engine already running in this process
/// is joined, not repeated. `cancel` is checked before a build starts and while
/// waiting for another's (a build in progress is not interrupted); once it is set the
/// answer is a [`Stopped`](crate::ErrorKind::Stopped) error.
pub(crate) fn prepare_with(
    provider: &dyn EngineProvider,
    graph: &Path,
    shapes: &[TensorShape],
    opts: &EngineOptions,
    force: bool,
    cancel: &AtomicBool,
) -> Result<Prepared> {
    let (gpu, onnx, key) = keyed(provider, graph, shapes, opts.precision)?;
    let path = opts.cache.path(&key);
    let cached = |plan| {
        log::info!(
            "tensorrt: engine for {} from {}",
            graph.display(),
            path.display()
        );
        Ok(Prepared {
            engine: PreparedEngine {
                plan,
                key: key.clone(),
                path: path.clone(),
                source: EngineSource::Cache,
            },
            not_cached: None,
        })
    };
    let replaced = match opts.cache.load(&key)? {
        Lookup::Hit(plan) if !force => return cached(plan),
        Lookup::Hit(_) => Some("rebuild forced".to_string()),
        Lookup::Miss => None,
        Lookup::Discarded(reason) => Some(reason),
    };
    let build = || -> Result<Prepared> {
        log::info!(
            "tensorrt: building a {} engine for {} on {} (TensorRT {}); this can take minutes on a Jetson",
            opts.precision.as_str(),
            graph.display(),
            gpu.name,
            gpu.tensorrt_version
        );
        let t0 = Instant::now();
        let plan = provider
            .build(&onnx, shapes, opts.precision)
            .map_err(|e| e.context(graph.display()))?;
        let seconds = t0.elapsed().as_secs_f64();
        let not_cached = match opts.cache.store(&key, &plan) {
            Ok(stored) => {
                log::info!(
                    "tensorrt: engine built in {seconds:.1} s, stored in {}",
                    stored.display()
                );
                None
            }
            Err(e) => {
                log::warn!(
                    "tensorrt: engine built in {seconds:.1} s but not stored in the cache as {} \
                     ({e}); it is served from memory and will be built again on the next start",
                    path.display()
                );
                Some(e)
            }
        };
        Ok(Prepared {
            engine: PreparedEngine {
                plan,
                key: key.clone(),
                path: path.clone(),
                source: EngineSource::Built { seconds, replaced },
            },
            not_cached,
        })
    };
    let run = |cancel: &AtomicBool| {
        // A build of this process may have ended and stored it since the lookup.
        if !force {
            if let Ok(Lookup::Hit(plan)) = opts.cache.load(&key) {
                return Some(cached(plan));
            }
        }
        if cancel.load(Ordering::Relaxed) {
            return None;
        }
        Some(build())
    };
    BUILDS.run(&path, cancel, run).unwrap_or_else(|| {
        Err(err!(
            Stopped,
            "tensorrt: engine for {} not prepared: the runtime stopped",
            graph.display()
        ))
    })
}

/// What the cache held for a graph, without building anything.
pub(crate) enum Cached {
    /// A valid engine, loaded.
    Loaded(Box<dyn Backend>),
    /// No usable file (none, stale or corrupt; the cache deletes the last two).
    Missing,
    /// A valid file TensorRT refused to load (e.g. after a driver change); it has been
    /// deleted so the next build replaces it. The error says why it was refused.
    Refused(Error),
}

/// Loads the graph's engine from the cache if there is one: one read of the ONNX file
/// and of the engine file, no build.
pub(crate) fn open_cached(
    provider: &dyn EngineProvider,
    graph: &Graph,
    opts: &EngineOptions,
) -> Result<Cached> {
    let (_, _, key) = keyed(provider, &graph.path, &graph.inputs, opts.precision)?;
    let Lookup::Hit(plan) = opts.cache.load(&key)? else {
        return Ok(Cached::Missing);
    };
    let path = opts.cache.path(&key);
    match provider.load(&plan, graph) {
        Ok(backend) => {
            log::info!(
                "tensorrt: engine for {} from {}",
                graph.path.display(),
                path.display()
            );
            Ok(Cached::Loaded(backend))
        }
        Err(e) => {
            log::warn!(
                "tensorrt: cached engine {} does not load ({e}); deleting it",
                path.display()
            );
            std::fs::remove_file(&path).map_err(|io| Error::io(&path, io))?;
            Ok(Cached::Refused(e))
        }
    }
}

/// Loads the graph's engine from the cache, or builds, stores and loads it now. A
/// cached engine that TensorRT refuses to load is deleted and rebuilt once. An engine
/// the cache could not store is counted in `status` and served all the same.
pub(crate) fn open_with(
    provider: &dyn EngineProvider,
    graph: &Graph,
    opts: &EngineOptions,
    status: &BackendStatus,
) -> Result<Box<dyn Backend>> {
    if let Cached::Loaded(backend) = open_cached(provider, graph, opts)? {
        return Ok(backend);
    }
    let never = AtomicBool::new(false);
    let prepared = prepare_with(provider, &graph.path, &graph.inputs, opts, false, &never)?;
    if prepared.not_cached.is_some() {
        status.count_engine_not_cached();
    }
    provider.load(&prepared.engine.plan, graph)
}

/// TensorRT on this machine: the provider the runtime uses.
pub(crate) fn provider() -> Arc<dyn EngineProvider> {
    Arc::new(TensorRt { device: 0 })
}

/// Whether TensorRT can run here: the GPU it would use, or why not (not built in, no
/// driver, no device, headers and library of different versions). Probed once.
///
/// # Errors
/// The reason TensorRT cannot run here, as one sentence for logs and `avaction devices`.
pub fn availability() -> std::result::Result<GpuInfo, String> {
    static PROBE: std::sync::OnceLock<std::result::Result<GpuInfo, String>> =
        std::sync::OnceLock::new();
    PROBE.get_or_init(|| TensorRt { device: 0 }.probe()).clone()
}

/// Builds (or finds in the cache) the engine of each graph, e.g. every graph the
/// runtime runs for a bundle (one per stage for a staged bundle, else the single graph:
/// `Bundle::runtime_graphs`), for deployment images: `avaction engine build`. `force`
/// rebuilds.
///
/// # Errors
/// [`Unavailable`](crate::ErrorKind::Unavailable) where TensorRT cannot run;
/// [`Backend`](crate::ErrorKind::Backend) when a build or the test load of an engine fails;
/// [`Io`](crate::ErrorKind::Io) (or [`Config`](crate::ErrorKind::Config) for a folder
/// refused as shared) when the cache cannot be written: filling it is the point.
pub fn build_engines(
    graphs: &[Graph],
    opts: &EngineOptions,
    force: bool,
) -> Result<Vec<PreparedEngine>> {
    build_engines_with(provider().as_ref(), graphs, opts, force)
}

/// [`build_engines`] with `provider`.
pub(crate) fn build_engines_with(
    provider: &dyn EngineProvider,
    graphs: &[Graph],
    opts: &EngineOptions,
    force: bool,
) -> Result<Vec<PreparedEngine>> {
    let never = AtomicBool::new(false);
    let mut engines = Vec::new();
    for graph in graphs {
        let prepared = prepare_with(provider, &graph.path, &graph.inputs, opts, force, &never)?;
        if let Some(e) = prepared.not_cached {
            return Err(e);
        }
        let prepared = prepared.engine;
        // Load it once: an engine that builds but does not deserialise is caught here,
        // not on the device at first start.
        provider
            .load(&prepared.plan, graph)
            .map_err(|e| e.context(format!("engine {}", prepared.path.display())))?;
        engines.push(prepared);
    }
    Ok(engines)
}

/// The real TensorRT, on CUDA device `device`.
struct TensorRt {
    #[cfg_attr(not(avaction_tensorrt), allow(dead_code))]
    device: i32,
}

#[cfg(not(avaction_tensorrt))]
impl TensorRt {
    fn probe(&self) -> std::result::Result<GpuInfo, String> {
        Err(match option_env!("AVACTION_TENSORRT_MISSING") {
            Some(reason) => format!("built with --features tensorrt, but {reason}"),
            None => "this build has no TensorRT backend (build with --features tensorrt on a \
                     machine with TensorRT)"
                .to_string(),
        })
    }
}

#[cfg(not(avaction_tensorrt))]
impl EngineProvider for TensorRt {
    fn gpu(&self) -> std::result::Result<GpuInfo, String> {
        self.probe()
    }
    fn build(&self, _: &[u8], _: &[TensorShape], _: Precision) -> Result<Vec<u8>> {
        Err(err!(Unavailable, "tensorrt: {}", self.probe().unwrap_err()))
    }
    fn load(&self, _: &[u8], _: &Graph) -> Result<Box<dyn Backend>> {
        Err(err!(Unavailable, "tensorrt: {}", self.probe().unwrap_err()))
    }
}

#[cfg(avaction_tensorrt)]
impl TensorRt {
    fn probe(&self) -> std::result::Result<GpuInfo, String> {
        let version = ffi::library()?;
        ffi::device(self.device, version)
    }
}

#[cfg(avaction_tensorrt)]
impl EngineProvider for TensorRt {
    fn gpu(&self) -> std::result::Result<GpuInfo, String> {
        availability()
    }
    fn build(&self, onnx: &[u8], shapes: &[TensorShape], precision: Precision) -> Result<Vec<u8>> {
        check_precision(precision)?;
        ffi::build(self.device, onnx, precision == Precision::Fp16, shapes)
    }
    fn load(&self, plan: &[u8], graph: &Graph) -> Result<Box<dyn Backend>> {
        Ok(Box::new(TrtBackend::new(self.device, plan, graph)?))
    }
}

/// A loaded engine behind the [`Backend`] trait.
#[cfg(avaction_tensorrt)]
struct TrtBackend {
    engine: ffi::Engine,
    /// One host buffer per I/O tensor, in the engine's order.
    buffers: Vec<Vec<f32>>,
    /// For each manifest input, its I/O index.
    inputs: Vec<usize>,
    output: usize,
}

#[cfg(avaction_tensorrt)]
impl TrtBackend {
    fn new(device: i32, plan: &[u8], graph: &Graph) -> Result<TrtBackend> {
        let engine = ffi::Engine::load(device, plan, &graph.inputs)?;
        let find = |name: &str, input: bool| {
            engine
                .io
                .iter()
                .position(|io| io.name == name && io.input == input)
        };
        let mut inputs = Vec::new();
        for spec in &graph.inputs {
            let ix = find(&spec.name, true)
                .ok_or_else(|| err!(Model, "tensorrt: the engine has no input `{}`", spec.name))?;
            if engine.io[ix].dims != spec.dims {
                return Err(err!(
                    Model,
                    "tensorrt: input `{}` has shape {:?} in the engine but {:?} in the manifest",
                    spec.name,
                    engine.io[ix].dims,
                    spec.dims
                ));
            }
            inputs.push(ix);
        }
        let output = find(&graph.output.name, false)
            .or_else(|| engine.io.iter().position(|io| !io.input))
            .ok_or_else(|| err!(Model, "tensorrt: the engine has no output"))?;
        if engine.io[output].dims != graph.output.dims {
            return Err(err!(
                Model,
                "tensorrt: output `{}` has shape {:?} in the engine but {:?} in the manifest",
                engine.io[output].name,
                engine.io[output].dims,
                graph.output.dims
            ));
        }
        let buffers = engine
            .io
            .iter()
            .map(|io| vec![0.0; io.dims.iter().product()])
            .collect();
        Ok(TrtBackend {
            engine,
            buffers,
            inputs,
            output,
        })
    }
}

#[cfg(avaction_tensorrt)]
impl Backend for TrtBackend {
    fn name(&self) -> &'static str {
        "tensorrt"
    }

    fn run(&mut self, inputs: &[super::Tensor]) -> Result<super::Tensor> {
        if inputs.len() != self.inputs.len() {
            return Err(err!(
                Backend,
                "tensorrt: {} inputs given, model takes {}",
                inputs.len(),
                self.inputs.len()
            ));
        }
        for (t, &ix) in inputs.iter().zip(&self.inputs) {
            let buf = &mut self.buffers[ix];
            if t.data.len() != buf.len() {
                return Err(err!(
                    Backend,
                    "tensorrt: input of shape {:?} given, `{}` takes {:?}",
                    t.shape,
                    self.engine.io[ix].name,
                    self.engine.io[ix].dims
                ));
            }
            buf.copy_from_slice(&t.data);
        }
        self.engine.run(&mut self.buffers)?;
        Ok(super::Tensor {
            shape: self.engine.io[self.output].dims.clone(),
            data: self.buffers[self.output].clone(),
        })
    }
}

#[cfg(test)]
mod tests;
