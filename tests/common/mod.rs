//! Helpers shared by the integration tests: run the CLI with a deadline, make
//! temporary folders, and generate small media files with GStreamer.
#![allow(dead_code)]

use std::io::Read;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a CLI run produced.
pub struct CliRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `avaction args...` from the repo root; fails the test if it outlives `timeout`.
pub fn avaction(args: &[&str], timeout: Duration) -> CliRun {
    avaction_env(args, &[], timeout)
}

/// `avaction args...` ready to start from the repo root with stdin closed (set stdout,
/// stderr and the environment as needed).
pub fn avaction_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_avaction"));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null());
    command
}

/// Like [`avaction`] with extra environment variables.
pub fn avaction_env(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> CliRun {
    let started = Instant::now();
    let mut child = avaction_command(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn avaction");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).ok();
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).ok();
        s
    });
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if started.elapsed() > timeout {
            child.kill().ok();
            child.wait().ok();
            panic!("avaction {args:?} did not finish within {timeout:?} (hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    CliRun {
        code,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// A fresh temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("avaction-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A folder of committed test data: `tests/data/<name>`.
pub fn data_dir(name: &str) -> PathBuf {
    repo("tests/data").join(name)
}

/// Path of a file in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Decodes raw little-endian f32 values (the format of the committed goldens).
pub fn f32_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Reads a raw little-endian f32 file; panics naming the file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f32_le(&bytes)
}

/// Largest absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// Runs a gst-launch style pipeline description to completion (EOS) within 60 s.
pub fn gst_launch(description: &str) {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init().expect("gst init");
    let pipeline = gst::parse::launch(description).expect("pipeline");
    pipeline.set_state(gst::State::Playing).expect("play");
    let bus = pipeline.bus().expect("bus");
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(60),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).ok();
    match msg {
        Some(m) if m.type_() == gst::MessageType::Eos => {}
        other => panic!("pipeline {description:?} did not reach EOS: {other:?}"),
    }
}

/// The loopback RTSP server of `tests/tools/rtsp_server.py`, killed on drop.
pub struct RtspServer {
    child: Child,
}

impl RtspServer {
    /// Starts it on `port` and waits for it to listen.
    pub fn start(port: u16) -> RtspServer {
        let mut child = Command::new("/usr/bin/python3")
            .arg(repo("tests/tools/rtsp_server.py"))
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/tools/rtsp_server.py (python3-gi, gir1.2-gst-rtsp-server-1.0)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "ready", "the RTSP server did not start");
        RtspServer { child }
    }

    /// Sends `kill SIG` (e.g. `-STOP`, `-CONT`) to the server.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig}");
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The synthetic scene of seed 4 (several onsets and offsets), `seconds` long, rendered
/// into `dir/scene.mkv`.
pub fn scene(dir: &Path, seconds: u32) -> PathBuf {
    let path = dir.join("scene.mkv");
    let run = avaction(
        &[
            "synth",
            "--out",
            path.to_str().unwrap(),
            "--seed",
            "4",
            "--duration",
            &seconds.to_string(),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    path
}

/// A TCP port free on loopback now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `avaction ARGS` running in the background: its stdout lines collected as they come,
/// each stderr line handed to a callback (and kept); killed when dropped.
pub struct Running {
    pub child: Child,
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    out: Option<std::thread::JoinHandle<()>>,
    err: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    pub fn start(args: &[&str], mut on_stderr: impl FnMut(&str) + Send + 'static) -> Running {
        let mut child = avaction_command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("avaction starts");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = std::thread::spawn({
            let lines = lines.clone();
            let stdout = child.stdout.take().expect("stdout");
            move || {
                for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(l);
                }
            }
        });
        let err = std::thread::spawn({
            let stderr = child.stderr.take().expect("stderr");
            move || {
                let mut all = String::new();
                for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                    on_stderr(&l);
                    all.push_str(&l);
                    all.push('\n');
                }
                all
            }
        });
        Running {
            child,
            lines,
            out: Some(out),
            err: Some(err),
        }
    }

    /// Waits (at most `timeout`) for it to end by itself; returns (exit code, stdout
    /// lines, stderr). Kills it and fails the test past the timeout.
    pub fn finish(mut self, timeout: Duration) -> (Option<i32>, Vec<String>, String) {
        let deadline = Instant::now() + timeout;
        let code = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("avaction did not end within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        self.out
            .take()
            .expect("once")
            .join()
            .expect("stdout reader");
        let err = self
            .err
            .take()
            .expect("once")
            .join()
            .expect("stderr reader");
        let lines = self.lines.lock().unwrap().clone();
        (code, lines, err)
    }

    /// Kills it now; returns what it wrote on stderr.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.out.take().map(|t| t.join());
        self.err
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The onnxruntime library folder: `$AVACTION_ONNXRUNTIME`, else the PyPI wheel's in
/// `.venv-train` (`make byo`).
pub fn onnxruntime_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AVACTION_ONNXRUNTIME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let lib = repo(".venv-train/lib");
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/onnxruntime/capi"))
        .find(|p| p.is_dir())
}

/// Loads the onnxruntime library for this process; `false` (the test skips, saying why)
/// where there is none, except under `CI`, where a missing library fails the test.
#[cfg(feature = "onnxruntime")]
pub fn onnxruntime_loaded() -> bool {
    let Some(path) = onnxruntime_library() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have onnxruntime: `make byo` installs it in .venv-train"
        );
        println!("skipped: no onnxruntime library (set AVACTION_ONNXRUNTIME or run `make byo`)");
        return false;
    };
    avaction::backend::onnxruntime::use_library(&path).expect("the onnxruntime library loads");
    assert_eq!(avaction::backend::onnxruntime_unavailable_reason(), None);
    true
}
