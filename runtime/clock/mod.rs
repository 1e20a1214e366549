//! Time at the bottom of the house: one timeline for every sensor, and the frame and
//! audio-chunk types stamped on it.
//!
//! Every frame and audio chunk carries a time in nanoseconds on the runtime's
//! timeline ([`Nanos`]): for live sources, nanoseconds since the runtime's origin on
//! the monotonic clock; for files processed offline, media running time.

/// Nanoseconds on the runtime's one timeline.
pub type Nanos = i64;

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: Nanos = 1_000_000_000;

/// A decoded RGB video frame (packed RGB, 3 bytes per pixel, no row padding).
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// Presentation time on the runtime timeline.
    pub t_ns: Nanos,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, row-major RGB.
    pub rgb: Vec<u8>,
}

/// A chunk of mono audio at the model's sample rate.
#[derive(Debug, Clone)]
pub struct AudioChunk {
    /// Time of the first sample on the runtime timeline.
    pub t_ns: Nanos,
    /// Sample rate in Hz.
    pub rate: u32,
    /// Mono samples in [-1, 1].
    pub samples: Vec<f32>,
}

/// The monotonic clock shared by all capture paths: an origin taken at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    origin: std::time::Instant,
}

impl Timeline {
    /// A timeline whose zero is now.
    pub fn start() -> Self {
        Timeline {
            origin: std::time::Instant::now(),
        }
    }

    /// Nanoseconds since the origin (monotonic; no allocation, no lock).
    pub fn now(&self) -> Nanos {
        self.origin.elapsed().as_nanos() as Nanos
    }

    /// The origin as a `std::time::Instant`.
    pub fn origin(&self) -> std::time::Instant {
        self.origin
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Self::start()
    }
}
