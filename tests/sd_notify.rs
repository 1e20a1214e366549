//! systemd's notification protocol: the test listens on a `NOTIFY_SOCKET` datagram
//! socket and sees READY=1 once labels flow, WATCHDOG=1 pings that stop while the video
//! source is lost and reconnecting (fault injection: `identity error-after`) and resume
//! once it is back, STATUS= with the health, and STOPPING=1 at the end.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn ready_watchdog_and_status_follow_the_health() {
    let dir = common::temp_dir("sd-notify");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut child = common::avaction_command(&[
        "run",
        "--model",
        "models/mov-small",
        "--video",
        "gst:videotestsrc is-live=true pattern=ball ! identity error-after=100",
        "--audio",
        "none",
        "--duration",
        "9",
    ])
    .env("NOTIFY_SOCKET", &path)
    .env("WATCHDOG_USEC", "400000") // a ping every 0.2 s
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn avaction");
    let started = Instant::now();
    let mut messages: Vec<(f64, String)> = Vec::new();
    let mut buf = [0u8; 4096];
    while child.try_wait().expect("wait").is_none() {
        assert!(started.elapsed() < Duration::from_secs(60), "the run hung");
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            messages.push((started.elapsed().as_secs_f64(), text));
        }
    }
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push((
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&buf[..n]).into(),
        ));
    }
    let has = |what: &str| messages.iter().any(|(_, m)| m.contains(what));
    assert!(has("READY=1"), "{messages:?}");
    assert!(has("STATUS=reconnecting"), "{messages:?}");
    assert!(has("STOPPING=1"), "{messages:?}");
    let pings: Vec<f64> = messages
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    let lost = messages
        .iter()
        .find(|(_, m)| m.contains("STATUS=reconnecting"))
        .map(|(t, _)| *t)
        .expect("reconnecting");
    let (before, after) = (
        pings.iter().filter(|t| **t < lost).count(),
        pings.iter().filter(|t| **t > lost).count(),
    );
    let gap = pings.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    println!(
        "{} pings ({before} before the loss at {lost:.2} s, {after} after), longest gap {gap:.2} s",
        pings.len()
    );
    assert!(
        before >= 5 && after >= 5,
        "pings before and after the loss: {messages:?}"
    );
    assert!(
        gap >= 0.45,
        "pings stop while the source is lost: longest gap {gap:.2} s"
    );
}
