//! Capture stage tests: GStreamer video (live test pattern, generated media files, real-time
//! playback, bad inputs) and the cpal microphone (virtual PulseAudio, opt-in; missing device).

use avaction::capture::audio::{list_microphones, Microphone};
use avaction::capture::video::{VideoCapture, VideoConfig};
use avaction::capture::{AudioSource, CaptureEvent, CaptureStats, VideoSource};
use avaction::clock::Timeline;

/// Times in these checks: plain nanoseconds on the timeline.
type Nanos = i64;
use avaction::ErrorKind;
use gstreamer as gst;
use gstreamer::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `f` on a thread and fails the test if it does not finish within `limit`
/// (a panic inside `f` is passed on as it is).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("{what}: finished without a result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: did not finish within {limit:?}"),
    }
}

fn media_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capture-media");
    std::fs::create_dir_all(&dir).expect("create media dir");
    dir
}

/// Runs a gst-launch style description to EOS (bounded), writing a test file.
fn gst_write(description: &str) {
    gst::init().expect("gst init");
    let pipeline = gst::parse::launch(description).expect("parse pipeline");
    let bus = pipeline.bus().expect("bus");
    pipeline.set_state(gst::State::Playing).expect("play");
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(60),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).expect("null");
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => {
            panic!("writing test media failed: {} ({description})", e.error())
        }
        _ => panic!("writing test media timed out ({description})"),
    }
}

/// 50 frames of solid red 160x120 at 25 fps (MPEG-4 part 2) and 2 s of a 440 Hz sine at
/// 22050 Hz (Vorbis) in Matroska. Written once per test run.
fn av_mkv() -> PathBuf {
    let path = media_dir().join("av.mkv");
    static ONCE: std::sync::Once = std::sync::Once::new();
    let p = path.clone();
    ONCE.call_once(move || {
        gst_write(&format!(
            "videotestsrc num-buffers=50 pattern=red ! video/x-raw,width=160,height=120,framerate=25/1 \
             ! videoconvert ! avenc_mpeg4 bitrate=800000 ! queue ! matroskamux name=mux ! filesink location={} \
             audiotestsrc num-buffers=100 samplesperbuffer=441 freq=440 volume=0.5 \
             ! audio/x-raw,rate=22050,channels=2 ! audioconvert ! vorbisenc ! queue ! mux.",
            p.display()
        ))
    });
    path
}

/// 50 frames and 2 s of audio in QuickTime/MP4 (MJPEG + AAC, moov at the end, read by
/// qtdemux like any .mp4). Plugins base/good/libav have no encoder that mp4mux accepts
/// and qtdemux can read back without plugins-bad parsers, so qtmux and MJPEG it is.
fn av_mov() -> PathBuf {
    let path = media_dir().join("av.mov");
    static ONCE: std::sync::Once = std::sync::Once::new();
    let p = path.clone();
    ONCE.call_once(move || {
        gst_write(&format!(
            "videotestsrc num-buffers=50 ! video/x-raw,width=160,height=120,framerate=25/1 \
             ! videoconvert ! jpegenc ! queue ! qtmux name=mux ! filesink location={} \
             audiotestsrc num-buffers=100 samplesperbuffer=441 ! audio/x-raw,rate=22050,channels=1 \
             ! audioconvert ! avenc_aac ! aacparse ! queue ! mux.",
            p.display()
        ))
    });
    path
}

fn config(width: u32, height: u32, audio_rate: Option<u32>, realtime: bool) -> VideoConfig {
    VideoConfig {
        realtime,
        audio_rate,
        ..VideoConfig::new(width, height, 25)
    }
}

/// Everything a capture delivered until end of stream, failure, or `limit`.
#[derive(Default, Debug)]
struct Collected {
    frames: Vec<(Nanos, u32, u32, Vec<u8>)>,
    audio: Vec<(Nanos, u32, Vec<f32>)>,
    eos: usize,
    failed: Vec<avaction::Error>,
    cuts: Vec<String>,
    events_after_end: usize,
}

fn collect(rx: &Receiver<CaptureEvent>, limit: Duration) -> Collected {
    let deadline = Instant::now() + limit;
    let mut c = Collected::default();
    let mut ended = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = if ended {
            Duration::from_millis(300).min(left)
        } else {
            left
        };
        match rx.recv_timeout(wait) {
            Ok(ev) => {
                if ended {
                    c.events_after_end += 1;
                }
                match ev {
                    CaptureEvent::Frame(f) => {
                        c.frames.push((f.t_ns.as_nanos(), f.width, f.height, f.rgb))
                    }
                    CaptureEvent::Audio(a) => c.audio.push((a.t_ns.as_nanos(), a.rate, a.samples)),
                    CaptureEvent::EndOfStream => {
                        c.eos += 1;
                        ended = true;
                    }
                    CaptureEvent::Failed(e) => {
                        c.failed.push(e);
                        ended = true;
                    }
                    CaptureEvent::Cut(reason) => {
                        c.cuts.push(reason);
                        ended = true;
                    }
                    CaptureEvent::Gap(_) => {}
                }
            }
            Err(_) => return c,
        }
    }
}

/// Frequency of a tone from its zero crossings.
fn zero_crossing_hz(samples: &[f32], rate: u32) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / rate as f64)
}

/// The strongest frequency between `lo` and `hi` Hz (1 Hz steps) and the share of the
/// signal's energy it holds: robust to the odd dropout that would upset zero crossings.
fn dominant_hz(samples: &[f32], rate: u32, lo: u32, hi: u32) -> (f64, f64) {
    let energy: f64 = samples.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let mut best = (0.0, 0.0);
    for hz in lo..=hi {
        let w = 2.0 * std::f64::consts::PI * hz as f64 / rate as f64;
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &v) in samples.iter().enumerate() {
            re += v as f64 * (w * i as f64).cos();
            im -= v as f64 * (w * i as f64).sin();
        }
        // Energy of a sinusoid with this DFT coefficient: 2|X|^2 / N.
        let power = 2.0 * (re * re + im * im) / samples.len() as f64;
        if power > best.1 {
            best = (hz as f64, power);
        }
    }
    (best.0, if energy > 0.0 { best.1 / energy } else { 0.0 })
}

#[test]
fn live_test_pattern_delivers_model_size_frames_at_fps() {
    within(Duration::from_secs(30), "live test pattern", || {
        let timeline = Timeline::start();
        // The timeline is older than the pipeline: media running time would be ~300 ms off.
        std::thread::sleep(Duration::from_millis(300));
        let (tx, rx) = mpsc::sync_channel(64);
        let stats = Arc::new(CaptureStats::default());
        let mut cap = VideoCapture::start(
            &VideoSource::TestPattern("smpte".into()),
            &config(64, 48, None, false),
            timeline,
            tx,
            stats.clone(),
        )
        .expect("start test pattern");
        let started = Instant::now();
        let mut frames = Vec::new();
        while started.elapsed() < Duration::from_millis(2000) {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(CaptureEvent::Frame(f)) => frames.push((f, timeline.now().as_nanos())),
                Ok(other) => panic!("unexpected event {other:?}"),
                Err(_) => panic!("no frame within 500 ms"),
            }
        }
        cap.stop();
        cap.stop(); // idempotent
        let n = frames.len();
        assert!((40..=56).contains(&n), "2 s at 25 fps gave {n} frames");
        for (f, received) in &frames {
            assert_eq!((f.width, f.height, f.rgb.len()), (64, 48, 64 * 48 * 3));
            // Stamped on the runtime timeline: at or before reception, and not long before.
            let lag = received - f.t_ns.as_nanos();
            assert!(
                (0..200_000_000).contains(&lag),
                "frame at {} received at {received}",
                f.t_ns.as_nanos()
            );
        }
        let times: Vec<Nanos> = frames.iter().map(|(f, _)| f.t_ns.as_nanos()).collect();
        assert!(
            times.windows(2).all(|w| w[1] > w[0]),
            "timestamps not increasing"
        );
        let mut steps: Vec<Nanos> = times.windows(2).map(|w| w[1] - w[0]).collect();
        steps.sort();
        let median = steps[steps.len() / 2];
        assert!(
            (median - 40_000_000).abs() < 2_000_000,
            "median frame step {median} ns"
        );
        // SMPTE bars: the top-left bar is light grey/white, top-right is blue-ish: not uniform.
        let rgb = &frames[n / 2].0.rgb;
        let left = &rgb[(10 * 64 + 2) * 3..(10 * 64 + 2) * 3 + 3];
        let right = &rgb[(10 * 64 + 61) * 3..(10 * 64 + 61) * 3 + 3];
        assert!(left.iter().all(|&v| v > 150), "left bar {left:?}");
        assert!(right[2] > 150 && right[1] < 60, "right bar {right:?}");
        assert_eq!(stats.frames.load(Ordering::Relaxed) as usize, n);
    });
}

#[test]
fn file_is_decoded_completely_with_audio_on_the_same_timeline() {
    let path = av_mkv();
    within(Duration::from_secs(60), "file decode", move || {
        let timeline = Timeline::start();
        let (tx, rx) = mpsc::sync_channel(4); // small: the capture must wait, not drop
        let stats = Arc::new(CaptureStats::default());
        let mut cap = VideoCapture::start(
            &VideoSource::Uri(path.display().to_string()),
            &config(32, 24, Some(16_000), false),
            timeline,
            tx,
            stats.clone(),
        )
        .expect("start file");
        assert!(cap.has_audio());
        // Read slowly at first so that back-pressure is exercised.
        std::thread::sleep(Duration::from_millis(300));
        let c = collect(&rx, Duration::from_secs(30));
        cap.stop();
        assert!(c.failed.is_empty(), "failures: {:?}", c.failed);
        assert_eq!(c.eos, 1, "exactly one end of stream");
        assert_eq!(c.events_after_end, 0, "nothing after end of stream");
        assert_eq!(c.frames.len(), 50, "every written frame delivered");
        assert_eq!(stats.frames_dropped.load(Ordering::Relaxed), 0);
        let times: Vec<Nanos> = c.frames.iter().map(|f| f.0).collect();
        assert!(times[0].abs() < 1_000_000, "first frame at {}", times[0]);
        for (i, t) in times.iter().enumerate() {
            assert!(
                (t - i as Nanos * 40_000_000).abs() < 1_000_000,
                "frame {i} at {t}"
            );
        }
        // Solid red survives decoding and scaling.
        for (_, w, h, rgb) in &c.frames {
            assert_eq!((*w, *h, rgb.len()), (32, 24, 32 * 24 * 3));
            let mean = |ch: usize| {
                rgb.iter()
                    .skip(ch)
                    .step_by(3)
                    .map(|&v| v as f64)
                    .sum::<f64>()
                    / (32.0 * 24.0)
            };
            assert!(
                mean(0) > 220.0 && mean(1) < 35.0 && mean(2) < 35.0,
                "not red: {} {} {}",
                mean(0),
                mean(1),
                mean(2)
            );
        }
        // Audio: 2 s at 16 kHz, starting at 0, contiguous, a 440 Hz tone.
        let total: usize = c.audio.iter().map(|a| a.2.len()).sum();
        assert!((31_000..=33_000).contains(&total), "audio samples {total}");
        assert!(c.audio.iter().all(|a| a.1 == 16_000));
        assert!(
            c.audio[0].0.abs() < 5_000_000,
            "first audio at {}",
            c.audio[0].0
        );
        let mut expected = c.audio[0].0;
        for (t, _, s) in &c.audio {
            assert!(
                (t - expected).abs() < 1_000_000,
                "audio chunk at {t}, expected {expected}"
            );
            expected = t + s.len() as Nanos * 1_000_000_000 / 16_000;
        }
        let audio_end = expected;
        let video_end = times[49] + 40_000_000;
        assert!(
            (audio_end - video_end).abs() < 60_000_000,
            "audio ends {audio_end}, video {video_end}"
        );
        let all: Vec<f32> = c.audio.iter().flat_map(|a| a.2.iter().copied()).collect();
        let hz = zero_crossing_hz(&all[1600..30_000], 16_000);
        assert!((hz - 440.0).abs() < 5.0, "tone at {hz} Hz");
        let peak = all.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((0.35..0.65).contains(&peak), "peak {peak} (written at 0.5)");
        assert_eq!(stats.samples.load(Ordering::Relaxed) as usize, total);
    });
}

#[test]
fn quicktime_mp4_with_aac_is_decoded_completely() {
    let path = av_mov();
    within(Duration::from_secs(60), "mp4 decode", move || {
        let (tx, rx) = mpsc::sync_channel(16);
        let mut cap = VideoCapture::start(
            &VideoSource::Uri(format!("file://{}", path.display())),
            &config(48, 48, Some(16_000), false),
            Timeline::start(),
            tx,
            Arc::new(CaptureStats::default()),
        )
        .expect("start mp4");
        let c = collect(&rx, Duration::from_secs(30));
        cap.stop();
        assert!(c.failed.is_empty(), "failures: {:?}", c.failed);
        assert_eq!((c.eos, c.frames.len()), (1, 50));
        let total: usize = c.audio.iter().map(|a| a.2.len()).sum();
        // AAC adds priming/padding that GStreamer trims to about the written length.
        assert!((30_000..=34_000).contains(&total), "audio samples {total}");
    });
}

#[test]
fn realtime_playback_takes_real_time_and_stamps_on_the_timeline() {
    let path = av_mkv();
    within(Duration::from_secs(60), "realtime playback", move || {
        let timeline = Timeline::start();
        std::thread::sleep(Duration::from_millis(300));
        let (tx, rx) = mpsc::sync_channel(64);
        let began = Instant::now();
        let mut cap = VideoCapture::start(
            &VideoSource::Uri(path.display().to_string()),
            &config(32, 24, Some(16_000), true),
            timeline,
            tx,
            Arc::new(CaptureStats::default()),
        )
        .expect("start realtime");
        let mut frames = Vec::new();
        let mut audio_samples = 0usize;
        let mut eos = false;
        while let Ok(ev) = rx.recv_timeout(Duration::from_secs(5)) {
            match ev {
                CaptureEvent::Frame(f) => {
                    frames.push((f.t_ns.as_nanos(), timeline.now().as_nanos()))
                }
                CaptureEvent::Audio(a) => audio_samples += a.samples.len(),
                CaptureEvent::EndOfStream => {
                    eos = true;
                    break;
                }
                CaptureEvent::Failed(e) => panic!("failed: {e}"),
                CaptureEvent::Cut(reason) => panic!("cut: {reason}"),
                CaptureEvent::Gap(_) => {}
            }
        }
        let wall = began.elapsed().as_secs_f64();
        cap.stop();
        assert!(eos, "no end of stream");
        assert!(
            (1.85..2.8).contains(&wall),
            "2 s file played in {wall:.2} s"
        );
        assert!(frames.len() >= 48, "{} frames", frames.len());
        assert!(
            (31_000..=33_000).contains(&audio_samples),
            "audio samples {audio_samples}"
        );
        for (t, received) in &frames {
            let lag = received - t;
            assert!(
                (-5_000_000..150_000_000).contains(&lag),
                "frame at {t} received at {received}"
            );
        }
        let span = (frames[frames.len() - 1].0 - frames[0].0) as f64 / 1e9;
        assert!((1.8..2.0).contains(&span), "frame span {span} s");
    });
}

#[test]
fn file_without_audio_track_reports_no_audio() {
    let path = media_dir().join("video_only.mkv");
    gst_write(&format!(
        "videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48,framerate=25/1 ! videoconvert \
         ! avenc_mpeg4 ! matroskamux ! filesink location={}",
        path.display()
    ));
    within(Duration::from_secs(30), "video-only file", move || {
        let (tx, rx) = mpsc::sync_channel(16);
        let mut cap = VideoCapture::start(
            &VideoSource::Uri(path.display().to_string()),
            &config(32, 24, Some(16_000), false),
            Timeline::start(),
            tx,
            Arc::new(CaptureStats::default()),
        )
        .expect("start");
        assert!(!cap.has_audio());
        let c = collect(&rx, Duration::from_secs(10));
        cap.stop();
        assert_eq!((c.frames.len(), c.audio.len(), c.eos), (10, 0, 1));
    });
}

/// What a bad input gave: an error from `start`, or the events it sent.
fn start_bad(source: VideoSource, audio: bool) -> Result<Collected, avaction::Error> {
    within(Duration::from_secs(20), "bad input", move || {
        let (tx, rx) = mpsc::sync_channel(16);
        let started = Instant::now();
        let cap = VideoCapture::start(
            &source,
            &config(32, 24, audio.then_some(16_000), false),
            Timeline::start(),
            tx,
            Arc::new(CaptureStats::default()),
        );
        assert!(
            started.elapsed() < Duration::from_secs(11),
            "start took {:?}",
            started.elapsed()
        );
        let mut cap = cap?;
        let c = collect(&rx, Duration::from_secs(8));
        cap.stop();
        Ok(c)
    })
}

/// The error a bad input gave, from `start` or as the first `Failed` event.
fn bad_input_error(source: VideoSource, audio: bool) -> avaction::Error {
    match start_bad(source.clone(), audio) {
        Err(e) => e,
        Ok(c) => {
            assert_eq!(c.events_after_end, 0);
            c.failed.into_iter().next().unwrap_or_else(|| {
                panic!(
                    "{source:?}: no error, {} frames, eos {}",
                    c.frames.len(),
                    c.eos
                )
            })
        }
    }
}

#[test]
fn missing_file_is_an_error_naming_the_path() {
    let path = media_dir().join("does-not-exist.mp4");
    let e = bad_input_error(VideoSource::Uri(path.display().to_string()), false);
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.message().contains(&path.display().to_string()), "{e}");
    let e = bad_input_error(
        VideoSource::Uri(format!("file://{}", path.display())),
        false,
    );
    assert!(e.message().contains("does-not-exist.mp4"), "{e}");
}

#[test]
fn text_or_garbage_named_mp4_is_an_error() {
    let text = media_dir().join("not-a-video.mp4");
    std::fs::write(&text, "this is a text file, not a video\n".repeat(50)).expect("write");
    let garbage = media_dir().join("garbage.mp4");
    let bytes: Vec<u8> = (0u32..20_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, bytes).expect("write");
    for path in [text, garbage] {
        let e = bad_input_error(VideoSource::Uri(path.display().to_string()), false);
        assert_eq!(e.kind(), ErrorKind::Video);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(e.message().contains(name), "{e}");
        // GStreamer's reason and the element that gave it are passed on.
        assert!(
            e.message().contains("GstDecodeBin") || e.message().contains("typefind"),
            "{e}"
        );
    }
}

#[test]
fn truncated_mp4_is_an_error() {
    let full = std::fs::read(av_mov()).expect("read mov");
    let path = media_dir().join("truncated.mov");
    std::fs::write(&path, &full[..full.len() / 2]).expect("write");
    let e = bad_input_error(VideoSource::Uri(path.display().to_string()), true);
    assert_eq!(e.kind(), ErrorKind::Video);
    assert!(e.message().contains("truncated.mov"), "{e}");
    // qtdemux reports "no playable streams"; when GStreamer 1.22's decodebin swallows that
    // error (a race), the capture sees the demuxer stopped with no stream and says so.
    assert!(
        e.message().contains("no playable streams")
            || e.message()
                .contains("no playable stream (qtdemux stopped without finding one)"),
        "{e}"
    );
}

#[test]
fn truncated_mkv_ends_early_without_hanging() {
    // Matroska is streamable: GStreamer plays a truncated file up to the cut and ends
    // normally; the capture then sends `Cut` (it ended well before its declared
    // duration). An error is fine too; a hang, a full-length stream or a plain end of
    // stream is not.
    let source = media_dir().join("snow.mkv");
    gst_write(&format!(
        "videotestsrc num-buffers=50 pattern=snow ! video/x-raw,width=160,height=120,framerate=25/1 \
         ! videoconvert ! jpegenc ! queue ! matroskamux name=mux ! filesink location={} \
         audiotestsrc num-buffers=100 samplesperbuffer=441 ! audio/x-raw,rate=22050,channels=1 \
         ! audioconvert ! vorbisenc ! queue ! mux.",
        source.display()
    ));
    let full = std::fs::read(&source).expect("read mkv");
    let path = media_dir().join("truncated.mkv");
    std::fs::write(&path, &full[..full.len() / 2]).expect("write");
    match start_bad(VideoSource::Uri(path.display().to_string()), true) {
        Err(e) => assert!(e.message().contains("truncated.mkv"), "{e}"),
        Ok(c) => {
            assert_eq!(c.events_after_end, 0);
            assert!(
                c.eos == 0 && c.cuts.len() + c.failed.len() == 1,
                "eos {} cuts {:?} failed {:?}",
                c.eos,
                c.cuts,
                c.failed
            );
            assert!(
                (1..50).contains(&c.frames.len()),
                "{} frames from half a file",
                c.frames.len()
            );
        }
    }
}

#[test]
fn audio_only_file_is_an_error_no_video_stream() {
    let path = media_dir().join("audio_only.ogg");
    gst_write(&format!(
        "audiotestsrc num-buffers=20 ! audioconvert ! vorbisenc ! oggmux ! filesink location={}",
        path.display()
    ));
    let e = bad_input_error(VideoSource::Uri(path.display().to_string()), true);
    assert_eq!(e.kind(), ErrorKind::Video);
    assert!(e.message().contains("no video stream in"), "{e}");
    assert!(e.message().contains("audio_only.ogg"), "{e}");
}

#[test]
fn missing_camera_and_bad_pattern_are_errors() {
    let e = bad_input_error(
        VideoSource::Camera(Some("/dev/video-avaction-none".into())),
        false,
    );
    assert_eq!(e.kind(), ErrorKind::Video);
    assert!(e.message().contains("/dev/video-avaction-none"), "{e}");
    if avaction::capture::video::list_cameras().is_empty() {
        let e = bad_input_error(VideoSource::Camera(None), false);
        assert!(e.message().contains("no camera found"), "{e}");
    }
    let e = bad_input_error(VideoSource::TestPattern("no-such-pattern".into()), false);
    assert!(
        e.message().contains("no-such-pattern") && e.message().contains("ball"),
        "{e}"
    );
}

#[test]
fn stop_returns_while_the_runtime_is_not_reading() {
    let path = av_mkv();
    within(
        Duration::from_secs(30),
        "stop with a full channel",
        move || {
            let (tx, rx) = mpsc::sync_channel(2);
            let mut cap = VideoCapture::start(
                &VideoSource::Uri(path.display().to_string()),
                &config(32, 24, Some(16_000), false),
                Timeline::start(),
                tx,
                Arc::new(CaptureStats::default()),
            )
            .expect("start");
            std::thread::sleep(Duration::from_millis(500)); // channel full, pullers waiting
            let t = Instant::now();
            cap.stop();
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "stop took {:?}",
                t.elapsed()
            );
            drop(rx);
            // And a capture whose receiver is gone stops by itself without hanging either.
            let (tx, rx) = mpsc::sync_channel(2);
            let mut cap = VideoCapture::start(
                &VideoSource::TestPattern("ball".into()),
                &config(32, 24, None, false),
                Timeline::start(),
                tx,
                Arc::new(CaptureStats::default()),
            )
            .expect("start");
            drop(rx);
            std::thread::sleep(Duration::from_millis(300));
            cap.stop();
        },
    );
}

#[test]
fn live_source_counts_frames_dropped_when_the_runtime_is_behind() {
    within(Duration::from_secs(30), "live drops", || {
        let (tx, rx) = mpsc::sync_channel(3);
        let stats = Arc::new(CaptureStats::default());
        let mut cap = VideoCapture::start(
            &VideoSource::TestPattern("ball".into()),
            &config(32, 24, None, false),
            Timeline::start(),
            tx,
            stats.clone(),
        )
        .expect("start");
        // Read one frame every 200 ms for 2 s: ~5 fps of a 25 fps source.
        let mut got = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(200));
            while let Ok(ev) = rx.try_recv() {
                if matches!(ev, CaptureEvent::Frame(_)) {
                    got += 1;
                }
            }
        }
        cap.stop();
        while let Ok(ev) = rx.try_recv() {
            if matches!(ev, CaptureEvent::Frame(_)) {
                got += 1;
            }
        }
        let delivered = stats.frames.load(Ordering::Relaxed);
        let dropped = stats.frames_dropped.load(Ordering::Relaxed);
        assert_eq!(delivered, got);
        // Every frame the source produced is either delivered or counted as dropped.
        let produced = delivered + dropped;
        assert!(
            (44..=58).contains(&produced),
            "delivered {delivered} + dropped {dropped}"
        );
        assert!(dropped >= 20, "dropped {dropped}");
    });
}

#[test]
fn unknown_microphone_is_a_clear_audio_error() {
    // Holds with or without a sound server: the error names the device and lists what exists.
    let result = within(Duration::from_secs(20), "missing microphone", || {
        let (tx, _rx) = mpsc::sync_channel(16);
        Microphone::start(
            &AudioSource::Microphone("no-such-device".into()),
            16_000,
            Timeline::start(),
            tx,
            Arc::new(CaptureStats::default()),
        )
        .map(|m| m.device_name().to_string())
    });
    let e = result.expect_err("a device that does not exist was opened");
    println!("{e}");
    assert_eq!(e.kind(), ErrorKind::Audio);
    assert!(e.message().contains("no-such-device"), "{e}");
    let listed = list_microphones();
    for name in &listed {
        assert!(
            e.message().contains(name.as_str()),
            "{e} does not list {name}"
        );
    }
    if listed.is_empty() {
        assert!(e.message().contains("none"), "{e}");
    }
}

/// Plays a sine into the virtual PulseAudio sink and captures it through cpal.
/// Needs `tests/virtual_mic.sh`; runs only with `AVACTION_TEST_PULSE=1`.
#[test]
fn virtual_microphone_captures_a_tone_in_real_time() {
    if std::env::var("AVACTION_TEST_PULSE").as_deref() != Ok("1") {
        println!("skipped: set AVACTION_TEST_PULSE=1 and run inside tests/virtual_mic.sh");
        return;
    }
    // 48 kHz stereo s16 sine at 700 Hz, fed through pacat as ENVIRONMENT.md describes;
    // two processes joined by a pipe, so that both can be stopped by their own handles.
    use std::process::{Command, Stdio};
    let mut sox = Command::new("sox")
        .args([
            "-n", "-t", "raw", "-r", "48000", "-e", "signed", "-b", "16", "-c", "2", "-",
        ])
        .args(["synth", "30", "sine", "700", "vol", "0.5"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sox");
    let sox_out = sox.stdout.take().expect("sox stdout");
    let mut pacat = Command::new("pacat")
        .args([
            "--latency-msec=20",
            "--format=s16le",
            "--rate=48000",
            "--channels=2",
        ])
        .stdin(Stdio::from(sox_out))
        .spawn()
        .expect("start pacat");
    let outcome = std::panic::catch_unwind(|| {
        within(Duration::from_secs(40), "virtual microphone", || {
            let timeline = Timeline::start();
            let (tx, rx) = mpsc::sync_channel(256);
            let stats = Arc::new(CaptureStats::default());
            let mut mic = Microphone::start(
                &AudioSource::DefaultMicrophone,
                16_000,
                timeline,
                tx,
                stats.clone(),
            )
            .expect("open the default microphone");
            println!("capturing from {}", mic.device_name());
            // The ALSA pulse plugin takes ~1-2 s to deliver anything, then may hand over a
            // burst; judge the steady state: the chunks received from 1.5 s after the first.
            let mut chunks = Vec::new();
            let mut steady_from: Option<Instant> = None;
            let deadline = Instant::now() + Duration::from_secs(15);
            while steady_from.is_none_or(|t| t.elapsed() < Duration::from_secs(4)) {
                assert!(Instant::now() < deadline, "no steady audio within 15 s");
                match rx.recv_timeout(Duration::from_secs(4)) {
                    Ok(CaptureEvent::Audio(a)) => {
                        let received = timeline.now().as_nanos();
                        if steady_from.is_none() && chunks.is_empty() {
                            println!("first chunk after {:.2} s", received as f64 / 1e9);
                        }
                        chunks.push((a, received));
                        if steady_from.is_none() && chunks.len() == 1 {
                            steady_from = Some(Instant::now() + Duration::from_millis(1500));
                        }
                    }
                    Ok(CaptureEvent::Failed(e)) => panic!("microphone failed: {e}"),
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(_) => panic!("no audio for 4 s"),
                }
            }
            let steady_start = timeline.now().as_nanos() - 4_000_000_000;
            mic.stop();
            mic.stop();
            for (c, received) in &chunks {
                assert_eq!(c.rate, 16_000);
                assert!(
                    c.samples.len() <= 16_000 / 25,
                    "chunk of {} samples",
                    c.samples.len()
                );
                let lag = received - c.t_ns.as_nanos();
                assert!(
                    (0..1_000_000_000).contains(&lag),
                    "chunk at {} received at {received}",
                    c.t_ns.as_nanos()
                );
            }
            assert!(
                chunks
                    .windows(2)
                    .all(|w| w[1].0.t_ns.as_nanos() > w[0].0.t_ns.as_nanos()),
                "timestamps not increasing"
            );
            let steady: Vec<_> = chunks.iter().filter(|c| c.1 >= steady_start).collect();
            let total: usize = steady.iter().map(|c| c.0.samples.len()).sum();
            let wall = (steady[steady.len() - 1].1 - steady[0].1) as f64 / 1e9;
            println!(
                "steady state: {} chunks, {total} samples received over {wall:.2} s; dropped {}",
                steady.len(),
                stats.samples_dropped.load(Ordering::Relaxed)
            );
            // Real time: ~16000 samples per second of wall clock.
            let rate = total as f64 / wall;
            assert!((14_400.0..17_600.0).contains(&rate), "{rate:.0} samples/s");
            // Chunk times advance like the sample count (no drift beyond jitter).
            let first = &steady[0].0;
            let last = &steady[steady.len() - 1].0;
            let samples_between: usize = steady[..steady.len() - 1]
                .iter()
                .map(|c| c.0.samples.len())
                .sum();
            let span = (last.t_ns.as_nanos() - first.t_ns.as_nanos()) as f64 / 1e9;
            let by_count = samples_between as f64 / 16_000.0;
            println!("timestamps span {span:.3} s, samples {by_count:.3} s");
            assert!(
                (span - by_count).abs() < 0.05,
                "timestamps span {span:.3} s, samples {by_count:.3} s"
            );
            // The tone is there once the warm-up silence is over (last 3 s).
            let all: Vec<f32> = steady
                .iter()
                .flat_map(|c| c.0.samples.iter().copied())
                .collect();
            let tail = &all[all.len() - 48_000..];
            let (hz, share) = dominant_hz(tail, 16_000, 300, 1500);
            let rms = (tail.iter().map(|v| v * v).sum::<f32>() / tail.len() as f32).sqrt();
            println!(
                "tone {hz:.0} Hz holding {:.0}% of the energy, rms {rms:.3}",
                share * 100.0
            );
            assert!(rms > 0.1, "captured rms {rms}");
            assert!((hz - 700.0).abs() <= 2.0, "tone at {hz} Hz");
            assert!(share > 0.8, "the tone holds only {share:.2} of the energy");

            // A device chosen by name: ALSA's `pulse` PCM.
            let (tx, rx) = mpsc::sync_channel(256);
            let mut named = Microphone::start(
                &AudioSource::Microphone("PULSE".into()),
                16_000,
                timeline,
                tx,
                Arc::new(CaptureStats::default()),
            )
            .expect("open the pulse device by name");
            assert!(
                named.device_name().starts_with("pulse"),
                "{}",
                named.device_name()
            );
            let mut got = 0usize;
            let deadline = Instant::now() + Duration::from_secs(8);
            while got < 16_000 && Instant::now() < deadline {
                if let Ok(CaptureEvent::Audio(a)) = rx.recv_timeout(Duration::from_secs(1)) {
                    got += a.samples.len();
                }
            }
            named.stop();
            assert!(got >= 16_000, "{got} samples from the named device");
        })
    });
    for child in [&mut pacat, &mut sox] {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}
