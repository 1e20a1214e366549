//! Field faults, started by the tests themselves: a video source that errors or stalls
//! mid-run (GStreamer `identity`), a loopback RTSP camera with audio that is killed,
//! frozen (SIGSTOP) and restarted, a slow reader, injected worker panics, and a
//! video-only run of an audio-optional model. Every run has a deadline; the measured
//! detection and recovery times are printed (`--nocapture`) for the fault table.

mod common;

use avaction::health::{Reason, State};
use avaction::synth::{self, SceneConfig};
use avaction::{AudioSource, ErrorKind, Output, Policy, Runtime, RuntimeBuilder, VideoSource};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn model(name: &str) -> String {
    common::repo(&format!("models/{name}"))
        .display()
        .to_string()
}

/// Supervision fast enough for tests.
fn quick() -> Policy {
    Policy {
        stall_after: Duration::from_millis(1500),
        start_grace: Duration::from_secs(3),
        first_retry: Duration::from_millis(200),
        max_retry: Duration::from_secs(2),
        ..Policy::default()
    }
}

/// One output and when it came, seconds after the runtime was built.
struct Seen {
    at: f64,
    output: Output,
}

/// Runs `builder` for `seconds`, calling `act(t)` about every 50 ms with the time since
/// the start (faults are injected there); returns the outputs, the stats and how long
/// `stop()` took.
fn run_for(
    builder: RuntimeBuilder,
    seconds: f64,
    mut act: impl FnMut(f64) + Send + 'static,
) -> (Vec<Seen>, avaction::Stats, Duration) {
    let (tx, rx) = mpsc::channel();
    let deadline = Duration::from_secs_f64(seconds + 60.0);
    let worker = std::thread::spawn(move || {
        let mut runtime = builder.build().expect("runtime");
        let started = Instant::now();
        let mut seen = Vec::new();
        while started.elapsed().as_secs_f64() < seconds {
            act(started.elapsed().as_secs_f64());
            match runtime.recv_timeout(Duration::from_millis(50)) {
                Ok(output) => seen.push(Seen {
                    at: started.elapsed().as_secs_f64(),
                    output,
                }),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let t0 = Instant::now();
        runtime.stop();
        let stopped_in = t0.elapsed();
        assert!(runtime.error().is_none(), "{:?}", runtime.error());
        let _ = tx.send((seen, runtime.stats(), stopped_in));
    });
    match rx.recv_timeout(deadline) {
        // joined so that `act` (and what it owns, e.g. an RTSP server process killed on
        // drop) is dropped before the test returns and the process exits
        Ok(v) => {
            let _ = worker.join();
            v
        }
        Err(_) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("the run did not end within {deadline:?} (hang)"),
        },
    }
}

/// The video source's state at each health change: `(time, state, reasons)`.
fn source_states(seen: &[Seen], index: usize) -> Vec<(f64, State, Vec<Reason>)> {
    let mut states: Vec<(f64, State, Vec<Reason>)> = Vec::new();
    for s in seen {
        if let Output::Health(h) = &s.output {
            if let Some(src) = h.sources.get(index) {
                if states
                    .last()
                    .is_none_or(|l| l.1 != src.state || l.2 != src.reasons)
                {
                    states.push((s.at, src.state, src.reasons.clone()));
                }
            }
        }
    }
    states
}

/// The first time at or after `from` the source is in `state`.
fn first(states: &[(f64, State, Vec<Reason>)], state: State, from: f64) -> Option<f64> {
    states
        .iter()
        .find(|(t, s, _)| *t >= from && *s == state)
        .map(|x| x.0)
}

/// The first time the source is in `state` for `reason`.
fn when(states: &[(f64, State, Vec<Reason>)], state: State, reason: Reason) -> Option<f64> {
    states
        .iter()
        .find(|(_, s, r)| *s == state && r.contains(&reason))
        .map(|x| x.0)
}

/// A video-only run of mov-small on a `gst:` pipeline description for `seconds`.
fn run_pipeline(
    description: &str,
    policy: Policy,
    seconds: f64,
) -> (Vec<Seen>, avaction::Stats, Duration) {
    let builder = Runtime::builder()
        .model(model("mov-small"))
        .video(VideoSource::Pipeline(description.into()))
        .audio(AudioSource::None)
        .supervision(policy);
    run_for(builder, seconds, |_| {})
}

fn predictions_between(seen: &[Seen], from: f64, to: f64) -> usize {
    seen.iter()
        .filter(|s| s.at >= from && s.at < to && matches!(s.output, Output::Prediction(_)))
        .count()
}

#[test]
fn a_video_source_that_errors_is_reopened_and_labels_go_on() {
    let (seen, stats, stopped_in) = run_pipeline(
        "videotestsrc is-live=true pattern=ball ! identity error-after=75",
        quick(),
        8.0,
    );
    let states = source_states(&seen, 0);
    let lost = when(&states, State::Reconnecting, Reason::Lost)
        .unwrap_or_else(|| panic!("no reconnect after the bus error: {states:?}"));
    let back = first(&states, State::Running, lost)
        .unwrap_or_else(|| panic!("never running again: {states:?}"));
    println!(
        "bus error: detected at {lost:.2} s (75 frames = 3.0 s after the start), running again {:.2} s later; stop took {stopped_in:?}",
        back - lost
    );
    assert!(stats.reconnects >= 1 && stats.video_gaps >= 1, "{stats:?}");
    assert!(
        predictions_between(&seen, back, 8.0) > 5,
        "labels go on after the reconnect"
    );
    assert!(
        stopped_in < Duration::from_secs(3),
        "stop took {stopped_in:?}"
    );
    // The video-only run of an audio-optional model says so.
    assert!(seen.iter().any(
        |s| matches!(&s.output, Output::Health(h) if h.reasons.contains(&Reason::AudioMissing))
    ));
}

#[test]
fn a_stalled_video_source_is_reopened() {
    // identity sleeps 2.5 s on every buffer: a frame now and then, no error (the
    // pipeline plays once the first frame is through).
    let (seen, stats, stopped_in) = run_pipeline(
        "videotestsrc is-live=true ! identity sleep-time=2500000",
        quick(),
        8.0,
    );
    let states = source_states(&seen, 0);
    let stalled = when(&states, State::Reconnecting, Reason::Stalled)
        .unwrap_or_else(|| panic!("no stall reported: {states:?}"));
    println!(
        "stall (a frame every 2.5 s): reported at {:.2} s (stall after 1.5 s); {} reopenings in 8 s; stop took {stopped_in:?}",
        stalled, stats.reconnects
    );
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert!(
        stopped_in < Duration::from_secs(3),
        "stop took {stopped_in:?}"
    );
}

#[test]
fn an_rtsp_camera_with_audio_survives_a_stall_and_a_restart() {
    let port = common::free_port();
    let mut server = Some(common::RtspServer::start(port));
    let builder = Runtime::builder()
        .model(model("mov-small"))
        .video(VideoSource::Uri(format!("rtsp://127.0.0.1:{port}/av")))
        .audio(AudioSource::FromVideo)
        .supervision(quick());
    // 4 s: freeze the server (a stall: no frame, no error); 7 s: thaw it.
    // 13 s: kill it (a loss); 15 s: start a new one on the same port.
    let mut step = 0;
    let (seen, stats, stopped_in) = run_for(builder, 24.0, move |t| {
        let at = [4.0, 7.0, 13.0, 15.0];
        if step < at.len() && t >= at[step] {
            match step {
                0 => server.as_ref().expect("server").signal("-STOP"),
                1 => server.as_ref().expect("server").signal("-CONT"),
                2 => server = None,
                _ => server = Some(common::RtspServer::start(port)),
            }
            step += 1;
        }
    });
    let states = source_states(&seen, 0);
    println!("rtsp health: {states:?}");
    let stalled = states
        .iter()
        .find(|(t, s, _)| *t >= 4.0 && *s == State::Reconnecting)
        .map(|x| x.0)
        .unwrap_or_else(|| panic!("the frozen server was not noticed: {states:?}"));
    let back1 = first(&states, State::Running, stalled).expect("running after the thaw");
    let lost = states
        .iter()
        .find(|(t, s, _)| *t >= 13.0 && *s == State::Reconnecting)
        .map(|x| x.0)
        .unwrap_or_else(|| panic!("the killed server was not noticed: {states:?}"));
    let back2 = first(&states, State::Running, lost).expect("running after the restart");
    println!(
        "rtsp frozen at 4.0 s: reconnecting at {stalled:.2} s, running at {back1:.2} s (thawed at 7.0 s); \
         killed at 13.0 s: reconnecting at {lost:.2} s, running at {back2:.2} s (restarted at 15.0 s); stop {stopped_in:?}"
    );
    assert!(stalled - 4.0 < 3.0 && lost - 13.0 < 3.0);
    assert!(
        back2 - 15.0 < 6.0,
        "back {:.2} s after the restart",
        back2 - 15.0
    );
    assert!(stats.reconnects >= 2, "{stats:?}");
    assert!(
        stats.samples > 16_000,
        "the camera's audio track is used: {stats:?}"
    );
    assert!(predictions_between(&seen, back2, 24.0) > 5);
    // Timestamps stay monotonic across the reconnects.
    let ends: Vec<f64> = seen
        .iter()
        .filter_map(|s| match &s.output {
            Output::Prediction(p) => Some(p.end_s),
            _ => None,
        })
        .collect();
    assert!(ends.windows(2).all(|w| w[1] > w[0]), "monotonic windows");
    assert!(
        stopped_in < Duration::from_secs(3),
        "stop took {stopped_in:?}"
    );
}

fn scene(seed: u64, seconds: f64) -> std::path::PathBuf {
    let path = common::temp_dir("field").join(format!("scene-{seed}.mkv"));
    if !path.exists() {
        let config = SceneConfig {
            seed,
            duration_s: seconds,
            ..SceneConfig::default()
        };
        synth::render_to_file(&config, &path).expect("media");
    }
    path
}

/// Reads a real-time run of the scene at `path`, sleeping `per_output` after each
/// output; returns the events received and the final stats.
fn read_events(
    path: &std::path::Path,
    per_output: Duration,
) -> mpsc::Receiver<(Vec<avaction::Event>, avaction::Result<avaction::Stats>)> {
    let builder = Runtime::builder()
        .model(model("mov-small"))
        .video(VideoSource::Uri(path.display().to_string()))
        .audio(AudioSource::FromVideo)
        .realtime(true) // delivered like a live source: a slow reader loses outputs
        .output_capacity(2);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = builder.build().expect("runtime");
        let mut events = Vec::new();
        for output in runtime.outputs() {
            std::thread::sleep(per_output);
            if let Output::Event(e) = output {
                events.push(e);
            }
        }
        let _ = tx.send((events, runtime.finish()));
    });
    rx
}

#[test]
fn a_slow_reader_loses_predictions_but_no_event() {
    let path = scene(9101, 20.0);
    // Both at once, on the same scene: ~7 outputs/s read for ~12 windows/s, and all.
    let slow = read_events(&path, Duration::from_millis(150));
    let fast = read_events(&path, Duration::ZERO);
    let limit = Duration::from_secs(120);
    let (events, stats) = slow.recv_timeout(limit).expect("the run ends (no hang)");
    let (fast_events, fast_stats) = fast.recv_timeout(limit).expect("the run ends (no hang)");
    let (stats, fast_stats) = (stats.expect("finish"), fast_stats.expect("finish"));
    println!(
        "slow reader: {} events received of {} emitted ({} for the fast reader), {} predictions dropped",
        events.len(),
        stats.events,
        fast_events.len(),
        stats.outputs_dropped
    );
    assert!(stats.outputs_dropped > 10, "the reader was slow: {stats:?}");
    assert!(stats.events > 0);
    assert_eq!(events.len() as u64, stats.events, "no event lost");
    let onsets = events
        .iter()
        .filter(|e| e.kind == avaction::EventKind::Onset)
        .count();
    assert_eq!(onsets * 2, events.len(), "every onset has its offset");
    // Where both runs saw every frame and ran every window, they label alike.
    let complete = |s: &avaction::Stats| s.frames_dropped == 0 && s.windows_skipped == 0;
    if complete(&stats) && complete(&fast_stats) {
        // Times differ by the runs' start-up (each has its own timeline): compare the
        // sequences of labels and kinds.
        let key = |e: &avaction::Event| (e.label.clone(), e.kind);
        let slow_keys: Vec<_> = events.iter().map(key).collect();
        let fast_keys: Vec<_> = fast_events.iter().map(key).collect();
        assert_eq!(
            slow_keys, fast_keys,
            "the slow reader gets the fast reader's events"
        );
    } else {
        println!("a run dropped frames or skipped windows (machine busy): sequences not compared");
    }
}

#[test]
fn injected_worker_panics_end_the_run_with_an_error() {
    let path = scene(9102, 3.0);
    for worker in ["window", "inference"] {
        let (tx, rx) = mpsc::channel();
        let path = path.clone();
        std::thread::spawn(move || {
            let runtime = Runtime::builder()
                .model(model("cavnet-small"))
                .video(VideoSource::Uri(path.display().to_string()))
                .audio(AudioSource::FromVideo)
                .inject_panic(worker)
                .build()
                .expect("runtime");
            let outputs = runtime.outputs().count();
            let _ = tx.send((outputs, runtime.finish()));
        });
        let (_, result) = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{worker}: the run hung after the panic"));
        let e = result.expect_err("the panic ends the run");
        assert_eq!(e.kind(), ErrorKind::Stopped);
        assert!(
            e.message()
                .contains(&format!("the {worker} thread panicked"))
                && e.message().contains("injected fault"),
            "{e}"
        );
    }
}

#[test]
fn an_audio_optional_model_labels_a_file_without_audio() {
    let path = scene(9103, 6.0);
    let runtime = Runtime::builder()
        .model(model("mov-small"))
        .video(VideoSource::Uri(path.display().to_string()))
        .audio(AudioSource::None)
        .build()
        .expect("mov-small runs video-only");
    let mut predictions = 0;
    let mut end = None;
    for output in runtime.outputs() {
        match output {
            Output::Prediction(p) => {
                predictions += 1;
                assert!(p.audio_missing > 0, "the audio is marked missing");
            }
            Output::End(e) => end = Some(e),
            _ => {}
        }
    }
    let health = runtime.health();
    let stats = runtime.finish().expect("finish");
    assert!(predictions > 30, "{predictions}");
    assert!(end.is_some_and(|e| e.complete));
    assert!(health.reasons.contains(&Reason::AudioMissing), "{health:?}");
    assert!(stats.degraded.is_some_and(|d| d.contains("video-only")));
}

/// `--duration` and Ctrl-C end the process within a second or two, even while the
/// source is blocked in its streaming thread (identity sleeps 3 s per frame).
#[test]
fn duration_and_ctrl_c_end_the_process_promptly_whatever_the_source_does() {
    let blocked = "gst:videotestsrc is-live=true ! identity sleep-time=3000000";
    let run = common::avaction(
        &[
            "run",
            "--model",
            "models/mov-small",
            "--video",
            blocked,
            "--audio",
            "none",
            "--duration",
            "4",
            "--json",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // Start-up waits for the first frame (6 s: videorate lets a frame out when the next
    // one comes), then 4 s of run, then the stop (at most 1.5 s for the sources).
    println!(
        "--duration 4 with a blocked source: exited after {:?}",
        run.elapsed
    );
    assert!(run.elapsed < Duration::from_secs(13), "{:?}", run.elapsed);

    let mut child = common::avaction_command(&[
        "run",
        "--model",
        "models/mov-small",
        "--video",
        blocked,
        "--audio",
        "none",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn avaction");
    std::thread::sleep(Duration::from_secs(8));
    let sent = Instant::now();
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -INT");
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if sent.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("Ctrl-C did not end the run within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("Ctrl-C: exited {:?} after the signal", sent.elapsed());
    assert_eq!(code, Some(0), "a clean stop");
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
}

#[test]
fn a_frozen_picture_is_reported_not_restarted() {
    let policy = Policy {
        frozen_after: Duration::from_secs(1),
        ..quick()
    };
    let (seen, stats, _) = run_pipeline(
        "videotestsrc is-live=true pattern=solid-color foreground-color=0xff4080c0",
        policy,
        4.0,
    );
    let states = source_states(&seen, 0);
    let frozen = when(&states, State::Degraded, Reason::Frozen)
        .unwrap_or_else(|| panic!("no frozen picture reported: {states:?}"));
    println!("frozen picture: reported at {frozen:.2} s (frozen after 1 s)");
    assert_eq!(stats.reconnects, 0, "a frozen picture is not restarted");
    assert!(predictions_between(&seen, 0.0, 4.0) > 10, "labels go on");
}

#[test]
fn a_camera_that_never_comes_back_fails_the_run_after_the_last_attempt() {
    let port = common::free_port();
    let server = common::RtspServer::start(port);
    let policy = Policy {
        max_attempts: Some(2),
        ..quick()
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = Runtime::builder()
            .model(model("mov-small"))
            .video(VideoSource::Uri(format!("rtsp://127.0.0.1:{port}/av")))
            .audio(AudioSource::FromVideo)
            .supervision(policy)
            .build()
            .expect("runtime");
        std::thread::sleep(Duration::from_secs(2));
        drop(server); // gone for good
        let mut last_health = None;
        for output in runtime.outputs() {
            if let Output::Health(h) = output {
                last_health = Some(h);
            }
        }
        let _ = tx.send((last_health, runtime.finish()));
    });
    let (health, result) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the run ends after the last attempt (no hang)");
    let e = result.expect_err("a camera gone for good ends the run");
    assert_eq!(e.kind(), ErrorKind::Video);
    assert!(e.to_string().contains("gave up reconnecting"), "{e}");
    let health = health.expect("health changes were delivered");
    assert_eq!(health.sources[0].state, State::Failed, "{health:?}");
}

#[test]
fn a_non_live_pipeline_that_fails_mid_stream_ends_incomplete() {
    let runtime = Runtime::builder()
        .model(model("mov-small"))
        .video(VideoSource::Pipeline(
            "videotestsrc num-buffers=500 pattern=ball ! capsfilter caps=video/x-raw,width=160,height=120,framerate=25/1 ! identity error-after=100".into(),
        ))
        .audio(AudioSource::None)
        .build()
        .expect("runtime");
    let mut end = None;
    let mut predictions = 0;
    for output in runtime.outputs() {
        match output {
            Output::Prediction(_) => predictions += 1,
            Output::End(e) => end = Some(e),
            _ => {}
        }
    }
    let stats = runtime.finish().expect("a cut is not a failure");
    let end = end.expect("an end record");
    assert!(!end.complete, "{end:?}");
    assert!(
        end.reason.as_deref().unwrap_or_default().contains("error"),
        "{end:?}"
    );
    assert!(
        predictions > 20 && stats.frames < 500,
        "{predictions} {stats:?}"
    );
}
