//! Sinks against real parts on loopback (`runtime/deliver/`): a Mosquitto broker
//! started by the test and `mosquitto_sub` as the client, a webhook receiver that fails,
//! goes down and comes back, a restart of avaction with events left in its spool, and
//! evidence clips read back by `ffprobe`.
//! Each run renders a synthetic scene with events and plays it at real time, so that
//! outages happen mid-run. Without Mosquitto (scripts/setup-debian.sh installs it) the
//! MQTT tests are reported as skipped.

mod common;

use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
/// Started as root, Mosquitto drops to the `mosquitto` user, which cannot read the
/// test's files; keep it as the user that started it (ignored when not root).
const USER: &str = "user root\n";

/// A Mosquitto broker on `port`, persisting to `dir` (so a persistent subscriber's
/// messages survive its restart).
struct Broker {
    child: Child,
}

impl Broker {
    fn start(dir: &Path, port: u16) -> Broker {
        let persist = format!(
            "allow_anonymous true\npersistence true\npersistence_location {}/\n",
            dir.display()
        );
        Broker::with_config(dir, port, "mosquitto.conf", &persist)
    }

    /// A broker on `port` with the `settings` lines added to its config file `name`.
    fn with_config(dir: &Path, port: u16, name: &str, settings: &str) -> Broker {
        let conf = dir.join(name);
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nlog_dest none\n{USER}{settings}"),
        )
        .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child }
    }

    /// Stops it cleanly (SIGTERM: it saves its persistence file).
    fn stop(mut self) {
        // SAFETY: kill on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mosquitto_sub` on `PREFIX/#` with a persistent session (QoS 1): the lines it
/// printed (`topic payload`) so far.
struct Subscriber {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    fn start(port: u16, topic: &str, id: &str) -> Subscriber {
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
            .args(["-v", "-q", "1", "-c", "-i", id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto_sub");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                sink.lock().unwrap().push(line);
            }
        });
        Subscriber { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The `id`s of the events received on `PREFIX/events`, in order.
    fn event_ids(&self, prefix: &str) -> Vec<String> {
        let topic = format!("{prefix}/events ");
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix(&topic))
            .filter_map(|json| serde_json::from_str::<Value>(json).ok())
            .filter_map(|v| v["id"].as_str().map(String::from))
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The event ids a run wrote to its `jsonl:` sink, in order.
fn jsonl_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "event")
        .filter_map(|v| v["id"].as_str().map(String::from))
        .collect()
}

/// Waits until `got()` holds all of `want` (deduplicated), at most `within`.
fn wait_for(want: &[String], within: Duration, got: impl Fn() -> Vec<String>) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let have = got();
        let seen: HashSet<&String> = have.iter().collect();
        if want.iter().all(|w| seen.contains(w)) || Instant::now() >= deadline {
            return have;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks `got` against `want`: nothing lost, order kept; returns the duplicates.
fn same_events(want: &[String], got: &[String]) -> usize {
    let mut seen = HashSet::new();
    let firsts: Vec<&String> = got.iter().filter(|id| seen.insert(*id)).collect();
    let want: Vec<&String> = want.iter().collect();
    assert_eq!(firsts, want, "events lost or out of order");
    got.len() - firsts.len()
}

fn skip_without_mosquitto() -> bool {
    let missing = !Path::new(MOSQUITTO).exists()
        || Command::new("mosquitto_sub")
            .arg("--help")
            .output()
            .is_err();
    if missing {
        eprintln!("skipped: mosquitto / mosquitto_sub not installed (scripts/setup-debian.sh installs them)");
    }
    missing
}

#[test]
fn mqtt_events_survive_a_broker_outage_in_order() {
    if skip_without_mosquitto() {
        return;
    }
    let dir = common::temp_dir("mqtt-outage");
    let media = common::scene(&dir, 24);
    let port = common::free_port();
    let broker = Broker::start(&dir, port);
    let sub = Subscriber::start(port, "box/#", "avaction-test-outage");
    std::thread::sleep(Duration::from_millis(300));
    let jsonl = dir.join("events.jsonl");
    let mut child = common::avaction_command(&[
        "run",
        "--model",
        "cavnet-small",
        "--video",
        media.to_str().unwrap(),
        "--realtime",
        "--events-only",
        "--json",
        "--stats",
        "--log",
        "info",
        "--sink",
        &format!("mqtt://127.0.0.1:{port}/box"),
        "--sink",
        &format!("jsonl:{}", jsonl.display()),
        "--state-dir",
        dir.join("state").to_str().unwrap(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("run avaction");
    let mut stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).ok();
        s
    });
    // Availability while running.
    let online = wait_for(
        &["box/availability online".to_string()],
        Duration::from_secs(15),
        || sub.lines(),
    );
    assert!(
        online.iter().any(|l| l == "box/availability online"),
        "{online:?}"
    );
    // The broker goes away for 8 s mid-run.
    std::thread::sleep(Duration::from_secs(6));
    let before = sub.event_ids("box").len();
    broker.stop();
    std::thread::sleep(Duration::from_secs(8));
    let during = jsonl_ids(&jsonl).len();
    let _broker = Broker::start(&dir, port);
    let status = child.wait().expect("wait");
    let log = log.join().unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{log}");
    let want = jsonl_ids(&jsonl);
    assert!(want.len() >= 6, "too few events in the scene: {want:?}");
    assert!(
        during > before,
        "no event happened during the outage: {before} {during}"
    );
    let got = wait_for(&want, Duration::from_secs(20), || sub.event_ids("box"));
    let duplicates = same_events(&want, &got);
    assert!(duplicates <= 1, "{duplicates} duplicates: {got:?}");
    assert!(log.contains("connected again"), "{log}");
    let lines = sub.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("box/state/") && l.ends_with(" ON")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("box/health {")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .rev()
            .find(|l| l.starts_with("box/availability"))
            .is_some_and(|l| l.ends_with("offline")),
        "a clean stop says offline: {lines:?}"
    );
    let spooled = log
        .lines()
        .find_map(|l| l.split("connected again; ").nth(1))
        .unwrap_or("?");
    eprintln!(
        "mqtt outage 8 s: {} events in all, {} during the outage; at reconnect: {spooled}; delivered {}, lost 0, duplicates {duplicates}",
        want.len(),
        during - before,
        got.len()
    );
}

#[test]
fn the_broker_says_offline_when_avaction_dies() {
    if skip_without_mosquitto() {
        return;
    }
    let dir = common::temp_dir("mqtt-will");
    let port = common::free_port();
    let _broker = Broker::start(&dir, port);
    let sub = Subscriber::start(port, "will/availability", "avaction-test-will");
    let mut child = common::avaction_command(&[
        "run",
        "--video",
        "test:ball",
        "--audio",
        "none",
        "--sink",
        &format!("mqtt://127.0.0.1:{port}/will"),
        "--state-dir",
        dir.join("state").to_str().unwrap(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("run avaction");
    let lines = wait_for(
        &["will/availability online".into()],
        Duration::from_secs(15),
        || sub.lines(),
    );
    assert!(
        lines.contains(&"will/availability online".to_string()),
        "{lines:?}"
    );
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    // Keep-alive 5 s: the broker gives up on the client after 1.5x that.
    let lines = wait_for(
        &["will/availability offline".into()],
        Duration::from_secs(15),
        || sub.lines(),
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("will/availability offline"),
        "{lines:?}"
    );
}

#[test]
fn events_spooled_before_a_crash_are_sent_at_the_next_start() {
    if skip_without_mosquitto() {
        return;
    }
    let dir = common::temp_dir("mqtt-restart");
    let media = common::scene(&dir, 12);
    let port = common::free_port(); // no broker yet: everything spools
    let state = dir.join("state");
    let jsonl = dir.join("events.jsonl");
    let sink = format!("mqtt://127.0.0.1:{port}/restart");
    let mut child = common::avaction_command(&[
        "run",
        "--model",
        "cavnet-small",
        "--video",
        media.to_str().unwrap(),
        "--realtime",
        "--events-only",
        "--sink",
        &sink,
        "--sink",
        &format!("jsonl:{}", jsonl.display()),
        "--state-dir",
        state.to_str().unwrap(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("run avaction");
    let deadline = Instant::now() + Duration::from_secs(30);
    while jsonl_ids(&jsonl).len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let want = jsonl_ids(&jsonl);
    assert!(want.len() >= 4, "{want:?}");
    let spooled = std::fs::read_dir(state.join("spool"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(spooled, 1, "one spool folder");

    let _broker = Broker::start(&dir, port);
    let sub = Subscriber::start(port, "restart/#", "avaction-test-restart");
    std::thread::sleep(Duration::from_millis(300));
    let run = common::avaction(
        &[
            "run",
            "--video",
            "test:ball",
            "--audio",
            "none",
            "--duration",
            "4",
            "--sink",
            &sink,
            "--state-dir",
            state.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let got = wait_for(&want, Duration::from_secs(10), || sub.event_ids("restart"));
    let first_run: Vec<String> = got.iter().filter(|id| want.contains(id)).cloned().collect();
    same_events(&want, &first_run);
    eprintln!(
        "restart: {} events spooled by the killed run, all delivered by the next",
        want.len()
    );
}

/// A webhook receiver: answers 500 to the first `fail_first` requests, stops listening
/// from `down_at` for `down_for`, then accepts again; records the bodies it accepted.
fn receiver(
    port: u16,
    fail_first: usize,
    down_at: Duration,
    down_for: Duration,
) -> (Arc<Mutex<Vec<String>>>, Arc<Mutex<usize>>) {
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(Mutex::new(0usize));
    let (acc, req) = (accepted.clone(), requests.clone());
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut was_down = false;
        loop {
            if !was_down && started.elapsed() >= down_at {
                was_down = true;
                std::thread::sleep(down_for);
            }
            let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
            listener.set_nonblocking(true).unwrap();
            while was_down || started.elapsed() < down_at {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                serve(stream, fail_first, &acc, &req);
            }
        }
    });
    (accepted, requests)
}

/// Reads one request (headers, then Content-Length bytes of body) and answers it.
fn serve(
    stream: std::net::TcpStream,
    fail_first: usize,
    acc: &Mutex<Vec<String>>,
    req: &Mutex<usize>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0usize;
    let mut auth = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("authorization:") {
            auth = line["authorization:".len()..].trim().to_string();
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let n = {
        let mut r = req.lock().unwrap();
        *r += 1;
        *r
    };
    let ok = n > fail_first && auth == "Bearer s3cret";
    if ok {
        acc.lock()
            .unwrap()
            .push(String::from_utf8_lossy(&body).into());
    }
    let status = if ok {
        "200 OK"
    } else {
        "500 Internal Server Error"
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn webhook_events_survive_errors_and_an_outage() {
    let dir = common::temp_dir("webhook");
    let media = common::scene(&dir, 20);
    let port = common::free_port();
    let (accepted, requests) = receiver(port, 3, Duration::from_secs(6), Duration::from_secs(6));
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let jsonl = dir.join("events.jsonl");
    let run = common::avaction(
        &[
            "run",
            "--model",
            "cavnet-small",
            "--video",
            media.to_str().unwrap(),
            "--realtime",
            "--events-only",
            "--sink",
            &format!(
                "http://127.0.0.1:{port}/hook?token_file={}&timeout_s=2",
                token.display()
            ),
            "--sink",
            &format!("jsonl:{}", jsonl.display()),
            "--state-dir",
            dir.join("state").to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let want = jsonl_ids(&jsonl);
    assert!(want.len() >= 4, "{want:?}");
    let got = wait_for(&want, Duration::from_secs(5), || {
        accepted
            .lock()
            .unwrap()
            .iter()
            .filter_map(|b| serde_json::from_str::<Value>(b).ok())
            .filter_map(|v| v["id"].as_str().map(String::from))
            .collect()
    });
    // What did not make it before exit stays in the spool and goes out at the next
    // start; this run is long enough to deliver everything.
    let duplicates = same_events(&want, &got);
    assert_eq!(duplicates, 0, "{got:?}");
    let n = *requests.lock().unwrap();
    assert!(
        n > want.len(),
        "the first requests failed and were retried: {n}"
    );
    eprintln!(
        "webhook: {} events, {n} requests (3 refused, 6 s down), all delivered once",
        want.len()
    );
}

/// A CA and a server certificate for 127.0.0.1, made by `openssl`; returns the CA path.
fn certificates(dir: &Path) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=avaction test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    dir.join("ca.pem")
}

#[test]
fn mqtts_with_a_password_delivers_and_a_wrong_password_keeps_the_spool() {
    if skip_without_mosquitto() {
        return;
    }
    let dir = common::temp_dir("mqtts");
    let ca = certificates(&dir);
    let media = common::scene(&dir, 10);
    let out = Command::new("mosquitto_passwd")
        .args([
            "-b",
            "-c",
            dir.join("passwd").to_str().unwrap(),
            "bob",
            "s3cret",
        ])
        .output()
        .expect("mosquitto_passwd");
    assert!(out.status.success());
    let port = common::free_port();
    let tls = format!(
        "allow_anonymous false\npassword_file {d}/passwd\n\
         cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
        d = dir.display()
    );
    let _broker = Broker::with_config(&dir, port, "tls.conf", &tls);
    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "tls/events",
            "-q",
            "1",
        ])
        .args([
            "--cafile",
            ca.to_str().unwrap(),
            "-u",
            "bob",
            "-P",
            "s3cret",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    let out = sub.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(|l| l.ok()) {
                lines.lock().unwrap().push(l);
            }
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    let password = dir.join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    // Real time, so that the connection is up long before the end (a run that ends
    // first leaves its events for the next start: tested above).
    let run_with = |name: &str, password: &Path| {
        let jsonl = dir.join(format!("{name}.jsonl"));
        let run = common::avaction(
            &[
                "run",
                "--realtime",
                "--model",
                "cavnet-small",
                "--video",
                media.to_str().unwrap(),
                "--events-only",
                "--sink",
                &format!(
                    "mqtts://bob@127.0.0.1:{port}/tls?ca={}&password_file={}",
                    ca.display(),
                    password.display()
                ),
                "--sink",
                &format!("jsonl:{}", jsonl.display()),
                "--state-dir",
                dir.join(format!("state-{name}")).to_str().unwrap(),
                "--stats",
            ],
            Duration::from_secs(60),
        );
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        (jsonl_ids(&jsonl), run.stderr)
    };
    let (want, _) = run_with("good", &password);
    assert!(!want.is_empty());
    let got = wait_for(&want, Duration::from_secs(10), || {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["id"].as_str().map(String::from))
            .collect()
    });
    same_events(&want, &got);

    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "nope\n").unwrap();
    let (want, stderr) = run_with("wrong", &wrong);
    assert!(
        stderr.contains(&format!("{} waiting in the spool", want.len())),
        "{stderr}"
    );
    assert!(
        !stderr.contains("nope"),
        "the password is never printed: {stderr}"
    );
    let _ = sub.kill();
    let _ = sub.wait();
}

// ---------------------------------------------------------------------------------------
// Evidence clips (`runtime/deliver/clips/`), checked by an independent reader: for the
// scene, every onset gets a clip that `ffprobe` (Debian ffmpeg, installed by
// scripts/setup-debian.sh) reads as one video and one audio stream, lasting the
// pre-roll plus the post-roll, with a sidecar whose event time lies inside the clip and
// whose SHA-256 is the model file's. Run once decoded as fast as possible (VP8 in WebM)
// and once at real time, as a live source is (H.264 in Matroska through openh264enc
// where GStreamer has it, with a label filter). Without ffprobe the test is reported as
// skipped.

const PRE: f64 = 2.0;
const POST: f64 = 1.5;
/// Keyframes come every second: a clip may start up to a second before its pre-roll.
const KEYFRAME_SLACK: f64 = 1.05;

fn has_command(name: &str) -> bool {
    Command::new(name).arg("-version").output().is_ok()
}

fn has_element(name: &str) -> bool {
    Command::new("gst-inspect-1.0")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `ffprobe` of a file: (codec types, format duration in seconds).
fn probe(path: &Path) -> (Vec<String>, f64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let types = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap_or("").to_string())
        .collect();
    let duration = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (types, duration)
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Onsets printed by `run --json`: (id-less) label and time.
fn onsets(stdout: &str) -> Vec<(String, f64)> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "event" && v["kind"] == "onset")
        .map(|v| {
            (
                v["label"].as_str().unwrap_or("").to_string(),
                v["time_s"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect()
}

/// Where the media lies on the runtime timeline: the first window's start and the end
/// record's end of the last frame.
fn bounds(stdout: &str) -> (f64, f64) {
    let records: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let first = records
        .iter()
        .find(|v| v["type"] == "prediction")
        .and_then(|v| v["start_s"].as_f64())
        .expect("a prediction");
    let end = records
        .iter()
        .find(|v| v["type"] == "end")
        .and_then(|v| v["media_end_s"].as_f64())
        .expect("an end record");
    (first, end)
}

fn sidecars(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut found: Vec<(PathBuf, Value)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .map(|p| {
                    let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                        .expect("sidecar is JSON");
                    (p, v)
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Checks every clip in `dir` against its sidecar and ffprobe; returns the labels.
fn check_clips(
    dir: &Path,
    (media_start, media_end): (f64, f64),
    extension: &str,
    model_sha: &str,
) -> Vec<String> {
    let mut labels = Vec::new();
    for (path, side) in sidecars(dir) {
        let clip = dir.join(side["clip"].as_str().expect("clip name"));
        assert_eq!(
            clip.extension().and_then(|e| e.to_str()),
            Some(extension),
            "{}",
            clip.display()
        );
        let (streams, duration) = probe(&clip);
        assert!(
            streams.contains(&"video".to_string()) && streams.contains(&"audio".to_string()),
            "{}: streams {streams:?}",
            clip.display()
        );
        let c = &side["capture"];
        let event_s = side["event"]["time_s"].as_f64().unwrap();
        let (start, end) = (c["start_s"].as_f64().unwrap(), c["end_s"].as_f64().unwrap());
        assert!(
            start <= event_s && event_s <= end,
            "{}: event at {event_s} s outside the clip {start}..{end} s",
            path.display()
        );
        // Pre-roll and post-roll are whole unless the media starts or ends inside them.
        let want_start = (event_s - PRE).max(media_start);
        let want_end = (event_s + POST).min(media_end);
        assert!(
            start <= want_start + 0.05 && start >= want_start - KEYFRAME_SLACK,
            "{}: starts at {start} s for a pre-roll from {want_start} s",
            path.display()
        );
        assert!(
            end >= want_end - 0.1,
            "{}: ends at {end} s before the post-roll's end {want_end} s",
            path.display()
        );
        assert!(
            duration >= want_end - want_start - 0.15 && duration <= end - start + 0.5,
            "{}: ffprobe says {duration} s for a clip of {start}..{end} s (asked {want_start}..{want_end})",
            clip.display()
        );
        let shas: Vec<&str> = side["model"]["sha256"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(shas.contains(&model_sha), "{}: {shas:?}", path.display());
        assert!(side["event"]["id"]
            .as_str()
            .is_some_and(|id| id.contains('-')));
        assert!(!side["scores"].as_array().unwrap().is_empty());
        assert_eq!(side["runtime"]["version"], env!("CARGO_PKG_VERSION"));
        labels.push(side["event"]["label"].as_str().unwrap().to_string());
    }
    labels
}

/// `avaction run --json` on `media` with clips of [`PRE`] + [`POST`] into `dir`.
fn run_with_clips(media: &Path, dir: &Path, extra: &[&str]) -> common::CliRun {
    let (pre, post) = (PRE.to_string(), POST.to_string());
    let mut args = vec![
        "run",
        "--model",
        "cavnet-small",
        "--video",
        media.to_str().unwrap(),
        "--json",
        "--clips",
        dir.to_str().unwrap(),
        "--clip-pre-roll",
        &pre,
        "--clip-post-roll",
        &post,
    ];
    args.extend_from_slice(extra);
    common::avaction(&args, Duration::from_secs(180))
}

#[test]
fn every_onset_gets_a_playable_clip_with_its_sidecar() {
    if !has_command("ffprobe") {
        eprintln!("SKIPPED: ffprobe is not installed (scripts/setup-debian.sh installs ffmpeg)");
        return;
    }
    let dir = common::temp_dir("clips");
    let media = common::scene(&dir, 14);
    let model_sha = sha256(&common::repo("models/cavnet-small/model.onnx"));

    // As fast as possible: VP8 in WebM, every label.
    let fast = dir.join("fast");
    let run = run_with_clips(&media, &fast, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let events = onsets(&run.stdout);
    assert!(events.len() >= 3, "too few onsets: {events:?}");
    let labels = check_clips(&fast, bounds(&run.stdout), "webm", &model_sha);
    let mut want: Vec<String> = events.iter().map(|e| e.0.clone()).collect();
    let mut got = labels.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "one clip per onset");
    eprintln!("fast: {} onsets, {} clips", events.len(), labels.len());

    // At real time, like a live source; one label only.
    let (encoder, extension) = if has_element("openh264enc") && has_element("h264parse") {
        ("openh264enc", "mkv")
    } else {
        eprintln!("openh264enc or h264parse missing: the real-time run uses vp8enc");
        ("vp8enc", "webm")
    };
    let label = want[0].clone();
    let live = dir.join("live");
    let run = run_with_clips(
        &media,
        &live,
        &[
            "--realtime",
            "--clip-encoder",
            encoder,
            "--clip-label",
            &label,
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let start = onsets(&run.stdout)
        .into_iter()
        .filter(|e| e.0 == label)
        .count();
    let labels = check_clips(&live, bounds(&run.stdout), extension, &model_sha);
    assert!(start >= 1, "no onset of {label:?} at real time");
    assert_eq!(labels.len(), start, "one clip per onset of {label:?}");
    assert!(labels.iter().all(|l| *l == label), "{labels:?}");
    eprintln!(
        "real time ({encoder}): {start} onsets of {label:?}, {} clips",
        labels.len()
    );
}
