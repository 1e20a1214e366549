//! The microphone lost and back: the virtual microphone's PulseAudio server is stopped
//! mid-run (`pactl exit`: the cpal stream just stops delivering), then started again.
//! The source goes reconnecting and back to running, a model that needs audio pauses
//! its labels meanwhile, and the run still ends on time. Its null-sink monitor delivers
//! digital zeros, which the health reports as a silent microphone.
//!
//! Runs only inside `tests/virtual_mic.sh` (which sets AVACTION_TEST_PULSE=1), as its
//! own test binary: it stops the server the other microphone tests use.

mod common;

use avaction::health::{Reason, State};
use avaction::{AudioSource, Output, Policy, Runtime, VideoSource};
use std::process::Command;
use std::time::{Duration, Instant};

fn sh(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "{program} {args:?}: {status:?}"
    );
}

#[test]
fn microphone_lost_and_back() {
    if std::env::var("AVACTION_TEST_PULSE").as_deref() != Ok("1") {
        println!("skipped: needs the virtual microphone (run through tests/virtual_mic.sh)");
        return;
    }
    let policy = Policy {
        stall_after: Duration::from_millis(1500),
        silent_after: Duration::from_secs(2),
        first_retry: Duration::from_millis(200),
        max_retry: Duration::from_secs(1),
        ..Policy::default()
    };
    let mut runtime = Runtime::builder()
        .model(common::repo("models/cavnet-small"))
        .video(VideoSource::TestPattern("ball".into()))
        .audio(AudioSource::DefaultMicrophone)
        .supervision(policy)
        .build()
        .expect("runtime with the virtual microphone");
    let started = Instant::now();
    let (mut killed_at, mut restarted_at) = (None, None);
    let mut states: Vec<(f64, State, Vec<Reason>)> = Vec::new();
    let mut paused = false;
    let mut predictions_after_restart = 0;
    while started.elapsed() < Duration::from_secs(18) {
        let t = started.elapsed().as_secs_f64();
        if t >= 7.0 && killed_at.is_none() {
            sh("pactl", &["exit"]);
            killed_at = Some(t);
        }
        if t >= 10.0 && restarted_at.is_none() {
            sh(
                common::repo("tests/tools/pulse_start.sh").to_str().unwrap(),
                &[],
            );
            restarted_at = Some(started.elapsed().as_secs_f64());
        }
        match runtime.recv_timeout(Duration::from_millis(50)) {
            Ok(Output::Health(h)) => {
                paused |= h.reasons.contains(&Reason::LabelsPaused);
                let mic = &h.sources[1];
                if states
                    .last()
                    .is_none_or(|l| l.1 != mic.state || l.2 != mic.reasons)
                {
                    states.push((t, mic.state, mic.reasons.clone()));
                }
            }
            Ok(Output::Prediction(_)) if restarted_at.is_some() => predictions_after_restart += 1,
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("the run ended: {e:?} {:?}", runtime.error()),
        }
    }
    let t0 = Instant::now();
    runtime.stop();
    let stopped_in = t0.elapsed();
    let stats = runtime.stats();
    println!("microphone health: {states:?}");
    let killed = killed_at.expect("killed");
    let restarted = restarted_at.expect("restarted");
    let lost = states
        .iter()
        .find(|(t, s, _)| *t >= killed && *s == State::Reconnecting)
        .map(|x| x.0)
        .unwrap_or_else(|| panic!("the loss was not noticed: {states:?}"));
    let back = states
        .iter()
        .find(|(t, s, _)| *t > lost && matches!(s, State::Running | State::Degraded))
        .map(|x| x.0)
        .unwrap_or_else(|| panic!("never back: {states:?}"));
    println!(
        "microphone: server stopped at {killed:.2} s, reconnecting at {lost:.2} s; restarted at {restarted:.2} s, delivering at {back:.2} s; stop {stopped_in:?}; {} windows paused",
        stats.windows_paused
    );
    assert!(lost - killed < 4.0, "noticed {:.2} s after", lost - killed);
    assert!(
        back - restarted < 6.0,
        "back {:.2} s after",
        back - restarted
    );
    assert!(
        states.iter().any(|s| s.2.contains(&Reason::Silent)),
        "digital zeros are reported: {states:?}"
    );
    assert!(
        paused && stats.windows_paused > 0,
        "labels paused: {stats:?}"
    );
    assert!(stats.reconnects >= 1);
    assert!(predictions_after_restart > 0, "labels resume");
    assert!(
        stopped_in < Duration::from_secs(3),
        "stop took {stopped_in:?}"
    );
    assert!(runtime.error().is_none());
}
