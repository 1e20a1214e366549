//! The live view's HTTP server: a few worker threads answer requests (page, picture,
//! clips, health, metrics); each stream gets a thread of its own that writes its
//! client's queue to the connection; a pump thread turns the view's news into `view`
//! messages (10 per second at most) and the runtime's stats into a `stats` message
//! each second.

use super::hub::{Hub, Kind, Subscription};
use super::UiOptions;
use crate::metrics::{header, listen, route, Metrics};
use crate::window::view::{LiveView, ViewCursor};
use crate::{err, Observer, Result};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The page: one file, no external assets.
const PAGE: &str = include_str!("page.html");
/// Threads answering requests (a stream moves to a thread of its own at once).
const WORKERS: usize = 4;
/// A comment line on an idle stream this often (finds clients that are gone).
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Clips listed by `/clips`, newest first.
const CLIPS_LISTED: usize = 200;

/// What the threads share.
pub(super) struct Context {
    pub options: UiOptions,
    pub view: Arc<LiveView>,
    pub hub: Arc<Hub>,
    pub observer: Observer,
    pub metrics: Option<Metrics>,
}

/// A running live view server; stops when dropped (streams end within 200 ms, except
/// one stuck writing to a stalled client, which ends when that client goes).
pub struct UiServer {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for UiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl UiServer {
    pub(super) fn start(addr: &str, ctx: Context) -> Result<UiServer> {
        let (server, bound) = listen(addr, "ui")?;
        let server = Arc::new(server);
        let ctx = Arc::new(ctx);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for k in 0..WORKERS {
            let (server, ctx, stop) = (server.clone(), ctx.clone(), stop.clone());
            threads.push(spawn(&format!("avaction-ui-{k}"), move || {
                while !stop.load(Ordering::Relaxed) {
                    match server.recv_timeout(Duration::from_millis(100)) {
                        Ok(Some(request)) => answer(request, &ctx, &stop),
                        Ok(None) => {}
                        Err(e) => {
                            log::warn!("ui: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?);
        }
        threads.push(spawn("avaction-ui-pump", {
            let (ctx, stop) = (ctx.clone(), stop.clone());
            move || pump(&ctx, &stop)
        })?);
        let shown = match &ctx.options.token {
            Some(_) => format!("http://{bound}/?token=…"),
            None => format!("http://{bound}/"),
        };
        log::info!("live view on {shown}");
        Ok(UiServer {
            addr: bound,
            stop,
            threads,
        })
    }

    /// The address it listens on (the port chosen when asked for port 0).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl Drop for UiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|e| err!(Io, "ui: cannot start thread {name}").caused_by(e))
}

/// Publishes the view's news and, each second, the runtime's stats.
fn pump(ctx: &Context, stop: &AtomicBool) {
    let mut cursor = ViewCursor::default();
    let mut last_stats: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if ctx.hub.stats().clients == 0 {
            // nobody watches: skip to the newest, encode nothing
            ctx.view.skip(&mut cursor);
            continue;
        }
        let update = ctx.view.take(&mut cursor);
        if !update.is_empty() {
            if let Ok(json) = serde_json::to_string(&update) {
                ctx.hub.publish(
                    Kind::Other,
                    Arc::from(format!("event: view\ndata: {json}\n\n")),
                );
            }
        }
        if last_stats.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_stats = Some(Instant::now());
            let stats = ctx.observer.stats();
            if let Ok(json) = serde_json::to_string(&stats) {
                ctx.hub.publish(
                    Kind::Other,
                    Arc::from(format!("event: stats\ndata: {json}\n\n")),
                );
            }
        }
    }
}

fn text(status: u16, body: impl Into<String>) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_string(body.into())
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

/// Whether the request carries the token (or none is needed). Compared in constant time.
fn authorized(request: &tiny_http::Request, query: &str, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let same = |given: &str| {
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    };
    let in_query = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("token="))
        .any(|v| same(&percent_decode(v)));
    let in_header = request.headers().iter().any(|h| {
        h.field.equiv("Authorization")
            && h.value
                .as_str()
                .strip_prefix("Bearer ")
                .is_some_and(|v| same(v.trim()))
    });
    in_query || in_header
}

/// `%XX` and `+` decoded (a token may hold any character the page's URL encoding made).
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn answer(request: tiny_http::Request, ctx: &Arc<Context>, stop: &Arc<AtomicBool>) {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if !authorized(&request, query, ctx.options.token.as_deref()) {
        let _ = request.respond(text(
            401,
            "a token is needed: open the page as /?token=TOKEN (or send Authorization: Bearer TOKEN)\n",
        ));
        return;
    }
    let get = *request.method() == tiny_http::Method::Get;
    if !get && !matches!(path, "/metrics" | "/health") {
        let _ = request.respond(text(405, "GET only\n"));
        return;
    }
    let response = match path {
        "/" | "/index.html" => tiny_http::Response::from_string(PAGE)
            .with_header(header("Content-Type", "text/html; charset=utf-8"))
            .with_header(header("Cache-Control", "no-store")),
        "/stream" => return stream(request, ctx, stop),
        "/frame.jpg" => picture(ctx),
        "/clips" => clip_list(ctx),
        _ if path.starts_with("/clips/") => {
            return clip_file(request, ctx, &path["/clips/".len()..]);
        }
        _ => match route(path, get, ctx.metrics.as_ref(), &ctx.observer) {
            Some((status, body, kind)) => tiny_http::Response::from_string(body)
                .with_status_code(status)
                .with_header(header("Content-Type", kind)),
            None => text(
                404,
                "not found: the live view has /, /stream, /frame.jpg, /clips, /health and /metrics\n",
            ),
        },
    };
    let _ = request.respond(response);
}

/// The newest picture; asking for it keeps the picture branch encoding.
fn picture(ctx: &Context) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let tap = ctx.view.preview();
    tap.want();
    match tap.latest() {
        Some(p) => tiny_http::Response::from_data(p.jpeg.to_vec())
            .with_header(header("Content-Type", "image/jpeg"))
            .with_header(header("Cache-Control", "no-store"))
            .with_header(header(
                "X-Capture-Time",
                &format!("{:.3}", p.t_ns.as_secs_f64()),
            )),
        None => text(503, "no picture yet\n").with_header(header("Retry-After", "1")),
    }
}

/// Moves the request to a thread of its own that writes the client's messages.
fn stream(request: tiny_http::Request, ctx: &Arc<Context>, stop: &Arc<AtomicBool>) {
    let Some(subscription) = ctx.hub.subscribe() else {
        let _ = request.respond(text(
            503,
            format!(
                "too many viewers (at most {}): close a page and retry\n",
                ctx.options.max_clients
            ),
        ));
        return;
    };
    let stop = stop.clone();
    let spawned = spawn("avaction-ui-stream", move || {
        let mut writer = request.into_writer();
        if write_stream(&mut *writer, &subscription, &stop).is_err() {
            log::debug!("ui: a viewer left");
        }
    });
    if let Err(e) = spawned {
        log::warn!("{e}");
    }
}

fn write_stream(
    out: &mut dyn Write,
    subscription: &Subscription,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    // No length and no chunking: the body ends when the connection closes.
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
          Connection: close\r\nX-Accel-Buffering: no\r\n\r\nretry: 1000\n\n",
    )?;
    out.flush()?;
    let mut idle = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match subscription.next(Duration::from_millis(200)) {
            Some(message) => {
                out.write_all(message.as_bytes())?;
                out.flush()?;
                idle = Instant::now();
            }
            None if idle.elapsed() >= KEEP_ALIVE => {
                out.write_all(b": keep-alive\n\n")?;
                out.flush()?;
                idle = Instant::now();
            }
            None => {}
        }
    }
    Ok(())
}

/// The clips' sidecars, newest first: `[{clip, event, event_offset_s}]`.
fn clip_list(ctx: &Context) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let Some(dir) = &ctx.options.clips_dir else {
        return json(200, "[]".into());
    };
    let mut sidecars: Vec<(std::time::SystemTime, std::path::PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| clip_name_ok(&e.file_name().to_string_lossy()))
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                .collect()
        })
        .unwrap_or_default();
    sidecars.sort_by_key(|s| std::cmp::Reverse(s.0));
    let list: Vec<serde_json::Value> = sidecars
        .iter()
        .take(CLIPS_LISTED)
        .filter_map(|(_, path)| {
            let text = std::fs::read_to_string(path).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some(serde_json::json!({
                "clip": v.get("clip")?,
                "event": v.get("event")?,
                "event_offset_s": v.pointer("/capture/event_offset_s"),
            }))
        })
        .collect();
    json(200, serde_json::Value::from(list).to_string())
}

fn json(status: u16, body: String) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
        .with_header(header("Cache-Control", "no-store"))
}

/// A name the clip recorder writes: letters, digits, `-`, `_`, `.`; not hidden.
fn clip_name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn clip_file(request: tiny_http::Request, ctx: &Context, name: &str) {
    let kind = match Path::new(name).extension().and_then(|x| x.to_str()) {
        Some("webm") => "video/webm",
        Some("mkv") => "video/x-matroska",
        Some("json") => "application/json",
        _ => "",
    };
    let file = match &ctx.options.clips_dir {
        Some(dir) if clip_name_ok(name) && !kind.is_empty() => {
            std::fs::File::open(dir.join(name)).ok()
        }
        _ => None,
    };
    let _ = match file {
        Some(f) => request
            .respond(tiny_http::Response::from_file(f).with_header(header("Content-Type", kind))),
        None => request.respond(text(404, "no such clip\n")),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_names_cannot_leave_the_folder() {
        assert!(clip_name_ok("r1-7-door_knock.webm"));
        for bad in [
            "",
            ".hidden.json",
            "../x.webm",
            "a/b.webm",
            "a b.webm",
            "..",
            "%2e.webm",
        ] {
            assert!(!clip_name_ok(bad), "{bad}");
        }
    }

    #[test]
    fn tokens_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b+c%2Fd"), "a b c/d");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
