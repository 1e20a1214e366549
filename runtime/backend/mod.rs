//! Inference backends behind one trait: [`tract`](self::tract) on the CPU (always
//! built); TensorRT comes behind the same [`Backend`] trait (feature `tensorrt`).

pub mod engine_cache;
pub mod tract;

use crate::model::Bundle;
use crate::{err, Result};

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
    fn run(&mut self, inputs: &[Tensor]) -> Result<Tensor>;
}

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The best available (TensorRT where built and working, else tract).
    #[default]
    Auto,
    /// tract on the CPU.
    Tract,
    /// TensorRT; fails with the reason where it is unavailable.
    TensorRt,
}

impl std::str::FromStr for BackendChoice {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "tract" | "cpu" => Ok(BackendChoice::Tract),
            "tensorrt" | "trt" => Ok(BackendChoice::TensorRt),
            other => Err(err!(
                Config,
                "backend {other:?}: expected auto, tract or tensorrt"
            )),
        }
    }
}

/// Why TensorRT cannot be used in this build.
pub fn tensorrt_unavailable_reason() -> &'static str {
    "this build has no TensorRT backend (build with --features tensorrt on a machine with TensorRT)"
}

/// Opens the bundle's model with the chosen backend; `auto` logs why TensorRT was
/// skipped and falls back to tract.
pub fn open(bundle: &Bundle, choice: BackendChoice, threads: usize) -> Result<Box<dyn Backend>> {
    match choice {
        BackendChoice::TensorRt => Err(err!(
            Unavailable,
            "tensorrt: {}",
            tensorrt_unavailable_reason()
        )),
        BackendChoice::Auto => {
            // Once per process: a program that opens many runtimes is told once.
            static SKIPPED: std::sync::Once = std::sync::Once::new();
            SKIPPED.call_once(|| {
                log::info!(
                    "backend: tensorrt skipped ({}); using tract",
                    tensorrt_unavailable_reason()
                );
            });
            Ok(Box::new(tract::TractBackend::load(bundle, threads)?))
        }
        BackendChoice::Tract => Ok(Box::new(tract::TractBackend::load(bundle, threads)?)),
    }
}
