//! Frames captured larger than the model (manifest `[video]`) come out of the window
//! scheduler and the whole runtime at the model's size, resized and cropped in Rust.

use avaction::clock::{Nanos, VideoFrame};
use avaction::frontend::image::{ImageNormalize, Preprocess};
use avaction::infer::plan;
use avaction::model::Manifest;
use avaction::synth::{self, SceneConfig};
use avaction::window::{WindowFlow, WindowScheduler};
use avaction::{AudioSource, Output, Runtime, VideoSource};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/cavnet-small");

fn manifest_with(video: &str) -> Manifest {
    let text = std::fs::read_to_string(format!("{SHIPPED}/model.toml")).expect("manifest");
    Manifest::parse(&format!("{text}\n[video]\n{video}\n")).expect("valid manifest")
}

/// A 4:3 frame with a square moving right by 3 pixels per frame over a gradient.
fn frame(k: usize, width: usize, height: usize) -> VideoFrame {
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let inside = (x + width - 3 * k % width) % width < width / 4 && y * 3 > height;
            let base = (x * 200 / width) as u8;
            rgb.extend_from_slice(&if inside {
                [240, 40, 40]
            } else {
                [base, (y * 255 / height) as u8, 90]
            });
        }
    }
    VideoFrame {
        t_ns: Nanos::from_nanos(k as i64 * 40_000_000),
        width: width as u32,
        height: height as u32,
        rgb,
    }
}

#[test]
fn larger_frames_are_resized_and_cropped_to_the_model_size() {
    let m = manifest_with("capture = [160, 120]\nresize_to = 72\ncrop = \"center\"");
    let cfg = plan::window_config(&m);
    assert_eq!((cfg.width, cfg.height), (64, 64));
    let mut scheduler = WindowScheduler::new(cfg).expect("scheduler");
    let mut reference = Preprocess::new(
        &m.preprocess().expect("preprocess"),
        &ImageNormalize::IMAGENET,
        (64, 64),
    )
    .expect("reference");
    let frames: Vec<VideoFrame> = (0..16).map(|k| frame(k, 160, 120)).collect();
    for f in &frames {
        scheduler
            .push_frame(f)
            .expect("a 160x120 frame is accepted");
    }
    let window = scheduler
        .poll(None, true)
        .expect("a window after 16 frames");
    let model_frame = 64 * 64 * 3;
    assert_eq!(window.frames.len(), 16 * model_frame);
    let WindowFlow::Mov(flow) = &window.flow else {
        panic!("the shipped model takes MOV-encoded flow")
    };
    assert_eq!(flow.len(), 15 * model_frame);
    for (f, stored) in frames.iter().zip(window.frames.chunks_exact(model_frame)) {
        let mut expected = vec![0u8; model_frame];
        reference
            .to_rgb(&f.rgb, 160, 120, &mut expected)
            .expect("valid");
        assert_eq!(stored, &expected[..]);
    }
    // The square moves, so the flow (computed on the 64x64 frames) is not all "no motion".
    assert!(flow.iter().any(|&v| v != 128 && v != 0));

    // A frame of another size is resized too (the tables are rebuilt for it).
    scheduler
        .push_frame(&frame(16, 320, 240))
        .expect("320x240 is accepted");
    // A frame whose bytes do not match its size is an error, not a panic.
    let mut bad = frame(17, 160, 120);
    bad.rgb.truncate(1000);
    let e = scheduler.push_frame(&bad).expect_err("short frame");
    assert!(e.message().contains("1000 bytes"), "{e}");
}

#[test]
fn without_preprocessing_frames_must_have_the_model_size() {
    let text = std::fs::read_to_string(format!("{SHIPPED}/model.toml")).expect("manifest");
    let m = Manifest::parse(&text).expect("valid");
    let mut scheduler = WindowScheduler::new(plan::window_config(&m)).expect("scheduler");
    scheduler.push_frame(&frame(0, 64, 64)).expect("model size");
    let e = scheduler
        .push_frame(&frame(1, 160, 120))
        .expect_err("wrong size");
    assert!(e.message().contains("does not match"), "{e}");
}

#[test]
fn the_runtime_captures_at_the_manifest_size_and_runs_the_model() {
    let dir = std::env::temp_dir().join(format!("avaction-window-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let media = dir.join("scene.mkv");
    let config = SceneConfig {
        seed: 9004,
        duration_s: 2.0,
        ..SceneConfig::default()
    };
    synth::render_to_file(&config, &media).expect("media");
    // The shipped bundle, capturing at 160x120 and cropping the centre of a 72 px short side.
    // (paths in a manifest stay inside its bundle: the graph and labels are copied in)
    let text = std::fs::read_to_string(format!("{SHIPPED}/model.toml")).expect("manifest");
    for f in ["model.onnx", "labels.txt"] {
        std::fs::copy(format!("{SHIPPED}/{f}"), dir.join(f)).expect("copy");
    }
    std::fs::write(
        dir.join("model.toml"),
        format!("{text}\n[video]\ncapture = [160, 120]\nresize_to = 72\n"),
    )
    .expect("write manifest");
    let runtime = Runtime::builder()
        .model(&dir)
        .video(VideoSource::Uri(media.display().to_string()))
        .audio(AudioSource::FromVideo)
        .build()
        .expect("runtime");
    assert_eq!(runtime.bundle().manifest.capture_size(), (160, 120));
    let predictions = runtime
        .outputs()
        .filter(|o| matches!(o, Output::Prediction(_)))
        .count();
    let stats = runtime.finish().expect("the run succeeds");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(stats.frames, 50, "every 160x120 frame reaches the model");
    assert!(predictions > 0);
}

/// The window stream: capture events in, windows out, in order; the end once every
/// window is out; a failed source ends it with the source's error.
#[test]
fn the_window_stream_hands_out_every_window_then_ends() {
    use avaction::capture::CaptureEvent;
    use avaction::window::{WindowStream, WindowStreamStep};
    use std::time::Duration;

    let m = manifest_with("capture = [160, 120]\nresize_to = 72\ncrop = \"center\"");
    let mut cfg = plan::window_config(&m);
    cfg.expect_audio = false;
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    let mut stream = WindowStream::new(WindowScheduler::new(cfg).expect("scheduler"), rx);
    // 16 frames make the first window, every 2 more (the hop) one more: 20 -> 3
    for k in 0..20 {
        tx.send(CaptureEvent::Frame(frame(k, 160, 120)))
            .expect("send");
    }
    tx.send(CaptureEvent::EndOfStream).expect("send");
    let mut firsts = Vec::new();
    loop {
        match stream
            .next(Duration::from_millis(100), &|| None)
            .expect("no error")
        {
            WindowStreamStep::Window(w) => firsts.push(w.first_frame),
            WindowStreamStep::Pending => {}
            WindowStreamStep::Ended => break,
            WindowStreamStep::VideoReady(_) => panic!("not asked for"),
        }
    }
    assert_eq!(firsts, vec![0, 2, 4]);
    assert_eq!(stream.stats().windows, 3);
    assert!(stream.take_frontend_time() > Duration::ZERO);
    // ended stays ended
    assert!(matches!(
        stream.next(Duration::from_millis(1), &|| None),
        Ok(WindowStreamStep::Ended)
    ));

    // a failed source: its error comes out
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    let mut cfg = plan::window_config(&m);
    cfg.expect_audio = false;
    let mut stream = WindowStream::new(WindowScheduler::new(cfg).expect("scheduler"), rx);
    tx.send(CaptureEvent::Failed(avaction::Error::new(
        avaction::ErrorKind::Video,
        "camera unplugged",
    )))
    .expect("send");
    let e = stream
        .next(Duration::from_millis(100), &|| None)
        .expect_err("the source's error");
    assert!(e.message().contains("camera unplugged"), "{e}");
}

#[test]
fn with_video_ready_the_newest_frames_come_after_each_frame_while_windows_wait_for_audio() {
    use avaction::capture::CaptureEvent;
    use avaction::window::{WindowStream, WindowStreamStep};
    use std::time::Duration;

    let m = manifest_with("capture = [160, 120]\nresize_to = 72\ncrop = \"center\"");
    let cfg = plan::window_config(&m); // expects audio: windows wait for it
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    let mut stream =
        WindowStream::new(WindowScheduler::new(cfg).expect("scheduler"), rx).with_video_ready();
    for k in 0..20 {
        tx.send(CaptureEvent::Frame(frame(k, 160, 120)))
            .expect("send");
    }
    tx.send(CaptureEvent::EndOfStream).expect("send");
    let (mut ready, mut windows) = (Vec::new(), Vec::new());
    loop {
        match stream
            .next(Duration::from_millis(100), &|| None)
            .expect("no error")
        {
            WindowStreamStep::VideoReady(w) => {
                assert!(w.logmel.is_empty(), "no audio yet");
                assert_eq!(w.frames.len(), 16 * 64 * 64 * 3);
                ready.push(w.first_frame);
            }
            WindowStreamStep::Window(w) => windows.push(w.first_frame),
            WindowStreamStep::Pending => {}
            WindowStreamStep::Ended => break,
        }
    }
    // from the 16th frame on, each frame: the window ending there, whether a window is
    // due (frames 16, 18, 20) or not; the windows themselves come once the stream ends
    // (no audio came: silence)
    assert_eq!(ready, vec![0, 1, 2, 3, 4]);
    assert_eq!(windows, vec![0, 2, 4]);
}
