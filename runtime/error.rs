//! The crate's one error type: a kind that tells the caller what it can do, a message
//! that names what was wrong and where (file, key, device, input), and the underlying
//! error (the `io::Error`, the tract or GStreamer error) kept as its
//! [`source`](std::error::Error::source).

use std::fmt;
use std::sync::Arc;

/// What went wrong, and so what the caller can do about it; the message says the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file or folder could not be read or written (missing, no permission, disk
    /// full). Fix the path or the permissions, free space, then try again.
    Io,
    /// A model bundle (manifest, ONNX, labels, embeddings) is invalid or does not match
    /// itself. Fix the bundle (or ask whoever made it): trying again will not help.
    Model,
    /// A value given by the caller (CLI option, builder setting, target profile) is
    /// invalid. Fix the value: the message names it and the accepted range.
    Config,
    /// A video source (camera, file, URI) failed: unreadable media, no video stream, an
    /// unplugged camera, a dropped stream. A live source may come back: opening it again
    /// later can succeed; a file will not change by itself.
    Video,
    /// An audio source (microphone, audio track) failed or is absent. As for video: a
    /// microphone may come back, so opening it again later can succeed.
    Audio,
    /// The inference backend failed to load or run a graph (an operator it lacks, a
    /// shape it refuses, a failed engine). Usually the bundle's graph or the backend
    /// choice must change; try `tract`, the reference backend.
    Backend,
    /// Something this build or machine lacks: a backend not built in or without its
    /// library or GPU, a GStreamer plugin, the on-device text model. Install it (the
    /// message says what and how) or choose another option.
    Unavailable,
    /// The runtime stopped, or a worker thread died. Start a new runtime; if a worker
    /// died, the message names it (that is a bug: please report it).
    Stopped,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::Io => "i/o error",
            ErrorKind::Model => "model error",
            ErrorKind::Config => "configuration error",
            ErrorKind::Video => "video error",
            ErrorKind::Audio => "audio error",
            ErrorKind::Backend => "backend error",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Stopped => "runtime stopped",
        }
    }
}

/// The error type of every fallible function in this crate.
///
/// `Display` shows the kind, the message and the text of each cause in the chain;
/// [`source`] gives the cause itself, e.g. the [`std::io::Error`] of a file that could not be read.
///
/// [`source`]: std::error::Error::source
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Shorthand for `std::result::Result<T, avaction::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Makes an error of `kind` with a message naming what was wrong and where.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same error with `source` as its cause: its text is shown after the message,
    /// and [`source`](std::error::Error::source) returns it.
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Like [`caused_by`](Self::caused_by) for a boxed cause (e.g. an `anyhow` error
    /// of tract, converted with `.into()`).
    pub(crate) fn caused_by_boxed(
        mut self,
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    ) -> Self {
        self.source = Some(Arc::from(source));
        self
    }

    /// The kind of failure, which says what the caller can do.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind and without the cause's text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with context (e.g. the file being read).
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// An i/o error on `path`, keeping `err` as the cause.
    pub(crate) fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, path.display().to_string()).caused_by(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.describe(), self.message)?;
        // the whole chain of causes, as `anyhow`'s `{:#}` shows it
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            write!(f, ": {}", e.to_string().trim_end())?;
            cause = e.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Builds an [`Error`] with `format!` arguments: `err!(Model, "{path}: bad key")`.
macro_rules! err {
    ($kind:ident, $($arg:tt)*) => {
        $crate::Error::new($crate::ErrorKind::$kind, format!($($arg)*))
    };
}
pub(crate) use err;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn io_errors_keep_their_cause_and_read_as_before() {
        let cause = std::io::Error::new(std::io::ErrorKind::NotFound, "not there");
        let e = Error::io(std::path::Path::new("a/b.toml"), cause).context("bundle x");
        assert_eq!(e.to_string(), "i/o error: bundle x: a/b.toml: not there");
        let source = e.source().expect("a source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("the io::Error itself");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(e.message(), "bundle x: a/b.toml");
    }

    #[test]
    fn errors_without_a_cause_have_no_source() {
        let e = err!(Config, "--hop {}: must be at least 1", 0);
        assert!(e.source().is_none());
        assert_eq!(
            e.to_string(),
            "configuration error: --hop 0: must be at least 1"
        );
    }
}
