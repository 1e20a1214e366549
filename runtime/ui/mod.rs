//! `--ui ADDR`: a live view in a web page served by the runtime, for edge boxes with
//! no display. One page, no build step, no external assets (it works offline):
//!
//! - the capture's picture (small JPEG images, made only while a page is open, at most
//!   10 per second), with the current label and, optionally, the optical flow the
//!   model gets drawn over it as colours (hue: direction, strength: magnitude);
//! - an audio level meter and the model's log-mel as a scrolling spectrogram;
//! - the top-k scores as bars updating every window, the last events with their times
//!   (with evidence clips on, a click plays the event's clip);
//! - health and key numbers (frames/s, windows/s, latency, drops).
//!
//! Endpoints (one HTTP server, `tiny_http`; with a token every one needs
//! `?token=TOKEN` or `Authorization: Bearer TOKEN`):
//!
//! | path | what |
//! |---|---|
//! | `/` | the page |
//! | `/stream` | server-sent events: every output as the same JSON line `avaction run --json` prints (unnamed events), plus `event: view` (log-mel columns, level, flow) and `event: stats` (each second) |
//! | `/frame.jpg` | the newest picture (`X-Capture-Time`: its capture time, seconds on the runtime timeline) |
//! | `/clips`, `/clips/NAME` | the evidence clips' sidecars as a JSON list, and the files |
//! | `/health`, `/metrics` | as with `--metrics` (`/metrics` when metrics are on) |
//!
//! Each client has its own bounded queue: a slow or stalled client misses messages
//! (counted: [`SinkStats::spool_dropped`] of the `ui` sink) and never slows the
//! runtime; at most [`UiOptions::max_clients`] streams at once.
//!
//! ```no_run
//! use avaction::ui::{Ui, UiOptions};
//! use avaction::{Runtime, VideoSource};
//!
//! let ui = Ui::new(UiOptions::default());
//! let runtime = Runtime::builder()
//!     .model("cavnet-ov-small")
//!     .video(VideoSource::parse("camera"))
//!     .live_view(ui.view())
//!     .sink(ui.sink())
//!     .build()?;
//! let server = ui.serve("127.0.0.1:8090", runtime.observer(), None)?;
//! println!("open http://{}/", server.addr());
//! # Ok::<(), avaction::Error>(())
//! ```

mod http;
mod hub;

pub use http::UiServer;

use crate::capture::preview::PreviewTap;
use crate::deliver::{Output, Record, Sink, SinkStats};
use crate::metrics::Metrics;
use crate::window::view::LiveView;
use crate::{err, Observer, Result};
use hub::{Hub, Kind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Settings of the live view.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// A secret every request must carry; `None`: none (the default binds to
    /// 127.0.0.1, so only this machine can connect).
    pub token: Option<String>,
    /// Largest height of the picture, in lines (default 360).
    pub picture_height: u32,
    /// Most pictures per second (default 10).
    pub picture_fps: u32,
    /// The evidence clips' folder, served under `/clips` (the page plays an event's
    /// clip on a click); `None`: no clips.
    pub clips_dir: Option<PathBuf>,
    /// Most streams at once (default 16); more are answered `503`.
    pub max_clients: usize,
    /// Messages queued per stream before a slow client misses some (default 256).
    pub client_queue: usize,
}

impl Default for UiOptions {
    fn default() -> Self {
        UiOptions {
            token: None,
            picture_height: 360,
            picture_fps: 10,
            clips_dir: None,
            max_clients: 16,
            client_queue: 256,
        }
    }
}

/// The live view of one runtime: give its [`view`](Ui::view) and [`sink`](Ui::sink) to
/// the runtime builder, then [`serve`](Ui::serve) it.
pub struct Ui {
    options: UiOptions,
    view: Arc<LiveView>,
    hub: Arc<Hub>,
}

impl std::fmt::Debug for Ui {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ui")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Ui {
    /// A live view with `options`.
    pub fn new(options: UiOptions) -> Ui {
        let preview = Arc::new(PreviewTap::new(options.picture_height, options.picture_fps));
        let hub = Arc::new(Hub::new(options.max_clients.max(1), options.client_queue));
        Ui {
            view: Arc::new(LiveView::new(preview)),
            hub,
            options,
        }
    }

    /// What the model sees and hears: give it to
    /// [`RuntimeBuilder::live_view`](crate::RuntimeBuilder::live_view).
    pub fn view(&self) -> Arc<LiveView> {
        self.view.clone()
    }

    /// The sink that streams every output to the page: give it to
    /// [`RuntimeBuilder::sink`](crate::RuntimeBuilder::sink). Named `ui` in stats.
    pub fn sink(&self) -> Box<dyn Sink> {
        Box::new(UiSink {
            hub: self.hub.clone(),
        })
    }

    /// Serves the page on `addr` (see [`listen_address`]); also `/metrics` when
    /// `metrics` is given, and `/health`.
    ///
    /// # Errors
    /// [`Io`](crate::ErrorKind::Io) when the address cannot be listened on.
    pub fn serve(
        &self,
        addr: &str,
        observer: Observer,
        metrics: Option<&Metrics>,
    ) -> Result<UiServer> {
        if let Some(m) = metrics {
            m.attach(&observer);
        }
        UiServer::start(
            &listen_address(addr)?,
            http::Context {
                options: self.options.clone(),
                view: self.view.clone(),
                hub: self.hub.clone(),
                observer,
                metrics: metrics.cloned(),
            },
        )
    }
}

/// The address to listen on for `--ui SPEC`: `PORT` alone means `127.0.0.1:PORT` (this
/// machine only); `HOST:PORT` and `[V6]:PORT` are taken as given.
///
/// # Errors
/// [`Config`](crate::ErrorKind::Config) for a spec that is neither.
pub fn listen_address(spec: &str) -> Result<String> {
    let spec = spec.trim();
    if let Ok(port) = spec.parse::<u16>() {
        return Ok(format!("127.0.0.1:{port}"));
    }
    let port_ok = spec
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if port_ok {
        Ok(spec.to_string())
    } else {
        Err(err!(
            Config,
            "ui address {spec:?}: give PORT (127.0.0.1:PORT) or HOST:PORT, e.g. 8090 or 0.0.0.0:8090"
        ))
    }
}

/// Streams outputs to the page's clients.
struct UiSink {
    hub: Arc<Hub>,
}

impl Sink for UiSink {
    fn name(&self) -> String {
        "ui".into()
    }

    fn deliver(&mut self, record: &Record) -> Result<()> {
        let kind = match record.output {
            Output::Prediction(_) => Kind::Prediction,
            Output::Event(_) => Kind::Event,
            Output::Health(_) => Kind::Health,
            _ => Kind::Other,
        };
        let json = serde_json::to_string(record.output)
            .map_err(|e| err!(Io, "ui: cannot encode an output").caused_by(e))?;
        self.hub
            .publish(kind, Arc::from(format!("data: {json}\n\n")));
        Ok(())
    }

    fn close(&mut self, _within: Duration) {}

    /// `delivered`: messages streamed (outputs, views, stats); `spooled`: waiting in the
    /// clients' queues; `spool_dropped`: missed by slow clients; `connected`: a page is
    /// open.
    fn stats(&self) -> SinkStats {
        let s = self.hub.stats();
        SinkStats {
            name: "ui".into(),
            delivered: s.published,
            failed: 0,
            spooled: s.queued,
            spool_dropped: s.dropped,
            connected: s.clients > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_binds_to_this_machine_only() {
        assert_eq!(
            listen_address("8090").ok().as_deref(),
            Some("127.0.0.1:8090")
        );
        assert_eq!(
            listen_address("0.0.0.0:9000").ok().as_deref(),
            Some("0.0.0.0:9000")
        );
        assert_eq!(listen_address("[::1]:80").ok().as_deref(), Some("[::1]:80"));
        for bad in ["", "host", ":80", "host:port", "99999"] {
            let e = listen_address(bad).expect_err(bad);
            assert!(e.to_string().contains("ui address"), "{e}");
        }
    }
}
