//! A panic in a user callback ends the run with an error naming it: `finish()` returns
//! it, nothing hangs (each run has a deadline), and the callback is not called again.

use avaction::synth::{self, SceneConfig};
use avaction::{AudioSource, ErrorKind, Runtime, VideoSource};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

#[test]
fn a_panicking_callback_ends_the_run_with_an_error() {
    let path = std::env::temp_dir().join(format!("avaction-panic-{}.mkv", std::process::id()));
    let config = SceneConfig {
        seed: 9006,
        duration_s: 3.0,
        ..SceneConfig::default()
    };
    synth::render_to_file(&config, &path).expect("media");
    let calls = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = mpsc::channel();
    {
        let (calls, path) = (calls.clone(), path.clone());
        std::thread::spawn(move || {
            let runtime = Runtime::builder()
                .model(concat!(env!("CARGO_MANIFEST_DIR"), "/models/cavnet-small"))
                .video(VideoSource::Uri(path.display().to_string()))
                .audio(AudioSource::FromVideo)
                .on_output(move |_| {
                    if calls.fetch_add(1, Ordering::SeqCst) == 2 {
                        panic!("boom in the callback");
                    }
                })
                .build()
                .expect("runtime");
            let _ = done_tx.send(runtime.finish());
        });
    }
    let result = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("finish() returned within 60 s (no hang)");
    let e = result.expect_err("the panic ends the run with an error");
    assert_eq!(e.kind(), ErrorKind::Stopped);
    assert!(
        e.message().contains("on_output callback panicked") && e.message().contains("boom"),
        "{e}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "not called again after the panic"
    );
    std::fs::remove_file(&path).ok();
}
