//! Open-vocabulary labels: sentences to all-MiniLM-L6-v2 embeddings (384-d, unit norm), the
//! text space the open-vocabulary models score their window embeddings against.
//!
//! [`TextEncoder`] reads a folder written by `scripts/setup-minilm.sh`
//! (`models/train/avaction_train/export_minilm.py`): `model.onnx` (BERT encoder, mean pooling and L2
//! normalisation in one graph, input `input_ids` int64 `[1, L]`, output `embedding`
//! `[1, 384]`) and `tokenizer.json` (the model's WordPiece tokenizer, run in pure Rust by the
//! `tokenizers` crate). Each sentence is tokenised to `[CLS] ... [SEP]`, truncated to
//! [`MAX_TOKENS`] like sentence-transformers, and run by tract alone with no padding; the
//! results match sentence-transformers within ~1e-6 (`tests/text_encoder.rs`).
//!
//! ```
//! use avaction::text::TextEncoder;
//!
//! // AVACTION_MINILM, then `<bundle>/../minilm`, then `models/minilm` (made by `make minilm`).
//! let Some(dir) = TextEncoder::locate(None) else {
//!     println!("no models/minilm: run scripts/setup-minilm.sh");
//!     return Ok(());
//! };
//! let mut encoder = TextEncoder::load(&dir)?;
//! let labels = ["a disc falls with a click", "a disc drops with a click", "nothing happens"];
//! let e = encoder.embed_all(&labels)?;
//! let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
//! assert_eq!(e[0].len(), avaction::text::DIM);
//! assert!(cos(&e[0], &e[1]) > cos(&e[0], &e[2]));
//! # Ok::<(), avaction::Error>(())
//! ```

use crate::{err, Error, Result};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

/// Size of a sentence embedding.
pub const DIM: usize = 384;

/// Longest token sequence the encoder sees, `[CLS]` and `[SEP]` included: longer sentences
/// are cut to their first 254 word pieces. 256 is sentence-transformers' `max_seq_length`
/// for all-MiniLM-L6-v2 (it was trained on at most 128; the position table has 512).
pub const MAX_TOKENS: usize = 256;

/// Environment variable naming a model folder; [`TextEncoder::locate`] tries it first.
pub const ENV_DIR: &str = "AVACTION_MINILM";

/// The folder under the current directory that `scripts/setup-minilm.sh` writes.
pub const DEFAULT_DIR: &str = "models/minilm";

/// all-MiniLM-L6-v2 run by tract on the CPU, one sentence at a time, on the calling thread.
///
/// The graph is optimised once with a symbolic sequence length, so sentences of any length
/// share one plan. Measured on a 2-core x86-64 (one thread): ~4 ms for a label of 8-15
/// tokens, ~60 ms for 256 tokens, 0.25 s to load. A plan optimised per concrete length ran
/// no faster (3.8-7.7 ms against 2.9-9.2 ms for 4-37 tokens, within noise) and costs
/// ~120 ms of optimisation for every new length, so the symbolic plan is kept.
pub struct TextEncoder {
    dir: PathBuf,
    tokenizer: tokenizers::Tokenizer,
    state: TypedSimpleState,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("dir", &self.dir)
            .finish()
    }
}

impl TextEncoder {
    /// Finds a model folder: the `AVACTION_MINILM` environment variable when set (returned
    /// even if the folder is missing, so that [`TextEncoder::load`] names it in its error),
    /// else `<bundle_dir>/../minilm` (next to the model bundle, e.g. `models/minilm` beside
    /// `models/cavnet-small`), else `models/minilm` under the current directory; the last two
    /// only when they hold a `model.onnx`. `None` when nothing is found.
    pub fn locate(bundle_dir: Option<&Path>) -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os(ENV_DIR).filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir));
        }
        let beside = bundle_dir.map(|b| b.join("..").join("minilm"));
        beside
            .into_iter()
            .chain(std::iter::once(PathBuf::from(DEFAULT_DIR)))
            .find(|d| d.join("model.onnx").is_file())
    }

    /// Loads `dir/model.onnx` and `dir/tokenizer.json`. The tokenizer's own padding is turned
    /// off and its truncation set to [`MAX_TOKENS`]; the graph is checked (one int64 input
    /// `[1, L]`, a `[1, 384]` output) and optimised by tract with `L` symbolic.
    ///
    /// # Errors
    /// Naming the file: the folder or a file is missing or unreadable ([`Io`]), the
    /// tokenizer or the graph is invalid or not this model's shape ([`Model`]).
    ///
    /// [`Io`]: crate::ErrorKind::Io
    /// [`Model`]: crate::ErrorKind::Model
    pub fn load(dir: &Path) -> Result<TextEncoder> {
        if !dir.is_dir() {
            return Err(err!(
                Io,
                "{}: sentence encoder folder not found (run scripts/setup-minilm.sh, or set {ENV_DIR})",
                dir.display()
            ));
        }
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"))?;
        let state = load_graph(&dir.join("model.onnx"))?;
        Ok(TextEncoder {
            dir: dir.to_path_buf(),
            tokenizer,
            state,
        })
    }

    /// The folder the encoder was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The WordPiece ids the encoder runs on for `sentence`: `[CLS]` (101), the lower-cased,
    /// accent-stripped word pieces, `[SEP]` (102), at most [`MAX_TOKENS`] in all.
    ///
    /// # Errors
    /// [`Model`](crate::ErrorKind::Model) when the tokenizer refuses the text (the
    /// tokenizer error is the source).
    pub fn tokenize(&self, sentence: &str) -> Result<Vec<u32>> {
        let encoding = self.tokenizer.encode(sentence, true).map_err(|e| {
            err!(
                Model,
                "{}: cannot tokenise {sentence:?}",
                self.dir.join("tokenizer.json").display()
            )
            .caused_by_boxed(e)
        })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The embedding of one sentence: 384 values, unit L2 norm (mean of the token outputs,
    /// normalised). Any string is accepted; an empty one is embedded as `[CLS] [SEP]`.
    ///
    /// # Errors
    /// As [`TextEncoder::tokenize`]; [`Backend`](crate::ErrorKind::Backend) when inference
    /// fails or gives an output of the wrong shape (the tract error is the source).
    pub fn embed(&mut self, sentence: &str) -> Result<Vec<f32>> {
        let ids: Vec<i64> = self
            .tokenize(sentence)?
            .into_iter()
            .map(i64::from)
            .collect();
        let len = ids.len();
        let input = tract_ndarray::Array2::from_shape_vec((1, len), ids)
            .map_err(|e| err!(Backend, "sentence encoder").caused_by_boxed(e.into()))?;
        let out = self
            .state
            .run(tvec![Tensor::from(input).into()])
            .map_err(|e| {
                err!(
                    Backend,
                    "{}: inference failed on {len} tokens",
                    self.dir.join("model.onnx").display()
                )
                .caused_by_boxed(e.into())
            })?;
        let view = out
            .first()
            .ok_or_else(|| err!(Backend, "sentence encoder: no output"))?
            .to_plain_array_view::<f32>()
            .map_err(|e| {
                err!(Backend, "sentence encoder: output is not float32").caused_by_boxed(e.into())
            })?;
        if view.len() != DIM {
            return Err(err!(
                Backend,
                "sentence encoder: output has {} values, expected {DIM}",
                view.len()
            ));
        }
        Ok(view.iter().copied().collect())
    }

    /// [`TextEncoder::embed`] of each sentence, in order.
    ///
    /// # Errors
    /// The first error of [`TextEncoder::embed`].
    pub fn embed_all<S: AsRef<str>>(&mut self, sentences: &[S]) -> Result<Vec<Vec<f32>>> {
        sentences.iter().map(|s| self.embed(s.as_ref())).collect()
    }
}

/// Embeds label sentences for the bundle in `bundle_dir` with the text model
/// [`TextEncoder::locate`] finds; fails, naming the sentences and how to set the model
/// up, where there is none.
///
/// # Errors
/// [`Config`](crate::ErrorKind::Config) when no text model is set up (the message says how
/// to set it up); otherwise as [`TextEncoder::load`] and [`TextEncoder::embed`].
pub fn embed_for_bundle(bundle_dir: &Path, sentences: &[String]) -> Result<Vec<Vec<f32>>> {
    let Some(dir) = TextEncoder::locate(Some(bundle_dir)) else {
        return Err(err!(
            Config,
            "{} label sentence(s) have no precomputed embedding in {} ({:?}...) and the text \
             model all-MiniLM-L6-v2 is not set up: run scripts/setup-minilm.sh (or set {ENV_DIR})",
            sentences.len(),
            bundle_dir.display(),
            sentences.first().map(String::as_str).unwrap_or("")
        ));
    };
    let t0 = std::time::Instant::now();
    let mut encoder = TextEncoder::load(&dir)?;
    let out = encoder.embed_all(sentences)?;
    log::info!(
        "text: embedded {} sentence(s) with {} in {:.0} ms",
        sentences.len(),
        dir.display(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(out)
}

fn load_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut tokenizer = tokenizers::Tokenizer::from_bytes(&bytes)
        .map_err(|e| err!(Model, "{}: not a valid tokenizer", path.display()).caused_by_boxed(e))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: MAX_TOKENS,
            ..Default::default()
        }))
        .map_err(|e| err!(Model, "{}: truncation", path.display()).caused_by_boxed(e))?;
    Ok(tokenizer)
}

fn load_graph(path: &Path) -> Result<TypedSimpleState> {
    if !path.is_file() {
        return Err(err!(Io, "{}: not found", path.display()));
    }
    let fail = |what: &str, e: TractError| {
        err!(Model, "{}: {what}", path.display()).caused_by_boxed(e.into())
    };
    let mut model = tract_onnx::onnx()
        .model_for_path(path)
        .map_err(|e| fail("cannot read ONNX model", e))?;
    let inputs = model.input_outlets().map_err(|e| fail("inputs", e))?.len();
    let outputs = model
        .output_outlets()
        .map_err(|e| fail("outputs", e))?
        .len();
    if inputs != 1 || outputs != 1 {
        return Err(err!(
            Model,
            "{}: the graph has {inputs} inputs and {outputs} outputs, the sentence encoder takes \
             `input_ids` and gives `embedding`",
            path.display()
        ));
    }
    let len = model.sym("L");
    model = model
        .with_input_fact(0, i64::fact([1.to_dim(), len.into()]).into())
        .map_err(|e| fail("setting input shape", e))?;
    let typed = model
        .into_optimized()
        .map_err(|e| fail("cannot optimise (shapes or unsupported operator)", e))?;
    let out_fact = typed.output_fact(0).map_err(|e| fail("output", e))?;
    let out_shape: Option<Vec<usize>> = out_fact.shape.as_concrete().map(|s| s.to_vec());
    if out_shape.as_deref() != Some(&[1, DIM][..]) || out_fact.datum_type != f32::datum_type() {
        return Err(err!(
            Model,
            "{}: output is {:?} of shape {:?}, expected f32 [1, {DIM}]",
            path.display(),
            out_fact.datum_type,
            out_fact.shape
        ));
    }
    let plan = TypedSimplePlan::new(typed).map_err(|e| fail("cannot plan", e))?;
    TypedSimpleState::new(&plan).map_err(|e| fail("cannot make state", e))
}
