//! The ROS 2 messages avaction publishes, as plain Rust types: field for field (and in
//! the same order, which is what CDR encodes) the ROS 2 interfaces named on each type.
//! They need no ROS install: serialise them with any CDR encoder, or copy them field
//! by field into the generated types of `rclrs` or `r2r`.

use serde::{Deserialize, Serialize};

/// `builtin_interfaces/msg/Time`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    /// Seconds since the Unix epoch.
    pub sec: i32,
    /// Nanoseconds within the second.
    pub nanosec: u32,
}

impl Time {
    /// The time `seconds` after the Unix epoch (clamped to what the message can hold).
    pub fn from_unix_secs(seconds: f64) -> Time {
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        let whole = seconds.floor().min(f64::from(i32::MAX));
        let nanosec = (((seconds - whole) * 1e9).round() as u32).min(999_999_999);
        Time {
            sec: whole as i32,
            nanosec,
        }
    }

    /// The time `nanos` nanoseconds after the Unix epoch (clamped as above).
    pub fn from_unix_nanos(nanos: i64) -> Time {
        let nanos = nanos.max(0);
        let sec = (nanos / 1_000_000_000).min(i64::from(i32::MAX));
        Time {
            sec: sec as i32,
            nanosec: (nanos % 1_000_000_000) as u32,
        }
    }

    /// Seconds since the Unix epoch.
    pub fn as_unix_secs(&self) -> f64 {
        f64::from(self.sec) + f64::from(self.nanosec) * 1e-9
    }
}

/// `std_msgs/msg/Header`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// When the data was captured.
    pub stamp: Time,
    /// The frame the data belongs to (the camera's).
    pub frame_id: String,
}

/// `vision_msgs/msg/ObjectHypothesis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectHypothesis {
    /// The class: its index in the [`LabelInfo`]'s class map, as text.
    pub class_id: String,
    /// The smoothed score.
    pub score: f64,
}

/// `vision_msgs/msg/Classification`: the top-k of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// `stamp`: the capture time of the window's end.
    pub header: Header,
    /// Best first.
    pub results: Vec<ObjectHypothesis>,
}

/// `vision_msgs/msg/VisionClass`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionClass {
    /// The id used in [`ObjectHypothesis::class_id`].
    pub class_id: u16,
    /// The label.
    pub class_name: String,
}

/// `vision_msgs/msg/LabelInfo`: the class map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelInfo {
    /// `stamp`: when the run started.
    pub header: Header,
    /// Every label with its id.
    pub class_map: Vec<VisionClass>,
    /// The decoder's onset threshold.
    pub threshold: f32,
}

/// `diagnostic_msgs/msg/KeyValue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The name.
    pub key: String,
    /// The value, as text.
    pub value: String,
}

/// `diagnostic_msgs/msg/DiagnosticStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticStatus {
    /// [`DiagnosticStatus::OK`], `WARN`, `ERROR` or `STALE`.
    pub level: u8,
    /// `avaction: runtime`, or `avaction: SOURCE` for each source.
    pub name: String,
    /// The state and its reasons, in words.
    pub message: String,
    /// The node's name.
    pub hardware_id: String,
    /// Numbers: frames/s, latency, skew, drops, …
    pub values: Vec<KeyValue>,
}

impl DiagnosticStatus {
    /// Running.
    pub const OK: u8 = 0;
    /// Degraded, starting or reconnecting.
    pub const WARN: u8 = 1;
    /// Failed.
    pub const ERROR: u8 = 2;
    /// No data (a source that ended).
    pub const STALE: u8 = 3;
}

/// `diagnostic_msgs/msg/DiagnosticArray`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticArray {
    /// `stamp`: when the status was taken.
    pub header: Header,
    /// The runtime's status first, then one per source.
    pub status: Vec<DiagnosticStatus>,
}
