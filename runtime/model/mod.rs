//! Model bundles: a folder with `model.toml` (the manifest), the ONNX graph and the
//! labels. [`Bundle::load`] reads and checks everything a runtime needs before any
//! capture starts; every error names the file, the key and what was expected.

pub mod files;
pub mod limits;
mod manifest;
pub mod search;

pub use files::FileKind;
pub use limits::Limits;
pub use search::locate;

pub use manifest::{
    AudioSpec, BranchSpec, DecoderConfig, DecoderKind, Downmix, EncoderSpec, FlowEncodingName,
    FlowInput, Frontend, InputSpec, Layout, LogMelInput, Manifest, OutputSpec, StagesSpec,
    VocabularySpec, WindowSpec,
};

use crate::backend::{Graph, TensorShape};
use crate::{err, Error, Result};
use std::path::{Path, PathBuf};

/// A loaded model bundle: manifest, resolved file paths and labels.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle folder.
    pub dir: PathBuf,
    /// The parsed, validated manifest.
    pub manifest: Manifest,
    /// The ONNX graph's path.
    pub graph: PathBuf,
    /// Class labels, index order of the model output (sentences for an
    /// open-vocabulary model).
    pub labels: Vec<String>,
    /// Open-vocabulary models: the precomputed sentence embeddings.
    pub vocabulary: Option<Vocabulary>,
}

/// Precomputed sentence embeddings of an open-vocabulary bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    /// The sentences, in file order.
    pub sentences: Vec<String>,
    /// `sentences.len() * dim` values, one row per sentence.
    pub embeddings: Vec<f32>,
    /// Values per embedding.
    pub dim: usize,
}

impl Vocabulary {
    /// The precomputed embedding of `sentence`, if the bundle has it.
    pub fn embedding(&self, sentence: &str) -> Option<&[f32]> {
        let i = self.sentences.iter().position(|s| s == sentence)?;
        Some(&self.embeddings[i * self.dim..(i + 1) * self.dim])
    }
}

/// One encoder of a staged bundle, with its graph.
#[derive(Debug, Clone)]
pub struct EncoderGraph {
    /// The manifest input it encodes.
    pub input: InputSpec,
    /// What it runs on: one frame, flow field or log-mel segment.
    pub graph: Graph,
    /// Tokens per window.
    pub tokens: usize,
    /// Values per token.
    pub dim: usize,
    /// Log-mel frames per token (1 for frames and flow).
    pub segment: usize,
}

/// The graphs of a staged bundle: encoders in manifest order, then the head.
#[derive(Debug, Clone)]
pub struct StagedGraphs {
    /// The encoders, in `[[stages.encoders]]` order.
    pub encoders: Vec<EncoderGraph>,
    /// The head: one `[1, tokens, dim]` input per encoder and the raw inputs, in
    /// [`head_slots`](Self::head_slots) order; the model output.
    pub head: Graph,
    /// What fills each head input, in the head graph's order.
    pub head_slots: Vec<HeadSlot>,
}

/// What fills one input of a staged bundle's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadSlot {
    /// The tokens of encoder `n` (`[[stages.encoders]]` order).
    Tokens(usize),
    /// Model input `k` (`[[inputs]]` order), whole (a version 2 raw head input).
    Raw(usize),
}

impl Bundle {
    /// Loads `dir/model.toml`, validates it and reads the labels, under the default
    /// [`Limits`]. The ONNX files must exist; they are parsed by the backend.
    ///
    /// # Errors
    /// As [`Bundle::load_with`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Bundle> {
        Bundle::load_with(dir, &Limits::DEFAULT)
    }

    /// [`Bundle::load`] under `limits`. The bundle is untrusted input: every file the
    /// manifest names must resolve (symlinks followed) inside `dir` to a regular file
    /// within its size cap, and is read bounded (see [`files`]); an ONNX graph keeping
    /// tensors in external files is refused.
    ///
    /// # Errors
    /// [`Model`](crate::ErrorKind::Model) when the folder, `model.toml` or a graph it names
    /// is missing, when the manifest is invalid (unknown key, inconsistent shapes, a value
    /// out of range), when a path leaves the bundle or names something other than a
    /// regular file, when a file is over its cap, or when labels, sentences or embeddings
    /// disagree with the output; [`Io`](crate::ErrorKind::Io) when a file cannot be read.
    /// The message names the file and the key.
    pub fn load_with(dir: impl AsRef<Path>, limits: &Limits) -> Result<Bundle> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(err!(
                Model,
                "{}: model bundle folder not found (expected a folder with model.toml)",
                dir.display()
            ));
        }
        let root = dir.canonicalize().map_err(|e| Error::io(&dir, e))?;
        let manifest_path = dir.join("model.toml");
        let origin = manifest_path.display().to_string();
        let bundle_file = |key: &str, rel: &str, kind: FileKind| {
            files::resolve(&root, &dir, &origin, key, rel, kind, limits)
        };
        let manifest = {
            let path = bundle_file("model.toml", "model.toml", FileKind::Manifest)
                .map_err(|e| e.context(format_args!("bundle {}", dir.display())))?;
            let bytes = files::read_bounded(&path, FileKind::Manifest, limits)?;
            let text =
                std::str::from_utf8(&bytes).map_err(|_| err!(Model, "{origin}: not UTF-8 text"))?;
            Manifest::parse_with(text, limits).map_err(|e| e.context(&origin))?
        };
        let mut graphs = vec![("graph", manifest.graph.as_str())];
        if let Some(stages) = &manifest.stages {
            graphs.extend(
                stages
                    .encoders
                    .iter()
                    .map(|e| ("stages.encoders.graph", e.graph.as_str())),
            );
            graphs.push(("stages.head", stages.head.as_str()));
        }
        let mut graph = PathBuf::new();
        for (key, file) in graphs {
            let path = bundle_file(key, file, FileKind::Graph)?;
            let bytes = files::read_bounded(&path, FileKind::Graph, limits)?;
            files::refuse_external_data(&bytes, &path.display().to_string())
                .map_err(|e| e.context(format_args!("{origin}: key `{key}`")))?;
            if key == "graph" {
                graph = path;
            }
        }
        let labels_path = bundle_file("labels", &manifest.labels, FileKind::Text)?;
        let in_key = |key: &'static str| {
            let origin = &origin;
            move |e: Error| e.context(format_args!("{origin}: key `{key}`"))
        };
        let labels = read_lines(&labels_path, limits).map_err(in_key("labels"))?;
        let vocabulary = match &manifest.vocabulary {
            Some(v) => {
                let dim = VocabularySpec::dim(&manifest.output);
                let sentences_path =
                    bundle_file("vocabulary.sentences", &v.sentences, FileKind::Text)?;
                let sentences =
                    read_lines(&sentences_path, limits).map_err(in_key("vocabulary.sentences"))?;
                let path =
                    bundle_file("vocabulary.embeddings", &v.embeddings, FileKind::Embeddings)?;
                let expected = sentences.len().checked_mul(dim);
                let embeddings = files::read_bounded(&path, FileKind::Embeddings, limits)
                    .and_then(|bytes| files::parse_f32(&bytes, &path.display().to_string()))
                    .map_err(in_key("vocabulary.embeddings"))?;
                if Some(embeddings.len()) != expected {
                    return Err(err!(
                        Model,
                        "{}: {} values, expected {} sentences x {dim} (the output's last dimension)",
                        path.display(),
                        embeddings.len(),
                        sentences.len()
                    ));
                }
                let vocabulary = Vocabulary {
                    sentences,
                    embeddings,
                    dim,
                };
                if let Some(l) = labels.iter().find(|l| vocabulary.embedding(l).is_none()) {
                    return Err(err!(
                        Model,
                        "{}: label {l:?} has no precomputed embedding in {}",
                        labels_path.display(),
                        v.sentences
                    ));
                }
                Some(vocabulary)
            }
            None => None,
        };
        if labels.is_empty() {
            return Err(err!(Model, "{}: no labels", labels_path.display()));
        }
        let classes = manifest.output.shape.last().copied().unwrap_or(0);
        if vocabulary.is_none() && labels.len() != classes {
            return Err(err!(
                Model,
                "{}: {} labels, but output `{}` has {} classes (shape {:?})",
                labels_path.display(),
                labels.len(),
                manifest.output.name,
                classes,
                manifest.output.shape
            ));
        }
        if let Some(bg) = &manifest.decoder.background {
            if !labels.iter().any(|l| l == bg) {
                return Err(err!(
                    Model,
                    "{}: decoder.background = {bg:?} is not one of the labels in {}",
                    manifest_path.display(),
                    labels_path.display()
                ));
            }
        }
        Ok(Bundle {
            dir,
            manifest,
            graph,
            labels,
            vocabulary,
        })
    }

    /// The single graph: every input of a window, the model output.
    pub fn graph(&self) -> Graph {
        let m = &self.manifest;
        Graph {
            path: self.graph.clone(),
            inputs: m
                .inputs
                .iter()
                .map(|i| TensorShape {
                    name: i.name.clone(),
                    dims: i.shape.clone(),
                })
                .collect(),
            output: TensorShape {
                name: m.output.name.clone(),
                dims: m.output.shape.clone(),
            },
        }
    }

    /// The stage graphs, for a bundle with `[stages]`.
    pub fn staged(&self) -> Option<StagedGraphs> {
        let m = &self.manifest;
        let stages = m.stages.as_ref()?;
        let mut encoders = Vec::new();
        for e in &stages.encoders {
            let input = m.inputs.iter().find(|i| i.name == e.input)?.clone();
            let segment = e.segment.unwrap_or(1);
            let default_name = match input.frontend {
                Frontend::Logmel => "logmel",
                _ => "image",
            };
            let tokens = stages.tokens_per_window(m, e);
            encoders.push(EncoderGraph {
                graph: Graph {
                    path: self.dir.join(&e.graph),
                    inputs: vec![TensorShape {
                        name: e.graph_input.as_deref().unwrap_or(default_name).into(),
                        dims: input.item_shape(segment),
                    }],
                    output: TensorShape {
                        name: e.graph_output.as_deref().unwrap_or("token").into(),
                        dims: vec![1, e.dim],
                    },
                },
                input,
                tokens,
                dim: e.dim,
                segment,
            });
        }
        let mut head_inputs = Vec::new();
        let mut head_slots = Vec::new();
        for name in stages.head_order(m) {
            if let Some(n) = stages.encoders.iter().position(|e| e.tokens == name) {
                head_inputs.push(TensorShape {
                    name,
                    dims: vec![1, encoders[n].tokens, encoders[n].dim],
                });
                head_slots.push(HeadSlot::Tokens(n));
            } else {
                let k = m.inputs.iter().position(|i| i.name == name)?;
                head_inputs.push(TensorShape {
                    name,
                    dims: m.inputs[k].shape.clone(),
                });
                head_slots.push(HeadSlot::Raw(k));
            }
        }
        let head = Graph {
            path: self.dir.join(&stages.head),
            inputs: head_inputs,
            output: self.graph().output,
        };
        Some(StagedGraphs {
            encoders,
            head,
            head_slots,
        })
    }

    /// The graphs the runtime runs: each stage of a staged bundle (encoders, then the
    /// head), else the single graph.
    pub fn runtime_graphs(&self) -> Vec<Graph> {
        match self.staged() {
            Some(s) => s
                .encoders
                .into_iter()
                .map(|e| e.graph)
                .chain([s.head])
                .collect(),
            None => vec![self.graph()],
        }
    }
}

/// The non-empty lines of a labels or sentences file, trimmed (see
/// [`files::parse_lines`]).
fn read_lines(path: &Path, limits: &Limits) -> Result<Vec<String>> {
    let bytes = files::read_bounded(path, FileKind::Text, limits)?;
    files::parse_lines(&bytes, &path.display().to_string(), limits.labels)
}
