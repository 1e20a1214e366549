//! ROS 2 output without a ROS install: `avaction run --ros2 [NAMESPACE]` (feature
//! `ros2`) publishes, through `ros2-client` over RustDDS (pure Rust, no rcl):
//!
//! | topic | type | QoS (default) | what |
//! |---|---|---|---|
//! | `~/classification` | `vision_msgs/msg/Classification` | reliable, volatile, depth 10 | the top-k of every window; `class_id` is the label's index in `~/label_info` |
//! | `~/events` | `std_msgs/msg/String` | reliable, volatile, depth 100 | each onset and offset as the JSON line `--json` prints, plus `stamp` |
//! | `~/label_info` | `vision_msgs/msg/LabelInfo` | reliable, transient local, depth 1 | the class map, latched: late subscribers get it |
//! | `/diagnostics` | `diagnostic_msgs/msg/DiagnosticArray` | reliable, volatile, depth 10 | 1 Hz: the runtime's health and numbers, one status per source |
//!
//! `~` is the node, `/NAMESPACE/avaction`. Every `header.stamp` is a capture time: for
//! a classification the end of the window's video span, as wall-clock time (ROS time
//! without a simulated clock): the run's start in Unix time plus the output's time on
//! the runtime timeline. For live sources and real-time playback that is when the
//! window's last frame was captured plus a frame period, however deep the queues were;
//! for files read as fast as possible it is the start plus the media time.
//!
//! Events go as `std_msgs/String` JSON: there is no standard ROS message for a
//! temporal event with onset, offset and duration, and a message type of our own would
//! need a message package built in every consumer's workspace; JSON is read by `ros2
//! topic echo` and any language as is.
//!
//! The messages themselves ([`msg`]) and their making from the runtime's outputs
//! ([`Messages`]) need no feature: an integrator with a node of their own (rclrs, r2r,
//! rclcpp through FFI) gets the same data from the Rust API and publishes it there
//! (`examples/ros2_messages.rs`).

pub mod msg;
#[cfg(feature = "ros2")]
mod node;

#[cfg(feature = "ros2")]
pub use node::{Ros2, Ros2Diagnostics};

use crate::decode::{Event, Prediction};
use crate::deliver::RunInfo;
use crate::health::{Health, State};
use crate::{err, Result, Stats};
use msg::{
    Classification, DiagnosticArray, DiagnosticStatus, Header, KeyValue, LabelInfo,
    ObjectHypothesis, Time, VisionClass,
};
use std::collections::HashMap;
use std::time::SystemTime;

/// Reliability and depth of one topic: `reliable:DEPTH` or `best_effort:DEPTH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicQos {
    /// Reliable (lost samples resent; what `ros2 topic echo` and rviz2 ask for by
    /// default) or best effort.
    pub reliable: bool,
    /// Samples kept for late or slow readers.
    pub depth: usize,
}

impl TopicQos {
    /// Parses `reliable`, `best_effort`, optionally with `:DEPTH` (1 to 1000).
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) naming the spec.
    pub fn parse(spec: &str, default_depth: usize) -> Result<TopicQos> {
        let (kind, depth) = match spec.split_once(':') {
            Some((k, d)) => (
                k,
                d.parse::<usize>().ok().filter(|d| (1..=1000).contains(d)),
            ),
            None => (spec, Some(default_depth)),
        };
        let reliable = match kind {
            "reliable" => true,
            "best_effort" => false,
            _ => None.ok_or_else(|| {
                err!(
                    Config,
                    "ros2 qos {spec:?}: give reliable or best_effort, optionally :DEPTH (1 to 1000)"
                )
            })?,
        };
        let depth = depth.ok_or_else(|| err!(Config, "ros2 qos {spec:?}: DEPTH is 1 to 1000"))?;
        Ok(TopicQos { reliable, depth })
    }
}

/// Settings of the ROS 2 output.
#[derive(Debug, Clone)]
pub struct Ros2Options {
    /// The node's namespace (default `/`): topics are `/NAMESPACE/avaction/…`.
    pub namespace: String,
    /// The node's name (default `avaction`).
    pub node_name: String,
    /// `header.frame_id` of every message (default `camera`).
    pub frame_id: String,
    /// The DDS domain (default: `$ROS_DOMAIN_ID`, else 0).
    pub domain_id: u16,
    /// `~/classification` (default reliable, depth 10).
    pub classification: TopicQos,
    /// `~/events` (default reliable, depth 100).
    pub events: TopicQos,
    /// `/diagnostics` (default reliable, depth 10).
    pub diagnostics: TopicQos,
}

impl Default for Ros2Options {
    fn default() -> Self {
        let reliable = |depth| TopicQos {
            reliable: true,
            depth,
        };
        Ros2Options {
            namespace: "/".into(),
            node_name: "avaction".into(),
            frame_id: "camera".into(),
            domain_id: std::env::var("ROS_DOMAIN_ID")
                .ok()
                .and_then(|d| d.trim().parse().ok())
                .unwrap_or(0),
            classification: reliable(10),
            events: reliable(100),
            diagnostics: reliable(10),
        }
    }
}

impl Ros2Options {
    /// Sets one topic's QoS from `TOPIC=QOS`: `classification`, `events` or
    /// `diagnostics`, then as [`TopicQos::parse`] (e.g. `classification=best_effort:1`).
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) naming the spec.
    pub fn set_topic_qos(&mut self, spec: &str) -> Result<()> {
        let (topic, qos) = spec.split_once('=').ok_or_else(|| {
            err!(
                Config,
                "ros2 qos {spec:?}: give TOPIC=QOS, e.g. classification=best_effort:1"
            )
        })?;
        let slot = match topic.trim() {
            "classification" => &mut self.classification,
            "events" => &mut self.events,
            "diagnostics" => &mut self.diagnostics,
            other => {
                return Err(err!(
                    Config,
                    "ros2 qos {spec:?}: unknown topic {other:?} (classification, events, diagnostics; label_info is always reliable and latched)"
                ))
            }
        };
        *slot = TopicQos::parse(qos.trim(), slot.depth)?;
        Ok(())
    }
}

/// Makes the ROS 2 messages of one run from its outputs.
#[derive(Debug, Clone)]
pub struct Messages {
    labels: Vec<String>,
    ids: HashMap<String, u16>,
    threshold: f32,
    frame_id: String,
    hardware_id: String,
    /// Unix time of the timeline's origin, nanoseconds (integer: f64 seconds since
    /// 1970 would round to a quarter microsecond).
    unix_origin_ns: i64,
    timeline: crate::clock::Timeline,
}

impl Messages {
    /// For the run `run` (see [`Sink::start`](crate::deliver::Sink::start)); headers
    /// name `frame_id`, diagnostics `hardware_id` (the node's name).
    pub fn new(run: &RunInfo, frame_id: &str, hardware_id: &str) -> Messages {
        let now_unix_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        Messages::with_origin(
            run,
            frame_id,
            hardware_id,
            now_unix_ns - run.timeline.now().as_nanos(),
        )
    }

    /// As [`new`](Messages::new) with the Unix time of the timeline's origin given, in
    /// nanoseconds.
    pub fn with_origin(
        run: &RunInfo,
        frame_id: &str,
        hardware_id: &str,
        unix_origin_ns: i64,
    ) -> Messages {
        let ids = run
            .labels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((l.clone(), u16::try_from(i).ok()?)))
            .collect();
        Messages {
            labels: run.labels.clone(),
            ids,
            threshold: run.threshold,
            frame_id: frame_id.to_string(),
            hardware_id: hardware_id.to_string(),
            unix_origin_ns,
            timeline: run.timeline,
        }
    }

    /// Now, in seconds on the runtime timeline.
    pub fn now_s(&self) -> f64 {
        self.timeline.now().as_secs_f64()
    }

    /// The stamp of `t_s`, seconds on the runtime timeline.
    pub fn stamp(&self, t_s: f64) -> Time {
        let t_ns = if t_s.is_finite() {
            (t_s * 1e9).round() as i64
        } else {
            0
        };
        Time::from_unix_nanos(self.unix_origin_ns.saturating_add(t_ns))
    }

    fn header(&self, t_s: f64) -> Header {
        Header {
            stamp: self.stamp(t_s),
            frame_id: self.frame_id.clone(),
        }
    }

    /// The top-k of a window, stamped with the end of its video span.
    pub fn classification(&self, p: &Prediction) -> Classification {
        Classification {
            header: self.header(p.end_s),
            results: p
                .top
                .iter()
                .map(|s| ObjectHypothesis {
                    class_id: self
                        .ids
                        .get(&s.label)
                        .map_or_else(|| s.label.clone(), |id| id.to_string()),
                    score: f64::from(s.score),
                })
                .collect(),
        }
    }

    /// The class map, stamped with the run's start.
    pub fn label_info(&self) -> LabelInfo {
        LabelInfo {
            header: self.header(0.0),
            class_map: self
                .labels
                .iter()
                .enumerate()
                .filter_map(|(i, l)| {
                    Some(VisionClass {
                        class_id: u16::try_from(i).ok()?,
                        class_name: l.clone(),
                    })
                })
                .collect(),
            threshold: self.threshold,
        }
    }

    /// An event as the JSON line `--json` prints, plus `stamp` (`{sec, nanosec}` of its
    /// `time_s`).
    pub fn event(&self, e: &Event) -> String {
        let mut value = serde_json::to_value(crate::Output::Event(e.clone()))
            .unwrap_or(serde_json::Value::Null);
        if let Some(map) = value.as_object_mut() {
            let stamp = self.stamp(e.time_s);
            map.insert(
                "stamp".into(),
                serde_json::json!({"sec": stamp.sec, "nanosec": stamp.nanosec}),
            );
        }
        value.to_string()
    }

    /// The health and numbers now: the runtime's status, then one per source.
    pub fn diagnostics(&self, health: &Health, stats: &Stats, now_s: f64) -> DiagnosticArray {
        let level = |state: State| match state {
            State::Running => DiagnosticStatus::OK,
            State::Ended => DiagnosticStatus::STALE,
            State::Starting | State::Degraded | State::Reconnecting => DiagnosticStatus::WARN,
            State::Failed => DiagnosticStatus::ERROR,
        };
        let words = |state: State, reasons: &[crate::health::Reason]| {
            let state = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            match serde_json::to_value(reasons) {
                Ok(serde_json::Value::Array(r)) if !r.is_empty() => {
                    let r: Vec<String> = r
                        .iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                        .collect();
                    format!("{state}: {}", r.join(", "))
                }
                _ => state,
            }
        };
        let kv = |key: &str, value: String| KeyValue {
            key: key.into(),
            value,
        };
        let mut status = vec![DiagnosticStatus {
            level: level(health.state),
            name: "avaction: runtime".into(),
            message: words(health.state, &health.reasons),
            hardware_id: self.hardware_id.clone(),
            values: vec![
                kv("frames_per_s", format!("{:.2}", stats.fps)),
                kv("windows_per_s", format!("{:.2}", stats.windows_per_s)),
                kv("latency_p50_ms", format!("{:.1}", stats.latency_p50_ms)),
                kv("latency_p99_ms", format!("{:.1}", stats.latency_p99_ms)),
                kv("skew_p50_ms", format!("{:.1}", stats.skew_p50_ms)),
                kv("frames", stats.frames.to_string()),
                kv("frames_dropped", stats.frames_dropped.to_string()),
                kv("windows", stats.windows.to_string()),
                kv("windows_skipped", stats.windows_skipped.to_string()),
                kv("backend", stats.backend.clone()),
            ],
        }];
        for s in &health.sources {
            let mut values = vec![
                kv("reconnects", s.reconnects.to_string()),
                kv("attempt", s.attempt.to_string()),
            ];
            if let Some(age) = s.last_data_age_s {
                values.push(kv("last_data_age_s", format!("{age:.3}")));
            }
            if let Some(detail) = &s.detail {
                values.push(kv("detail", detail.clone()));
            }
            status.push(DiagnosticStatus {
                level: level(s.state),
                name: format!("avaction: {}", s.name),
                message: words(s.state, &s.reasons),
                hardware_id: self.hardware_id.clone(),
                values,
            });
        }
        DiagnosticArray {
            header: self.header(now_s),
            status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timeline;
    use crate::decode::{EventKind, LabelScore};

    fn run() -> RunInfo {
        RunInfo {
            model: "m".into(),
            labels: vec!["background".into(), "knock".into(), "fall".into()],
            threshold: 0.6,
            timeline: Timeline::start(),
        }
    }

    #[test]
    fn topic_qos_is_set_per_topic_and_checked() {
        let mut o = Ros2Options::default();
        o.set_topic_qos("classification=best_effort:1").unwrap();
        assert_eq!(
            o.classification,
            TopicQos {
                reliable: false,
                depth: 1
            }
        );
        o.set_topic_qos("events=reliable").unwrap();
        assert_eq!(o.events.depth, 100, "the depth stays when not given");
        for bad in [
            "classification",
            "label_info=reliable",
            "events=sometimes",
            "events=reliable:0",
            "events=reliable:x",
        ] {
            let e = o.set_topic_qos(bad).unwrap_err();
            assert!(e.to_string().contains("ros2 qos"), "{bad}: {e}");
        }
    }

    #[test]
    fn stamps_are_the_run_start_plus_timeline_seconds() {
        let m = Messages::with_origin(&run(), "camera", "/avaction", 1_700_000_000_250_000_000);
        assert_eq!(
            m.stamp(2.5),
            Time {
                sec: 1_700_000_002,
                nanosec: 750_000_000
            }
        );
        let t = m.stamp(0.000_000_4);
        assert_eq!(
            (t.sec, t.nanosec),
            (1_700_000_000, 250_000_400),
            "to the nanosecond"
        );
        assert_eq!(Time::from_unix_secs(-3.0), Time::default());
        assert_eq!(Time::from_unix_nanos(-3), Time::default());
        assert_eq!(
            Time::from_unix_nanos(1_500_000_001),
            Time {
                sec: 1,
                nanosec: 500_000_001
            }
        );
        assert_eq!(Time::from_unix_secs(f64::NAN), Time::default());
    }

    #[test]
    fn classifications_name_labels_by_their_index_in_the_label_info() {
        let m = Messages::with_origin(&run(), "camera", "/avaction", 100_000_000_000);
        let p = Prediction {
            window: 3,
            start_s: 1.0,
            end_s: 1.64,
            top: vec![
                LabelScore {
                    label: "fall".into(),
                    score: 0.75,
                },
                LabelScore {
                    label: "knock".into(),
                    score: 0.25,
                },
            ],
            latency_ms: 10.0,
            skew_ms: None,
            audio_missing: 0,
        };
        let c = m.classification(&p);
        assert_eq!(c.header.frame_id, "camera");
        assert!((c.header.stamp.as_unix_secs() - 101.64).abs() < 1e-6);
        let info = m.label_info();
        let name = |id: &str| {
            info.class_map
                .iter()
                .find(|c| c.class_id.to_string() == id)
                .map(|c| c.class_name.clone())
        };
        assert_eq!(name(&c.results[0].class_id).as_deref(), Some("fall"));
        assert_eq!(name(&c.results[1].class_id).as_deref(), Some("knock"));
        assert_eq!(c.results[0].score, 0.75);
        assert_eq!(info.threshold, 0.6);
    }

    #[test]
    fn events_are_the_json_line_with_a_stamp() {
        let m = Messages::with_origin(&run(), "camera", "/avaction", 100_000_000_000);
        let e = Event {
            kind: EventKind::Onset,
            label: "knock".into(),
            time_s: 2.5,
            duration_s: None,
            score: 0.9,
        };
        let v: serde_json::Value = serde_json::from_str(&m.event(&e)).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["label"], "knock");
        assert_eq!(v["stamp"]["sec"], 102);
        assert_eq!(v["stamp"]["nanosec"], 500_000_000);
    }
}
