//! Model bundles: a folder with `model.toml` (the manifest), the ONNX graph and the
//! labels. [`Bundle::load`] reads and checks everything a runtime needs before any
//! capture starts; every error names the file, the key and what was expected.

mod manifest;

pub use manifest::{
    BranchSpec, DecoderConfig, DecoderKind, EncoderSpec, FlowEncodingName, FlowInput, Frontend,
    InputSpec, LogMelInput, Manifest, OutputSpec, StagesSpec, VocabularySpec, WindowSpec,
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
    /// One encoder per model input, in `[[stages.encoders]]` order (the head's input order).
    pub encoders: Vec<EncoderGraph>,
    /// The head: one `[1, tokens, dim]` input per encoder, the model output.
    pub head: Graph,
}

impl Bundle {
    /// Loads `dir/model.toml`, validates it and reads the labels. The ONNX file must
    /// exist; it is parsed by the backend.
    ///
    /// # Errors
    /// [`Model`](crate::ErrorKind::Model) when the folder, `model.toml` or a file it names
    /// is missing, when the manifest is invalid (unknown key, inconsistent shapes), or when
    /// labels, sentences or embeddings disagree with the output;
    /// [`Io`](crate::ErrorKind::Io) when a file cannot be read. The message names the file
    /// and the key.
    pub fn load(dir: impl AsRef<Path>) -> Result<Bundle> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(err!(
                Model,
                "{}: model bundle folder not found (expected a folder with model.toml)",
                dir.display()
            ));
        }
        let manifest_path = dir.join("model.toml");
        let manifest = Manifest::load(&manifest_path)?;
        let graph = dir.join(&manifest.graph);
        if !graph.is_file() {
            return Err(err!(
                Model,
                "{}: key `graph` names {}, which does not exist",
                manifest_path.display(),
                graph.display()
            ));
        }
        let labels_path = dir.join(&manifest.labels);
        let labels = read_lines(&labels_path)?;
        let vocabulary = match &manifest.vocabulary {
            Some(v) => {
                let dim = VocabularySpec::dim(&manifest.output);
                let sentences = read_lines(&dir.join(&v.sentences))?;
                let path = dir.join(&v.embeddings);
                let embeddings = read_f32(&path)?;
                if embeddings.len() != sentences.len() * dim {
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
        if let Some(stages) = &manifest.stages {
            let files = stages
                .encoders
                .iter()
                .map(|e| ("stages.encoders.graph", &e.graph))
                .chain([("stages.head", &stages.head)]);
            for (key, file) in files {
                if !dir.join(file).is_file() {
                    return Err(err!(
                        Model,
                        "{}: key `{key}` names {}, which does not exist",
                        manifest_path.display(),
                        dir.join(file).display()
                    ));
                }
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
        let mut head_inputs = Vec::new();
        for e in &stages.encoders {
            let input = m.inputs.iter().find(|i| i.name == e.input)?.clone();
            let segment = e.segment.unwrap_or(1);
            let (name, dims) = match input.frontend {
                Frontend::Logmel => ("logmel", vec![1, segment, input.shape[2]]),
                _ => (
                    "image",
                    vec![1, input.shape[2], input.shape[3], input.shape[4]],
                ),
            };
            let tokens = stages.tokens_per_window(m, e);
            head_inputs.push(TensorShape {
                name: e.tokens.clone(),
                dims: vec![1, tokens, e.dim],
            });
            encoders.push(EncoderGraph {
                graph: Graph {
                    path: self.dir.join(&e.graph),
                    inputs: vec![TensorShape {
                        name: name.into(),
                        dims,
                    }],
                    output: TensorShape {
                        name: "token".into(),
                        dims: vec![1, e.dim],
                    },
                },
                input,
                tokens,
                dim: e.dim,
                segment,
            });
        }
        let head = Graph {
            path: self.dir.join(&stages.head),
            inputs: head_inputs,
            output: self.graph().output,
        };
        Some(StagedGraphs { encoders, head })
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

/// Reads the non-empty lines of a text file, trimmed.
fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Reads a raw little-endian float32 file.
fn read_f32(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.len() % 4 != 0 {
        return Err(err!(
            Model,
            "{}: {} bytes is not a whole number of float32 values",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
