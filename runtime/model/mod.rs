//! Model bundles: a folder with `model.toml` (the manifest), the ONNX graph and the
//! labels. [`Bundle::load`] reads and checks everything a runtime needs before any
//! capture starts; every error names the file, the key and what was expected.

mod manifest;

pub use manifest::{
    DecoderConfig, DecoderKind, FlowEncodingName, FlowInput, Frontend, InputSpec, LogMelInput,
    Manifest, OutputSpec, WindowSpec,
};

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
    /// Class labels, index order of the model output.
    pub labels: Vec<String>,
}

impl Bundle {
    /// Loads `dir/model.toml`, validates it and reads the labels. The ONNX file must
    /// exist; it is parsed by the backend.
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
        let text = std::fs::read_to_string(&labels_path).map_err(|e| Error::io(&labels_path, e))?;
        let labels: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let classes = manifest.output.shape.last().copied().unwrap_or(0);
        if labels.len() != classes {
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
        })
    }
}
