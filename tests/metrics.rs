//! `--metrics ADDR` (`runtime/metrics/`): `/metrics` scraped during a run on a live
//! RTSP camera with audio passes `promtool check metrics` (Debian's `prometheus`
//! package) and carries the run's numbers; `/health` answers 200 while running, 503
//! once the camera stalls (the server stopped with SIGSTOP: the reliability work's
//! fault injection), and 200 again after it is back.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `GET path` on loopback: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Polls `/health` until it answers `status`, at most `within`.
fn health_becomes(port: u16, status: u16, within: Duration) -> (u16, String) {
    let deadline = Instant::now() + within;
    let mut last = (0, String::new());
    while Instant::now() < deadline {
        if let Some(r) = get(port, "/health") {
            if r.0 == status {
                return r;
            }
            last = r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

fn promtool(text: &str) -> Option<(bool, String)> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// The value of an unlabelled sample `name` in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn metrics_validate_and_health_follows_the_camera() {
    let rtsp_port = common::free_port();
    let server = common::RtspServer::start(rtsp_port);
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = common::avaction_command(&[
        "run",
        "--model",
        "mov-small",
        "--video",
        &format!("rtsp://127.0.0.1:{rtsp_port}/av"),
        "--events-only",
        "--metrics",
        &addr,
        "--duration",
        "40",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("run avaction");

    let (status, body) = health_becomes(port, 200, Duration::from_secs(20));
    assert_eq!(status, 200, "never running: {body}");
    assert!(body.contains(r#""state":"running""#), "{body}");
    std::thread::sleep(Duration::from_secs(2));
    let (status, text) = get(port, "/metrics").expect("scrape /metrics");
    assert_eq!(status, 200);
    match promtool(&text) {
        Some((ok, report)) => assert!(ok, "promtool check metrics: {report}\n{text}"),
        None => panic!("promtool not found (scripts/setup-debian.sh installs Debian's prometheus)"),
    }
    for name in [
        "avaction_frames_total",
        "avaction_windows_total",
        "avaction_latency_seconds_count",
        "avaction_audio_samples_total",
    ] {
        assert!(
            sample(&text, name).is_some_and(|v| v > 0.0),
            "{name} missing or zero:\n{text}"
        );
    }
    assert!(
        text.contains("avaction_backend_info{backend=\"tract\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("avaction_state{state=\"running\"} 1"),
        "{text}"
    );
    assert!(text.contains("avaction_inference_seconds{stage="), "{text}");

    // The camera stalls: 503, with the reason.
    server.signal("-STOP");
    let (status, body) = health_becomes(port, 503, Duration::from_secs(10));
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("reconnecting") || body.contains("stalled") || body.contains("lost"),
        "{body}"
    );
    let (_, text) = get(port, "/metrics").expect("scrape");
    assert!(
        text.contains("avaction_state{state=\"running\"} 0"),
        "{text}"
    );
    server.signal("-CONT");
    let (status, body) = health_becomes(port, 200, Duration::from_secs(40));
    assert_eq!(status, 200, "not back: {body}");
    let (_, text) = get(port, "/metrics").expect("scrape");
    assert!(
        sample(&text, "avaction_reconnects_total").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert_eq!(get(port, "/nothing").map(|r| r.0), Some(404));

    let _ = child.kill();
    let _ = child.wait();
    drop(server);
    assert!(
        get(port, "/health").is_none(),
        "the endpoint ends with the process"
    );
}
