//! The live view (`avaction run --ui`) in a real browser: headless Chromium, driven
//! over WebDriver by ChromeDriver, loads the page during a real-time run of the
//! synthetic scene; the label it shows must be the runtime's prediction for the window
//! it names, the top-k bars and the event list must be filled, and its screenshot is
//! kept (`target/ui/live-view.png`; with `AVACTION_WRITE_DOCS=1` also
//! `docs/live-view.png`, the README's picture). Beside it, a stream client checks that
//! the stream's JSON equals the `--json` lines of the same run, six more clients and
//! one that never reads show that viewers do not slow the runtime, and the same
//! server answers `/health`, `/metrics`, `/clips` and refuses requests without the
//! token.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret token/+";
const SCENE_S: u32 = 24;

/// A raw HTTP/1.1 exchange on loopback: (status, headers, body).
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    // Read by Content-Length where given: ChromeDriver keeps the connection open.
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let chunked_done =
                head.contains("transfer-encoding: chunked") && raw.ends_with(b"0\r\n\r\n");
            if length.is_some_and(|n| raw.len() >= split + 4 + n) || chunked_done {
                break;
            }
        }
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    let mut content = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        content = unchunk(&content);
    }
    (status, head, content)
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 4 + size..];
    }
}

fn query_token() -> String {
    TOKEN
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The base64 of WebDriver's screenshot, decoded.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = text.bytes().filter_map(value).collect();
    digits
        .chunks(4)
        .flat_map(|c| {
            let n = c
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes[..c.len().saturating_sub(1)].to_vec()
        })
        .collect()
}

/// A stream client: collects the unnamed events' data (the outputs) until told to stop;
/// `read: false` connects, asks, and never reads (a stalled viewer).
struct StreamClient {
    outputs: Arc<Mutex<Vec<String>>>,
    views: Arc<Mutex<usize>>,
    _thread: Option<std::thread::JoinHandle<()>>,
    _stalled: Option<TcpStream>,
}

impl StreamClient {
    fn connect(port: u16, read: bool) -> StreamClient {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            s,
            "GET /stream?token={} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
            query_token()
        )
        .expect("ask");
        let outputs = Arc::new(Mutex::new(Vec::new()));
        let views = Arc::new(Mutex::new(0));
        if !read {
            return StreamClient {
                outputs,
                views,
                _thread: None,
                _stalled: Some(s),
            };
        }
        let thread = std::thread::spawn({
            let (outputs, views) = (outputs.clone(), views.clone());
            move || {
                let mut event = String::new();
                for line in BufReader::new(s).lines() {
                    let Ok(line) = line else { return };
                    if let Some(name) = line.strip_prefix("event: ") {
                        event = name.to_string();
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        match event.as_str() {
                            "" => outputs.lock().unwrap().push(data.to_string()),
                            "view" => *views.lock().unwrap() += 1,
                            _ => {}
                        }
                    } else if line.is_empty() {
                        event.clear();
                    }
                }
            }
        });
        StreamClient {
            outputs,
            views,
            _thread: Some(thread),
            _stalled: None,
        }
    }
}

/// ChromeDriver and one headless Chromium session.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let port = common::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let (status, _, body) = http(port, "POST", "/session", Some(&capabilities.to_string()));
        let reply: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(status, 200, "new session: {reply}");
        let session = reply["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Browser {
            driver,
            port,
            session,
        }
    }

    fn command(&self, method: &str, what: &str, body: serde_json::Value) -> serde_json::Value {
        let path = format!("/session/{}/{what}", self.session);
        let (status, _, reply) = http(self.port, method, &path, Some(&body.to_string()));
        let reply: serde_json::Value = serde_json::from_slice(&reply).expect("json");
        assert_eq!(status, 200, "{what}: {reply}");
        reply["value"].clone()
    }

    fn script(&self, script: &str) -> serde_json::Value {
        self.command(
            "POST",
            "execute/sync",
            serde_json::json!({"script": script, "args": []}),
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = std::panic::catch_unwind(|| http(self.port, "DELETE", &path, None));
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// What the page shows now.
const READ_PAGE: &str = r##"
const label = document.getElementById("label");
return {
  label: label.textContent,
  window: label.dataset.window,
  bars: [...document.querySelectorAll("#bars .bar")].map(b => [b.dataset.label, Number(b.dataset.score)]),
  events: document.querySelectorAll("#events li").length,
  state: document.getElementById("state").textContent,
  picture: document.getElementById("frame").naturalWidth,
  numbers: document.querySelectorAll("#numbers div").length,
  flow: document.getElementById("flow").width,
  level: document.getElementById("level").textContent,
};
"##;

#[test]
fn the_live_view_shows_what_the_runtime_emits() {
    if Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_err()
        || !Path::new("/usr/bin/chromium").exists()
    {
        eprintln!(
            "SKIPPED: chromium and chromedriver are not installed (scripts/setup-debian.sh installs them)"
        );
        return;
    }
    let dir = common::temp_dir("ui");
    let scene = common::scene(&dir, SCENE_S);
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let clips = dir.join("clips");

    // stdout: the --json lines as they come; stderr: the address, then the stats
    let (port_tx, port_rx) = mpsc::channel();
    let run = common::Running::start(
        &[
            "run",
            "--model",
            "cavnet-small",
            "--video",
            scene.to_str().unwrap(),
            "--realtime",
            "--json",
            "--stats",
            "--ui",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--ui-token-file",
            token_file.to_str().unwrap(),
            "--clips",
            clips.to_str().unwrap(),
            "--clip-pre-roll",
            "1",
            "--clip-post-roll",
            "1",
        ],
        move |line| {
            if let Some(rest) = line.strip_prefix("avaction: live view on http://127.0.0.1:") {
                let _ = port_tx.send(rest.trim_end_matches('/').parse::<u16>().unwrap_or(0));
            }
        },
    );
    let stdout_lines = run.lines.clone();
    let Ok(port) = port_rx.recv_timeout(Duration::from_secs(60)) else {
        panic!("no live view address: {}", run.kill());
    };

    // The token guards every path; the same server hosts /health and /metrics.
    let t = query_token();
    assert_eq!(http(port, "GET", "/", None).0, 401);
    assert_eq!(http(port, "GET", "/health", None).0, 401);
    let (status, head, page) = http(port, "GET", &format!("/?token={t}"), None);
    assert_eq!(status, 200, "{head}");
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("<title>avaction live view</title>"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from elsewhere"
    );
    let (status, _, health) = http(port, "GET", &format!("/health?token={t}"), None);
    assert!(status == 200 || status == 503, "{status}");
    let health: serde_json::Value = serde_json::from_slice(&health).expect("health json");
    assert!(health["state"].is_string(), "{health}");
    let (status, _, metrics) = http(port, "GET", &format!("/metrics?token={t}"), None);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&metrics).contains("avaction_frames_total"));

    // One client that checks the stream, six more that read, one that never reads.
    let checker = StreamClient::connect(port, true);
    let _readers: Vec<StreamClient> = (0..6).map(|_| StreamClient::connect(port, true)).collect();
    let _stalled = StreamClient::connect(port, false);

    let profile = dir.join("chromium-profile");
    let browser = Browser::start(&profile);
    browser.command(
        "POST",
        "url",
        serde_json::json!({"url": format!("http://127.0.0.1:{port}/?token={t}")}),
    );
    // Show the flow too, then wait for a label, bars, events, a picture, the flow, the
    // sound level and the numbers (three events, or one once half the scene has played).
    browser.script(r#"document.getElementById("show-flow").click(); return true;"#);
    let started = Instant::now();
    let shown = loop {
        let shown = browser.script(READ_PAGE);
        let events = shown["events"].as_u64().unwrap_or(0);
        let ready = shown["window"].as_str().is_some_and(|w| !w.is_empty())
            && shown["bars"].as_array().is_some_and(|b| !b.is_empty())
            && (events >= 3
                || (events >= 1 && started.elapsed().as_secs() > u64::from(SCENE_S / 2)))
            && shown["picture"].as_u64().unwrap_or(0) > 0
            && shown["flow"].as_u64().unwrap_or(0) > 0
            && shown["level"]
                .as_str()
                .is_some_and(|l| l.ends_with(" dB") && !l.starts_with('–'))
            && shown["numbers"].as_u64().unwrap_or(0) > 0;
        if ready {
            break shown;
        }
        if started.elapsed() > Duration::from_secs(u64::from(SCENE_S) - 4) {
            panic!("the page never filled in: {shown}");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let screenshot = browser.command("GET", "screenshot", serde_json::json!({}));
    let png = base64_decode(screenshot.as_str().expect("base64 png"));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let kept = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui");
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::write(kept.join("live-view.png"), &png).unwrap();
    if std::env::var_os("AVACTION_WRITE_DOCS").is_some() {
        std::fs::write(common::repo("docs/live-view.png"), &png).unwrap();
    }
    eprintln!(
        "page: {shown}\nscreenshot: target/ui/live-view.png ({} bytes)",
        png.len()
    );

    // The label shown is the runtime's top-1 for the window the page names, and that
    // window is among the newest printed.
    let window: u64 = shown["window"].as_str().unwrap().parse().expect("a window");
    let printed: Vec<serde_json::Value> = stdout_lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["type"] == "prediction")
        .collect();
    let newest = printed.last().expect("predictions")["window"]
        .as_u64()
        .unwrap();
    let same = printed
        .iter()
        .find(|p| p["window"].as_u64() == Some(window))
        .unwrap_or_else(|| panic!("window {window} was not printed"));
    assert_eq!(shown["label"], same["top"][0]["label"], "{shown} vs {same}");
    let bars: Vec<&str> = shown["bars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[0].as_str().unwrap_or(""))
        .collect();
    let top: Vec<&str> = same["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap_or(""))
        .collect();
    assert!(
        newest.abs_diff(window) <= 4,
        "the page shows window {window}, the runtime is at {newest}"
    );
    // the bars may already show a newer window than the label read a moment before
    assert_eq!(bars.len(), top.len(), "{bars:?} vs {top:?}");

    // Clips are listed and served while the run goes on.
    let clip_deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let (status, _, list) = http(port, "GET", &format!("/clips?token={t}"), None);
        assert_eq!(status, 200);
        let list: serde_json::Value = serde_json::from_slice(&list).expect("clips json");
        if list.as_array().is_some_and(|l| !l.is_empty()) || Instant::now() > clip_deadline {
            break list;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let first = &listed[0];
    let name = first["clip"].as_str().expect("a clip name");
    assert!(first["event"]["label"].is_string(), "{first}");
    let (status, head, bytes) = http(port, "GET", &format!("/clips/{name}?token={t}"), None);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("video/webm"), "{head}");
    assert!(bytes.len() > 1000, "{} bytes", bytes.len());
    assert_eq!(
        http(port, "GET", &format!("/clips/..%2Fx?token={t}"), None).0,
        404
    );
    drop(browser);

    // The run ends by itself at the end of the file.
    let (code, lines, stderr) = run.finish(Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");

    // The stream's outputs are --json lines of the run, and the checking client, which
    // reads, missed no prediction from the first it got.
    let streamed = checker.outputs.lock().unwrap().clone();
    assert!(streamed.len() > 20, "{} outputs streamed", streamed.len());
    for s in &streamed {
        assert!(lines.contains(s), "streamed but not printed: {s}");
    }
    let predictions = |all: &[String]| -> Vec<String> {
        all.iter()
            .filter(|l| l.contains(r#""type":"prediction""#))
            .cloned()
            .collect()
    };
    let (printed, got) = (predictions(&lines), predictions(&streamed));
    let from = printed
        .iter()
        .position(|p| *p == got[0])
        .expect("the first streamed prediction was printed");
    // the last predictions may still be in flight when the run ends
    let tail = &printed[from..from + got.len().min(printed.len() - from)];
    assert_eq!(
        got.as_slice(),
        tail,
        "the stream skipped or reordered predictions"
    );
    assert!(
        got.len() + 3 >= printed.len() - from,
        "streamed {} of {}",
        got.len(),
        printed.len() - from
    );
    assert!(*checker.views.lock().unwrap() > 10, "view messages");

    // Viewers (seven, one stalled) did not slow the runtime: no window skipped, no
    // frame dropped, the whole file labelled.
    let stats: serde_json::Value = stderr
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("stats json on stderr");
    let windows = stats["windows"].as_u64().unwrap();
    let skipped = stats["windows_skipped"].as_u64().unwrap();
    let dropped = stats["frames_dropped"].as_u64().unwrap();
    eprintln!(
        "run: {windows} windows, {skipped} skipped, {dropped} frames dropped, {:.2} windows/s; {} outputs streamed",
        stats["windows_per_s"].as_f64().unwrap_or(0.0),
        streamed.len()
    );
    assert!(
        skipped * 20 <= windows && dropped * 20 <= stats["frames"].as_u64().unwrap(),
        "{stats}"
    );
    let ui = stats["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "ui")
        .expect("the ui sink in stats");
    assert!(ui["delivered"].as_u64().unwrap() > 0, "{ui}");
}
