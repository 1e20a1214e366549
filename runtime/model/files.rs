//! Reading the files of a bundle, which is untrusted input. A path from a manifest must
//! be relative, without `..`, and resolve (symlinks followed) inside the bundle folder to
//! a regular file no larger than its kind's cap ([`Limits`]); the cap is checked from the
//! metadata before reading, the file is opened without blocking (a FIFO swapped in
//! after the check does not hang the open) and checked again once open, and the read
//! stops one byte past the cap in case the file grows. Errors name the manifest, the key
//! and the rule, never the file's content.

use super::limits::Limits;
use crate::{err, Error, Result};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// What a file of a bundle holds, which sets its size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `model.toml` ([`Limits::manifest_bytes`]).
    Manifest,
    /// Labels or sentences, one per line ([`Limits::text_bytes`]).
    Text,
    /// Raw float32 embeddings ([`Limits::embeddings_bytes`]).
    Embeddings,
    /// An ONNX graph ([`Limits::graph_bytes`]).
    Graph,
}

impl FileKind {
    /// The size cap of this kind, in bytes.
    pub fn cap(self, limits: &Limits) -> u64 {
        match self {
            FileKind::Manifest => limits.manifest_bytes,
            FileKind::Text => limits.text_bytes,
            FileKind::Embeddings => limits.embeddings_bytes,
            FileKind::Graph => limits.graph_bytes,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            FileKind::Manifest => "a manifest",
            FileKind::Text => "a text file",
            FileKind::Embeddings => "an embeddings file",
            FileKind::Graph => "an ONNX graph",
        }
    }
}

/// Resolves `rel`, the value of `key` in the manifest `origin` of the bundle `dir`
/// (whose canonical path is `root`): it must be a relative path without `..` that
/// resolves inside `root` to a regular file within the cap of `kind`. Returns
/// `dir.join(rel)`. A missing file is an [`Io`](crate::ErrorKind::Io) error keeping the
/// `io::Error` (or, for a graph, a [`Model`](crate::ErrorKind::Model) error saying it
/// does not exist).
pub(crate) fn resolve(
    root: &Path,
    dir: &Path,
    origin: &str,
    key: &str,
    rel: &str,
    kind: FileKind,
    limits: &Limits,
) -> Result<PathBuf> {
    let refuse = |rule: &str| err!(Model, "{origin}: key `{key}` = {rel:?}: {rule}");
    let path = Path::new(rel);
    if rel.is_empty() {
        return Err(refuse("must name a file in the bundle folder"));
    }
    if path.is_absolute() || path.has_root() {
        return Err(refuse(
            "must be a path relative to the bundle folder (absolute paths are refused)",
        ));
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(refuse(
            "must stay inside the bundle folder (`..` is refused)",
        ));
    }
    let joined = dir.join(path);
    let canonical = match joined.canonicalize() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && kind == FileKind::Graph => {
            return Err(err!(
                Model,
                "{origin}: key `{key}` names {}, which does not exist",
                joined.display()
            ));
        }
        Err(e) => return Err(Error::io(&joined, e).context(format_args!("{origin}: key `{key}`"))),
    };
    if !canonical.starts_with(root) {
        return Err(refuse(
            "resolves (through a symlink) outside the bundle folder",
        ));
    }
    let meta = std::fs::metadata(&canonical).map_err(|e| Error::io(&joined, e))?;
    check_meta(&meta, kind, limits).map_err(|rule| refuse(&rule))?;
    Ok(joined)
}

/// Whether `meta` is a regular file within the cap of `kind`; else the rule it breaks.
fn check_meta(
    meta: &std::fs::Metadata,
    kind: FileKind,
    limits: &Limits,
) -> std::result::Result<(), String> {
    if !meta.is_file() {
        return Err(format!(
            "must be a regular file (not a folder, FIFO, socket or device) for {}",
            kind.describe()
        ));
    }
    let cap = kind.cap(limits);
    if meta.len() > cap {
        return Err(format!(
            "is {} bytes, over the {cap}-byte cap of {}",
            meta.len(),
            kind.describe()
        ));
    }
    Ok(())
}

/// Reads `path`, a regular file of at most `kind`'s cap: the metadata is checked before
/// reading and again on the open file, and at most cap + 1 bytes are read.
///
/// # Errors
/// [`Io`](crate::ErrorKind::Io) when the file cannot be opened or read (the `io::Error`
/// is the source); [`Model`](crate::ErrorKind::Model) when it is not a regular file or
/// is (or grows) over the cap.
pub fn read_bounded(path: &Path, kind: FileKind, limits: &Limits) -> Result<Vec<u8>> {
    let refuse = |rule: String| err!(Model, "{}: {rule}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    check_meta(&meta, kind, limits).map_err(refuse)?;
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            // O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer
            // (it changes nothing for a regular file)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Error::io(path, e))?
    };
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    check_meta(&meta, kind, limits).map_err(refuse)?;
    let cap = kind.cap(limits);
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(refuse(format!(
            "grew past the {cap}-byte cap of {} while being read",
            kind.describe()
        )));
    }
    Ok(bytes)
}

/// The non-empty lines of a labels or sentences file, trimmed: UTF-8, no control
/// characters (tabs aside), at most `max_lines`. `origin` names the file in errors.
///
/// # Errors
/// [`Model`](crate::ErrorKind::Model) naming the rule and the line number (never the
/// line): invalid UTF-8, a control character, too many lines.
pub fn parse_lines(bytes: &[u8], origin: &str, max_lines: usize) -> Result<Vec<String>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        err!(
            Model,
            "{origin}: not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(err!(
                Model,
                "{origin}: line {} holds a control character",
                n + 1
            ));
        }
        if lines.len() == max_lines {
            return Err(err!(Model, "{origin}: more than {max_lines} lines"));
        }
        lines.push(line.to_string());
    }
    Ok(lines)
}

/// The values of a raw little-endian float32 file: a whole number of values, each finite.
/// `origin` names the file in errors.
///
/// # Errors
/// [`Model`](crate::ErrorKind::Model): a length that is not a multiple of 4, or a NaN or
/// infinite value (its index is named).
pub fn parse_f32(bytes: &[u8], origin: &str) -> Result<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return Err(err!(
            Model,
            "{origin}: {} bytes is not a whole number of float32 values",
            bytes.len()
        ));
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(err!(Model, "{origin}: value {i} is not finite"));
    }
    Ok(values)
}

/// Refuses an ONNX graph that keeps tensors in external files: tract would read them from
/// paths the graph names, outside any check. `bytes` is the graph file, `origin` names it.
///
/// Bytes that are not an ONNX model pass: the backend that loads the graph says so, as a
/// [`Backend`](crate::ErrorKind::Backend) error keeping tract's.
///
/// # Errors
/// [`Model`](crate::ErrorKind::Model) when a tensor (initializer, constant, subgraph or
/// function) has external data; the message names the tensor.
pub fn refuse_external_data(bytes: &[u8], origin: &str) -> Result<()> {
    use tract_onnx::pb;
    use tract_onnx::prelude::Framework;
    let mut reader = bytes;
    let Ok(model) = tract_onnx::onnx().proto_model_for_read(&mut reader) else {
        return Ok(());
    };
    fn external(t: &pb::TensorProto) -> bool {
        t.data_location == Some(pb::tensor_proto::DataLocation::External as i32)
            || !t.external_data.is_empty()
    }
    fn in_nodes<'a>(nodes: &'a [pb::NodeProto], out: &mut Option<&'a str>) {
        for node in nodes {
            for a in &node.attribute {
                let tensors = a.t.iter().chain(&a.tensors).chain(
                    a.sparse_tensor
                        .iter()
                        .chain(&a.sparse_tensors)
                        .flat_map(|s| s.values.iter().chain(s.indices.iter())),
                );
                for t in tensors {
                    if out.is_none() && external(t) {
                        *out = Some(if t.name.is_empty() {
                            &node.name
                        } else {
                            &t.name
                        });
                    }
                }
                for g in a.g.iter().chain(&a.graphs) {
                    in_graph(g, out);
                }
            }
        }
    }
    fn in_graph<'a>(g: &'a pb::GraphProto, out: &mut Option<&'a str>) {
        let sparse = g
            .sparse_initializer
            .iter()
            .flat_map(|s| s.values.iter().chain(s.indices.iter()));
        for t in g.initializer.iter().chain(sparse) {
            if out.is_none() && external(t) {
                *out = Some(&t.name);
            }
        }
        in_nodes(&g.node, out);
    }
    let mut found = None;
    if let Some(g) = &model.graph {
        in_graph(g, &mut found);
    }
    for f in &model.functions {
        in_nodes(&f.node, &mut found);
    }
    match found {
        Some(name) => Err(err!(
            Model,
            "{origin}: tensor {name:?} keeps its data in an external file; external data is \
             refused (embed the weights in the .onnx file)"
        )),
        None => Ok(()),
    }
}
