//! The onnxruntime backend (feature `onnxruntime`, on by default): ONNX Runtime's CPU
//! execution provider through the `ort` crate, with the library loaded at run time
//! (`load-dynamic`), so nothing is downloaded or linked at build time and a machine
//! without it builds and runs the same (tract serves).
//!
//! Where the library is found, in order:
//! 0. the path given to [`use_library`] before the first use (a program's own choice);
//! 1. `$AVACTION_ONNXRUNTIME`, then `$ORT_DYLIB_PATH`: a `libonnxruntime.so*` file, or a
//!    folder holding one (e.g. the `onnxruntime/capi` folder of PyPI's `onnxruntime`
//!    wheel, which ships the library);
//! 2. the system's library folders: `/usr/local/lib`, `/usr/lib/<arch>-linux-gnu`,
//!    `/usr/lib` (Debian's `libonnxruntime` packages, a manual install).
//!
//! Python environments are not searched on their own: which library serves is always
//! what the environment or the system says.

use super::{Backend, Graph, Tensor};
use crate::{err, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The folders searched after the environment variables.
const SYSTEM_DIRS: &[&str] = &[
    "/usr/local/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib",
];

/// A loaded library and the process's onnxruntime environment.
struct Loaded {
    path: PathBuf,
    env: ort::environment::Environment,
}

/// The loaded library, or why there is none; decided once per process.
static LIBRARY: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

fn library() -> &'static std::result::Result<Loaded, String> {
    LIBRARY.get_or_init(|| load(locate()?))
}

fn load(path: PathBuf) -> std::result::Result<Loaded, String> {
    let env = ort::init_from(&path)
        .map_err(|e| format!("{}: cannot be loaded: {e}", path.display()))?
        .with_name("avaction")
        .build()
        .map_err(|e| format!("{}: no environment: {e}", path.display()))?;
    Ok(Loaded { path, env })
}

/// Loads the onnxruntime library at `path` (a `libonnxruntime.so*` file or a folder
/// holding one) for this process, instead of searching for it. Only the first library a
/// process loads serves: call this before anything opens an onnxruntime backend.
///
/// # Errors
/// [`Unavailable`](crate::ErrorKind::Unavailable) when there is no library at `path`,
/// it does not load, or another library was loaded already (both named).
pub fn use_library(path: &Path) -> Result<()> {
    let file = library_in(path).ok_or_else(|| {
        err!(
            Unavailable,
            "onnxruntime: no libonnxruntime.so at {}",
            path.display()
        )
    })?;
    let chosen = LIBRARY.get_or_init(|| load(file.clone()));
    match chosen {
        Ok(loaded) if loaded.path == file => Ok(()),
        Ok(loaded) => Err(err!(
            Unavailable,
            "onnxruntime: {} is loaded already; {} cannot replace it",
            loaded.path.display(),
            file.display()
        )),
        Err(reason) => Err(err!(Unavailable, "onnxruntime: {reason}")),
    }
}

/// The library file the search of the module docs finds.
fn locate() -> std::result::Result<PathBuf, String> {
    for var in ["AVACTION_ONNXRUNTIME", "ORT_DYLIB_PATH"] {
        if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let path = PathBuf::from(value);
            return library_in(&path)
                .ok_or_else(|| format!("${var} = {}: no libonnxruntime.so there", path.display()));
        }
    }
    SYSTEM_DIRS
        .iter()
        .find_map(|dir| library_in(Path::new(dir)))
        .ok_or_else(|| {
            "no libonnxruntime.so found (set AVACTION_ONNXRUNTIME to the library or its folder, \
             e.g. the onnxruntime/capi folder of the PyPI wheel)"
                .to_string()
        })
}

/// `path` if it is a library file, else the newest-named `libonnxruntime.so*` in it.
fn library_in(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
                && p.is_file()
        })
        .collect();
    found.sort();
    found.pop()
}

/// Why onnxruntime cannot be used here, or `None` where it can (the library is loaded
/// on the first call).
pub fn unavailable_reason() -> Option<String> {
    library().as_ref().err().cloned()
}

/// The library serving, where one is loaded.
pub fn library_path() -> Option<PathBuf> {
    library().as_ref().ok().map(|l| l.path.clone())
}

/// A graph in an onnxruntime session on the CPU.
pub struct OrtBackend {
    session: ort::session::Session,
    inputs: Vec<(String, Vec<usize>)>,
    output: String,
}

impl std::fmt::Debug for OrtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtBackend")
            .field("inputs", &self.inputs)
            .field("output", &self.output)
            .finish()
    }
}

impl OrtBackend {
    /// Opens `graph` in a session with `threads` intra-op threads (no spinning: the
    /// other stages share the cores), all graph optimisations on, and checks that its
    /// inputs and output are the ones `graph` declares.
    ///
    /// # Errors
    /// [`Unavailable`](crate::ErrorKind::Unavailable) when no library is found or it
    /// does not load; [`Backend`](crate::ErrorKind::Backend) when the session cannot be
    /// made (onnxruntime's message is the source); [`Model`](crate::ErrorKind::Model)
    /// when the graph's inputs or output disagree with `graph`.
    pub fn load(graph: &Graph, threads: usize) -> Result<OrtBackend> {
        let env = match library() {
            Ok(loaded) => &loaded.env,
            Err(reason) => return Err(err!(Unavailable, "onnxruntime: {reason}")),
        };
        let path = &graph.path;
        let fail = |what: &str, e: ort::Error| {
            err!(Backend, "onnxruntime: {}: {what}", path.display()).caused_by(e)
        };
        let session = ort::session::Session::builder(env)
            .map_err(|e| fail("cannot make a session", e))?
            .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Level3)
            .map_err(|e| fail("optimisation level", e.into()))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| fail("threads", e.into()))?
            .with_inter_threads(1)
            .map_err(|e| fail("threads", e.into()))?
            .with_intra_op_spinning(false)
            .map_err(|e| fail("spinning", e.into()))?
            .commit_from_file(path)
            .map_err(|e| fail("cannot load the graph", e))?;
        let names: Vec<String> = session
            .inputs()
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        let declared: Vec<&str> = graph.inputs.iter().map(|i| i.name.as_str()).collect();
        if names != declared {
            return Err(err!(
                Model,
                "{}: the graph's inputs are {names:?}, the manifest declares {declared:?}",
                path.display()
            ));
        }
        // A dimension the graph fixes must be the manifest's (a free one, -1 or a symbol,
        // takes any): caught here, not as a failed run later.
        for (input, spec) in session.inputs().iter().zip(&graph.inputs) {
            let Some(declared) = input.dtype().tensor_shape() else {
                continue;
            };
            let fits = declared.len() == spec.dims.len()
                && declared
                    .iter()
                    .zip(&spec.dims)
                    .all(|(&d, &m)| d < 0 || d as usize == m);
            if !fits {
                return Err(err!(
                    Model,
                    "{}: input `{}` has shape {:?} in the graph but {:?} in the manifest",
                    path.display(),
                    spec.name,
                    &declared[..],
                    spec.dims
                ));
            }
        }
        let output = session
            .outputs()
            .first()
            .map(|o| o.name().to_string())
            .ok_or_else(|| err!(Model, "{}: the graph has no output", path.display()))?;
        Ok(OrtBackend {
            session,
            inputs: graph
                .inputs
                .iter()
                .map(|i| (i.name.clone(), i.dims.clone()))
                .collect(),
            output,
        })
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Tensor> {
        if inputs.len() != self.inputs.len() {
            return Err(err!(
                Backend,
                "onnxruntime: {} inputs given, model takes {}",
                inputs.len(),
                self.inputs.len()
            ));
        }
        let mut values = Vec::with_capacity(inputs.len());
        for (t, (name, shape)) in inputs.iter().zip(&self.inputs) {
            if &t.shape != shape || t.data.len() != shape.iter().product::<usize>() {
                return Err(err!(
                    Backend,
                    "onnxruntime: input `{name}` of shape {:?} given, model takes {shape:?}",
                    t.shape
                ));
            }
            let value = ort::value::TensorRef::from_array_view((&shape[..], &t.data[..]))
                .map_err(|e| err!(Backend, "onnxruntime: input `{name}`").caused_by(e))?;
            values.push((name.as_str(), value));
        }
        let outputs = self
            .session
            .run(values)
            .map_err(|e| err!(Backend, "onnxruntime: inference failed").caused_by(e))?;
        let (shape, data) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| err!(Backend, "onnxruntime: output is not float32").caused_by(e))?;
        Ok(Tensor {
            shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
            data: data.to_vec(),
        })
    }
}
