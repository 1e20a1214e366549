//! `--metrics ADDR`: an HTTP endpoint for monitoring, served by a small thread
//! (`tiny_http`):
//!
//! - `GET /metrics`: the Prometheus text format (0.0.4), written by the Prometheus
//!   client library (`prometheus-client`): counters and gauges read from
//!   [`Stats`](crate::Stats) and [`Health`](crate::Health) at each scrape, histograms of
//!   latency and audio-video skew observed per window, events counted by label.
//! - `GET /health`: the health model as JSON, `200` while running (or ended), `503`
//!   while starting, degraded, reconnecting or failed.
//!
//! Metrics (all prefixed `avaction_`): `frames_total`, `audio_samples_total`,
//! `windows_total`, `dropped_total{what}` (frames, audio samples, windows skipped or
//! dropped, outputs, sink predictions), `windows_paused_total`,
//! `windows_video_only_total`, `events_total{label,kind}`, `reconnects_total`,
//! `video_gaps_total`, `latency_seconds` and `skew_seconds` (histograms; skew as an
//! absolute value), `inference_seconds{stage}` (mean per window),
//! `frontend_seconds_per_frame`, `frames_per_second`, `windows_per_second`,
//! `backend_info{backend}`, `state{state}` and `source_state{source,state}` (1 for the
//! current state), `last_frame_age_seconds`, `last_audio_age_seconds`,
//! `sink_delivered_total{sink}`, `sink_connected{sink}`, `spool_depth{sink}`,
//! `spool_dropped_total{sink}`, `uptime_seconds`.
//!
//! ```no_run
//! use avaction::metrics::Metrics;
//! use avaction::{Runtime, VideoSource};
//!
//! let metrics = Metrics::new();
//! let runtime = Runtime::builder()
//!     .model("cavnet-ov-small")
//!     .video(VideoSource::parse("camera"))
//!     .sink(metrics.sink())
//!     .build()?;
//! let _server = metrics.serve("127.0.0.1:9108", runtime.observer())?;
//! // curl http://127.0.0.1:9108/metrics
//! # Ok::<(), avaction::Error>(())
//! ```

mod http;

pub use http::MetricsServer;
pub(crate) use http::{header, listen, route};

use crate::deliver::{Output, Record, Sink, SinkStats};
use crate::health::State;
use crate::{err, Observer, Result};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The metrics of one runtime: make it before the runtime (its [`sink`](Metrics::sink)
/// observes every window), serve it after (it reads the runtime's [`Observer`]).
#[derive(Clone)]
pub struct Metrics {
    latency: Histogram,
    skew: Histogram,
    events: Family<Vec<(String, String)>, Counter>,
    observer: Arc<Mutex<Option<Observer>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Metrics {
        Metrics {
            // 5 ms .. ~10 s
            latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.005, 2.0, 12,
            )),
            // 1 ms .. ~0.5 s
            skew: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 10,
            )),
            events: Family::default(),
            observer: Arc::new(Mutex::new(None)),
        }
    }

    /// The sink that observes predictions and events; give it to
    /// [`RuntimeBuilder::sink`](crate::RuntimeBuilder::sink).
    pub fn sink(&self) -> Box<dyn Sink> {
        Box::new(MetricsSink(self.clone()))
    }

    /// The registry with every metric, reading `observer` at each scrape.
    fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("avaction");
        registry.register(
            "latency_seconds",
            "Time from a window's last frame to its labels",
            self.latency.clone(),
        );
        registry.register(
            "skew_seconds",
            "Absolute audio-video skew of each window",
            self.skew.clone(),
        );
        registry.register("events", "Events by label and kind", self.events.clone());
        registry.register_collector(Box::new(FromStats {
            observer: self.observer.clone(),
        }));
        registry
    }

    /// The Prometheus text of the metrics now.
    ///
    /// # Errors
    /// [`Io`](crate::ErrorKind::Io) if the encoder fails (it writes to memory).
    pub fn encode(&self) -> Result<String> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry())
            .map_err(|_| err!(Io, "metrics: encoding failed"))?;
        Ok(text)
    }

    /// Serves `/metrics` and `/health` on `addr` (e.g. `127.0.0.1:9108`) until the
    /// returned server is dropped.
    ///
    /// # Errors
    /// [`Io`](crate::ErrorKind::Io) when the address cannot be bound.
    pub fn serve(&self, addr: &str, observer: Observer) -> Result<MetricsServer> {
        self.attach(&observer);
        MetricsServer::start(addr, self.clone(), observer)
    }

    /// Reads `observer` at each scrape from now on (what [`serve`](Metrics::serve)
    /// does; also done by the live view's server when it hosts `/metrics`).
    pub(crate) fn attach(&self, observer: &Observer) {
        if let Ok(mut o) = self.observer.lock() {
            *o = Some(observer.clone());
        }
    }
}

/// Observes predictions (latency, skew) and events.
struct MetricsSink(Metrics);

impl Sink for MetricsSink {
    fn name(&self) -> String {
        "metrics".into()
    }

    fn deliver(&mut self, record: &Record) -> Result<()> {
        match record.output {
            Output::Prediction(p) => {
                self.0.latency.observe(p.latency_ms / 1e3);
                if let Some(s) = p.skew_ms {
                    self.0.skew.observe(s.abs() / 1e3);
                }
            }
            Output::Event(e) => {
                let kind = format!("{:?}", e.kind).to_lowercase();
                self.0
                    .events
                    .get_or_create(&vec![
                        ("label".into(), e.label.clone()),
                        ("kind".into(), kind),
                    ])
                    .inc();
            }
            _ => {}
        }
        Ok(())
    }

    fn close(&mut self, _within: Duration) {}

    fn stats(&self) -> SinkStats {
        SinkStats {
            name: self.name(),
            connected: true,
            ..SinkStats::default()
        }
    }
}

/// Reads stats and health at each scrape.
#[derive(Debug)]
struct FromStats {
    observer: Arc<Mutex<Option<Observer>>>,
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Running => "running",
        State::Ended => "ended",
        State::Starting => "starting",
        State::Degraded => "degraded",
        State::Reconnecting => "reconnecting",
        State::Failed => "failed",
    }
}

const STATES: [State; 6] = [
    State::Running,
    State::Ended,
    State::Starting,
    State::Degraded,
    State::Reconnecting,
    State::Failed,
];

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let m = ConstCounter::new(v);
    m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let m = ConstGauge::new(v);
    m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)
}

/// A labelled family of constant counters or gauges.
fn family<M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: Vec<(Labels, M)>,
) -> std::fmt::Result {
    let Some(kind) = rows.first().map(|(_, m)| m.metric_type()) else {
        return Ok(());
    };
    let mut d = e.encode_descriptor(name, help, None, kind)?;
    for (labels, m) in &rows {
        m.encode(d.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for FromStats {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let Some(observer) = self.observer.lock().ok().and_then(|o| o.clone()) else {
            return Ok(());
        };
        let s = observer.stats();
        let h = observer.health();
        let e = &mut e;
        counter(e, "frames", "Video frames captured.", s.frames)?;
        counter(e, "audio_samples", "Audio samples captured.", s.samples)?;
        counter(e, "windows", "Windows scored.", s.windows)?;
        family(
            e,
            "dropped",
            "Items dropped, by what.",
            vec![
                (
                    vec![("what", "frames")],
                    ConstCounter::new(s.frames_dropped),
                ),
                (
                    vec![("what", "audio_samples")],
                    ConstCounter::new(s.samples_dropped),
                ),
                (
                    vec![("what", "windows_skipped")],
                    ConstCounter::new(s.windows_skipped),
                ),
                (
                    vec![("what", "windows_dropped")],
                    ConstCounter::new(s.windows_dropped),
                ),
                (
                    vec![("what", "outputs")],
                    ConstCounter::new(s.outputs_dropped),
                ),
                (
                    vec![("what", "sink_predictions")],
                    ConstCounter::new(s.sink_predictions_dropped),
                ),
            ],
        )?;
        counter(
            e,
            "windows_paused",
            "Windows not labelled for missing audio.",
            s.windows_paused,
        )?;
        counter(
            e,
            "windows_video_only",
            "Windows labelled without audio.",
            s.windows_video_only,
        )?;
        counter(e, "reconnects", "Sources reopened.", s.reconnects)?;
        counter(
            e,
            "video_gaps",
            "Video stream restarts after a gap.",
            s.video_gaps,
        )?;
        family(
            e,
            "inference_seconds",
            "Mean inference time per window, by stage.",
            s.inference_ms_per_stage
                .iter()
                .map(|(stage, ms)| (vec![("stage", stage.as_str())], ConstGauge::new(ms / 1e3)))
                .collect(),
        )?;
        gauge(
            e,
            "frontend_seconds_per_frame",
            "Mean frontend time per frame.",
            s.frontend_ms_per_frame / 1e3,
        )?;
        gauge(e, "frames_per_second", "Frame rate.", s.fps)?;
        gauge(e, "windows_per_second", "Window rate.", s.windows_per_s)?;
        gauge(
            e,
            "uptime_seconds",
            "Seconds since the run started.",
            s.elapsed_s,
        )?;
        family(
            e,
            "backend_info",
            "The backend serving now.",
            vec![(vec![("backend", s.backend.as_str())], ConstGauge::new(1i64))],
        )?;
        family(
            e,
            "state",
            "The runtime's health state (1 for the current one).",
            STATES
                .iter()
                .map(|st| {
                    (
                        vec![("state", state_name(*st))],
                        ConstGauge::new(i64::from(*st == h.state)),
                    )
                })
                .collect(),
        )?;
        family(
            e,
            "source_state",
            "Each source's health state (1 for the current one).",
            h.sources
                .iter()
                .flat_map(|src| {
                    STATES.iter().map(move |st| {
                        (
                            vec![("source", src.name.as_str()), ("state", state_name(*st))],
                            ConstGauge::new(i64::from(*st == src.state)),
                        )
                    })
                })
                .collect(),
        )?;
        if let Some(age) = s.last_frame_age_s {
            gauge(
                e,
                "last_frame_age_seconds",
                "Seconds since the latest frame.",
                age,
            )?;
        }
        if let Some(age) = s.last_audio_age_s {
            gauge(
                e,
                "last_audio_age_seconds",
                "Seconds since the latest microphone audio.",
                age,
            )?;
        }
        let sinks: Vec<&SinkStats> = s.sinks.iter().filter(|k| k.name != "metrics").collect();
        let per_sink = |f: &dyn Fn(&SinkStats) -> u64| -> Vec<(Labels, ConstCounter)> {
            sinks
                .iter()
                .map(|k| (vec![("sink", k.name.as_str())], ConstCounter::new(f(k))))
                .collect()
        };
        family(
            e,
            "sink_delivered",
            "Records a sink delivered.",
            per_sink(&|k| k.delivered),
        )?;
        family(
            e,
            "spool_dropped",
            "Events dropped from a full spool.",
            per_sink(&|k| k.spool_dropped),
        )?;
        family(
            e,
            "spool_depth",
            "Events waiting in a sink's spool.",
            sinks
                .iter()
                .map(|k| {
                    (
                        vec![("sink", k.name.as_str())],
                        ConstGauge::new(k.spooled as i64),
                    )
                })
                .collect(),
        )?;
        family(
            e,
            "sink_connected",
            "1 when a sink is connected to its broker or server.",
            sinks
                .iter()
                .map(|k| {
                    (
                        vec![("sink", k.name.as_str())],
                        ConstGauge::new(i64::from(k.connected)),
                    )
                })
                .collect(),
        )?;
        Ok(())
    }
}
