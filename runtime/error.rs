//! The crate's one error type: a kind to match on and a message that names what was
//! wrong and where (file, key, device, input).

use std::fmt;

/// What went wrong, coarsely; the message says the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file or directory could not be read or written.
    Io,
    /// A model bundle (manifest, ONNX, labels) is invalid or does not match itself.
    Model,
    /// A configuration value (CLI, builder, target profile) is invalid.
    Config,
    /// A video source (camera, file, URI) failed: missing plugin, unreadable media, unplugged.
    Video,
    /// An audio source (microphone, audio track) failed or is absent.
    Audio,
    /// The inference backend failed to load or run a model.
    Backend,
    /// A backend is not available on this build or machine.
    Unavailable,
    /// The runtime stopped or a worker thread died.
    Stopped,
}

/// The error type of every fallible function in this crate.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// Shorthand for `std::result::Result<T, avaction::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Makes an error of `kind` with a message naming what was wrong and where.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with context (e.g. the file being read).
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub(crate) fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, format!("{}: {err}", path.display()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Io => "i/o error",
            ErrorKind::Model => "model error",
            ErrorKind::Config => "configuration error",
            ErrorKind::Video => "video error",
            ErrorKind::Audio => "audio error",
            ErrorKind::Backend => "backend error",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Stopped => "runtime stopped",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for Error {}

/// Builds an [`Error`] with `format!` arguments: `err!(Model, "{path}: bad key")`.
#[macro_export]
#[doc(hidden)]
macro_rules! err {
    ($kind:ident, $($arg:tt)*) => {
        $crate::Error::new($crate::ErrorKind::$kind, format!($($arg)*))
    };
}
