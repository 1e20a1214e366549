//! Time at the bottom of the house: one timeline for every sensor, and the frame and
//! audio-chunk types stamped on it.
//!
//! Every frame and audio chunk carries a time in nanoseconds on the runtime's
//! timeline ([`Nanos`]): for live sources, nanoseconds since the runtime's origin on
//! the monotonic clock; for files processed offline, media running time.

use std::fmt;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};
use std::time::Duration;

/// A time on the runtime's one timeline, or a span of time, in nanoseconds. A newtype
/// so that a time cannot be mixed up with a count, a sample index or milliseconds:
/// build one with [`Nanos::from_nanos`], [`Nanos::from_secs_f64`] or from a
/// [`Duration`]; read it with [`as_nanos`](Nanos::as_nanos) or
/// [`as_secs_f64`](Nanos::as_secs_f64). Arithmetic saturates instead of wrapping.
///
/// ```
/// use avaction::clock::Nanos;
/// let frame = Nanos::SECOND / 25;
/// assert_eq!(frame.as_nanos(), 40_000_000);
/// assert_eq!((Nanos::from_secs_f64(1.5) + frame * 2).as_secs_f64(), 1.58);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(i64);

impl Nanos {
    /// Time zero (the timeline's origin), or an empty span.
    pub const ZERO: Nanos = Nanos(0);
    /// One second.
    pub const SECOND: Nanos = Nanos(1_000_000_000);
    /// One millisecond.
    pub const MILLISECOND: Nanos = Nanos(1_000_000);

    /// `ns` nanoseconds.
    pub const fn from_nanos(ns: i64) -> Nanos {
        Nanos(ns)
    }

    /// `s` seconds, rounded to the nanosecond and saturated to the representable range
    /// (about ±292 years); NaN gives zero.
    pub fn from_secs_f64(s: f64) -> Nanos {
        Nanos((s * 1e9).round() as i64)
    }

    /// `ms` milliseconds, as [`from_secs_f64`](Nanos::from_secs_f64).
    pub fn from_millis_f64(ms: f64) -> Nanos {
        Nanos((ms * 1e6).round() as i64)
    }

    /// `count` periods of `per_second` per second (e.g. sample `count` at 48 kHz), with
    /// no overflow on the way: `count * 1e9 / per_second`, truncated. Zero for
    /// `per_second == 0`.
    pub fn from_count(count: i64, per_second: u64) -> Nanos {
        if per_second == 0 {
            return Nanos::ZERO;
        }
        let ns = count as i128 * 1_000_000_000 / per_second as i128;
        Nanos(ns.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }

    /// The value in nanoseconds.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// The value in seconds.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// The value in milliseconds.
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// The span as a [`Duration`]; negative spans give zero.
    pub fn to_duration(self) -> Duration {
        Duration::from_nanos(self.0.max(0) as u64)
    }

    /// The absolute value (for spans such as a skew).
    pub fn abs(self) -> Nanos {
        Nanos(self.0.saturating_abs())
    }
}

impl From<Duration> for Nanos {
    /// The span of `d`, saturated at `i64::MAX` nanoseconds.
    fn from(d: Duration) -> Nanos {
        Nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

impl fmt::Display for Nanos {
    /// Seconds with millisecond precision: `12.345s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.as_secs_f64())
    }
}

impl Add for Nanos {
    type Output = Nanos;
    fn add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Nanos {
    type Output = Nanos;
    fn sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(rhs.0))
    }
}

impl AddAssign for Nanos {
    fn add_assign(&mut self, rhs: Nanos) {
        *self = *self + rhs;
    }
}

impl SubAssign for Nanos {
    fn sub_assign(&mut self, rhs: Nanos) {
        *self = *self - rhs;
    }
}

impl Neg for Nanos {
    type Output = Nanos;
    fn neg(self) -> Nanos {
        Nanos(self.0.saturating_neg())
    }
}

impl Mul<i64> for Nanos {
    type Output = Nanos;
    fn mul(self, rhs: i64) -> Nanos {
        Nanos(self.0.saturating_mul(rhs))
    }
}

impl Div<i64> for Nanos {
    type Output = Nanos;
    /// Division by zero gives zero (no panic on a zero rate from a device).
    fn div(self, rhs: i64) -> Nanos {
        Nanos(self.0.checked_div(rhs).unwrap_or(0))
    }
}

impl Div for Nanos {
    type Output = i64;
    /// How many whole `rhs` spans fit in `self` (0 for a zero span).
    fn div(self, rhs: Nanos) -> i64 {
        self.0.checked_div(rhs.0).unwrap_or(0)
    }
}

/// A half-open span of the timeline, `start..end`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeSpan {
    /// First instant inside the span.
    pub start: Nanos,
    /// First instant after it.
    pub end: Nanos,
}

impl TimeSpan {
    /// The span `start..end`.
    pub fn new(start: Nanos, end: Nanos) -> TimeSpan {
        TimeSpan { start, end }
    }

    /// `end - start` (zero or negative for an empty span).
    pub fn len(&self) -> Nanos {
        self.end - self.start
    }

    /// Whether the span holds no instant.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Its middle instant.
    pub fn mid(&self) -> Nanos {
        Nanos(self.start.0 + (self.end.0 - self.start.0) / 2)
    }

    /// Whether `t` is inside it.
    pub fn contains(&self, t: Nanos) -> bool {
        self.start <= t && t < self.end
    }
}

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

    /// Time since the origin (monotonic; no allocation, no lock).
    pub fn now(&self) -> Nanos {
        Nanos::from(self.origin.elapsed())
    }

    /// The time of `instant` on this timeline (negative before the origin).
    pub fn at(&self, instant: std::time::Instant) -> Nanos {
        match instant.checked_duration_since(self.origin) {
            Some(d) => Nanos::from(d),
            None => -Nanos::from(self.origin.duration_since(instant)),
        }
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
