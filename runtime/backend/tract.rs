//! The tract backend: the ONNX graph is loaded once, its inputs checked against the
//! manifest, optimised into a plan, and run many times on the CPU.

use super::{Backend, Graph};
use crate::{err, Result};
use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// A model optimised and ready to run on the CPU with tract.
pub struct TractBackend {
    state: TypedSimpleState,
    input_shapes: Vec<Vec<usize>>,
    output: usize,
    /// tract's matrix-product executor: single-threaded, or a private pool.
    executor: Executor,
}

impl std::fmt::Debug for TractBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractBackend")
            .field("inputs", &self.input_shapes)
            .finish()
    }
}

impl TractBackend {
    /// Loads, checks and optimises a graph. An input whose declared ONNX shape
    /// disagrees with the manifest is refused, naming the input and both shapes.
    /// `threads` > 1 gives the matrix products a private pool of that many threads.
    ///
    /// # Errors
    /// [`Backend`](crate::ErrorKind::Backend), naming the file, when the ONNX cannot be
    /// read, its inputs or output disagree with `graph`, or tract cannot optimise or plan
    /// it (the tract error is the source).
    pub fn load(graph: &Graph, threads: usize) -> Result<TractBackend> {
        let path = &graph.path;
        let fail = |what: &str, e: TractError| {
            err!(Backend, "{}: {what}", path.display()).caused_by_boxed(e.into())
        };
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| fail("cannot read ONNX model", e))?;
        let inputs = &graph.inputs;
        let onnx_inputs = model.input_outlets().map_err(|e| fail("inputs", e))?.len();
        if onnx_inputs != inputs.len() {
            return Err(err!(
                Model,
                "{}: the graph has {onnx_inputs} inputs, the manifest declares {}",
                path.display(),
                inputs.len()
            ));
        }
        for (ix, spec) in inputs.iter().enumerate() {
            let node = model.input_outlets().map_err(|e| fail("inputs", e))?[ix].node;
            let onnx_name = model.node(node).name.clone();
            if onnx_name != spec.name {
                return Err(err!(
                    Model,
                    "{}: input {ix} is named `{onnx_name}` in the graph but `{}` in the manifest",
                    path.display(),
                    spec.name
                ));
            }
            let fact = model.input_fact(ix).map_err(|e| fail("input fact", e))?;
            if let Some(dims) = fact.shape.concretize() {
                let declared: Vec<Option<i64>> = dims.iter().map(|d| d.to_i64().ok()).collect();
                let matches = declared.len() == spec.dims.len()
                    && declared
                        .iter()
                        .zip(&spec.dims)
                        .all(|(d, m)| d.is_none_or(|d| d == *m as i64));
                if !matches {
                    let shown: Vec<String> = declared
                        .iter()
                        .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
                        .collect();
                    return Err(err!(
                        Model,
                        "{}: input `{}` has shape [{}] in the graph but {:?} in the manifest",
                        path.display(),
                        spec.name,
                        shown.join(", "),
                        spec.dims
                    ));
                }
            }
            model = model
                .with_input_fact(ix, f32::fact(&spec.dims).into())
                .map_err(|e| fail("setting input shape", e))?;
        }
        let typed = model
            .into_optimized()
            .map_err(|e| fail("cannot optimise (shapes or unsupported operator)", e))?;
        let out_fact = typed.output_fact(0).map_err(|e| fail("output", e))?;
        let out_shape: Option<Vec<usize>> = out_fact.shape.as_concrete().map(|s| s.to_vec());
        if out_shape.as_deref() != Some(&graph.output.dims[..]) {
            return Err(err!(
                Model,
                "{}: output has shape {:?} in the graph but {:?} in the manifest",
                path.display(),
                out_shape,
                graph.output.dims
            ));
        }
        let plan = TypedSimplePlan::new(typed).map_err(|e| fail("cannot plan", e))?;
        let state = TypedSimpleState::new(&plan).map_err(|e| fail("cannot make state", e))?;
        Ok(TractBackend {
            state,
            input_shapes: inputs.iter().map(|i| i.dims.clone()).collect(),
            output: 0,
            executor: if threads > 1 {
                Executor::multithread_with_name(threads.min(64), "avaction-tract")
            } else {
                Executor::SingleThread
            },
        })
    }
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn run(&mut self, inputs: &[super::Tensor]) -> Result<super::Tensor> {
        if inputs.len() != self.input_shapes.len() {
            return Err(err!(
                Backend,
                "tract: {} inputs given, model takes {}",
                inputs.len(),
                self.input_shapes.len()
            ));
        }
        let mut values: TVec<TValue> = tvec![];
        for (t, shape) in inputs.iter().zip(&self.input_shapes) {
            if &t.shape != shape || t.data.len() != shape.iter().product::<usize>() {
                return Err(err!(
                    Backend,
                    "tract: input of shape {:?} given, model takes {:?}",
                    t.shape,
                    shape
                ));
            }
            let tensor = tract_ndarray::ArrayD::from_shape_vec(t.shape.clone(), t.data.clone())
                .map_err(|e| err!(Backend, "tract: input tensor").caused_by(e))?;
            values.push(Tensor::from(tensor).into());
        }
        let (state, executor) = (&mut self.state, self.executor.clone());
        let out = multithread_tract_scope(executor, || state.run(values))
            .map_err(|e| err!(Backend, "tract: inference failed").caused_by_boxed(e.into()))?;
        let out = out
            .get(self.output)
            .ok_or_else(|| err!(Backend, "tract: model produced no output"))?;
        let view = out
            .to_plain_array_view::<f32>()
            .map_err(|e| err!(Backend, "tract: output is not float32").caused_by_boxed(e.into()))?;
        Ok(super::Tensor {
            shape: view.shape().to_vec(),
            data: view.iter().copied().collect(),
        })
    }
}
