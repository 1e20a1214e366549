//! The HTTP server of `/metrics` and `/health`: one thread, one request at a time
//! (scrapes are small and rare), stopped and joined on drop.

use super::Metrics;
use crate::health::State;
use crate::{err, Observer, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running metrics endpoint; stops when dropped.
pub struct MetricsServer {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MetricsServer {
    pub(super) fn start(addr: &str, metrics: Metrics, observer: Observer) -> Result<MetricsServer> {
        let (server, bound) = listen(addr, "metrics")?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("avaction-metrics".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match server.recv_timeout(Duration::from_millis(100)) {
                            Ok(Some(request)) => answer(request, &metrics, &observer),
                            Ok(None) => {}
                            Err(e) => {
                                log::warn!("metrics: {e}");
                                std::thread::sleep(Duration::from_millis(100));
                            }
                        }
                    }
                })
                .map_err(|e| err!(Io, "metrics: thread").caused_by(e))?
        };
        log::info!("metrics on http://{bound}/metrics and /health");
        Ok(MetricsServer {
            addr: bound,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port chosen when asked for port 0).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

/// An HTTP server on `addr` and the address it got (`what` names it in errors).
pub(crate) fn listen(addr: &str, what: &str) -> Result<(tiny_http::Server, std::net::SocketAddr)> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| err!(Io, "{what}: cannot listen on {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| err!(Io, "{what}: {addr} is not an IP address"))?;
    Ok((server, bound))
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A response header; a name or value tiny_http refuses becomes `X-Invalid: 1`.
pub(crate) fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap_or_else(|()| {
        tiny_http::Header::from_bytes(&b"X-Invalid"[..], &b"1"[..]).expect("a valid header")
    })
}

fn answer(request: tiny_http::Request, metrics: &Metrics, observer: &Observer) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let get = *request.method() == tiny_http::Method::Get;
    let (status, body, kind) = route(&path, get, Some(metrics), observer).unwrap_or((
        404,
        "not found: try /metrics or /health\n".into(),
        "text/plain; charset=utf-8",
    ));
    let response = tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", kind));
    let _ = request.respond(response);
}

/// The answer to `/metrics` (when there are metrics) and `/health`: status, body and
/// content type; `None` for any other path. Shared with the live view's server, which
/// hosts both when it runs.
pub(crate) fn route(
    path: &str,
    get: bool,
    metrics: Option<&Metrics>,
    observer: &Observer,
) -> Option<(u16, String, &'static str)> {
    Some(match (get, path, metrics) {
        (true, "/metrics", Some(metrics)) => match metrics.encode() {
            Ok(text) => (
                200,
                text,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            ),
            Err(e) => (500, e.to_string(), "text/plain; charset=utf-8"),
        },
        (true, "/health", _) => {
            let health = observer.health();
            let ok = matches!(health.state, State::Running | State::Ended);
            let body = serde_json::to_string(&health).unwrap_or_else(|_| "{}".into());
            (if ok { 200 } else { 503 }, body, "application/json")
        }
        (false, "/metrics", Some(_)) | (false, "/health", _) => {
            (405, "GET only\n".into(), "text/plain; charset=utf-8")
        }
        _ => return None,
    })
}
