//! Tests of the synthetic scene generator: determinism, timeline, what the motion and
//! the sounds look like, and the WAV / JSON / media writers (decoded back by GStreamer).

use avaction::synth::{
    write_ground_truth, write_media, write_wav, GroundTruth, Scene, SceneConfig, LABELS,
};
use avaction::ErrorKind;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

fn config(seed: u64, duration_s: f64) -> SceneConfig {
    SceneConfig {
        seed,
        duration_s,
        ..SceneConfig::default()
    }
}

fn scene(seed: u64, duration_s: f64) -> Scene {
    Scene::generate(&config(seed, duration_s)).expect("valid config")
}

fn frame(scene: &Scene, index: u64) -> Vec<u8> {
    let mut rgb = vec![0u8; scene.config().frame_bytes()];
    scene.render_frame(index, &mut rgb);
    rgb
}

fn audio(scene: &Scene, start: u64, len: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; len];
    scene.render_audio(start, &mut out);
    out
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("avaction-synth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Frame indices whose time lies inside `[start_s, end_s)`.
fn frames_in(scene: &Scene, start_s: f64, end_s: f64) -> std::ops::Range<u64> {
    let fps = f64::from(scene.config().fps);
    let first = (start_s * fps - 1e-6).ceil() as u64;
    let last = (end_s * fps - 1e-6).ceil() as u64;
    first..last
}

fn events_of<'a>(scene: &'a Scene, label: &str) -> Vec<&'a GroundTruth> {
    scene
        .timeline()
        .iter()
        .filter(|e| e.label == label)
        .collect()
}

#[test]
fn config_validation_names_the_bad_field() {
    assert!(Scene::generate(&SceneConfig::default()).is_ok());
    let bad = [
        (
            SceneConfig {
                duration_s: 0.0,
                ..SceneConfig::default()
            },
            "duration_s",
        ),
        (
            SceneConfig {
                duration_s: f64::NAN,
                ..SceneConfig::default()
            },
            "duration_s",
        ),
        (
            SceneConfig {
                width: 321,
                ..SceneConfig::default()
            },
            "width",
        ),
        (
            SceneConfig {
                height: 8,
                ..SceneConfig::default()
            },
            "height",
        ),
        (
            SceneConfig {
                fps: 0,
                ..SceneConfig::default()
            },
            "fps",
        ),
        (
            SceneConfig {
                audio_rate: 1000,
                ..SceneConfig::default()
            },
            "audio_rate",
        ),
    ];
    for (cfg, field) in bad {
        let error = Scene::generate(&cfg).expect_err("invalid config is refused");
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(
            error.message().contains(field),
            "{error} should name {field}"
        );
    }
    // Serde: missing keys take defaults, unknown keys are refused.
    let parsed: SceneConfig = serde_json::from_str(r#"{"seed": 5, "duration_s": 3.5}"#).unwrap();
    assert_eq!(
        parsed,
        SceneConfig {
            seed: 5,
            duration_s: 3.5,
            ..SceneConfig::default()
        }
    );
    assert!(serde_json::from_str::<SceneConfig>(r#"{"seed": 5, "colour": 1}"#).is_err());
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let a = scene(7, 8.0);
    let b = scene(7, 8.0);
    let c = scene(8, 8.0);
    assert_eq!(a.timeline(), b.timeline());
    assert_ne!(a.timeline(), c.timeline());
    assert_eq!(a.num_frames(), 200);
    assert_eq!(a.num_audio_samples(), 8 * 48_000);
    for index in (0..a.num_frames()).step_by(7) {
        assert_eq!(frame(&a, index), frame(&b, index), "frame {index}");
        assert_ne!(frame(&a, index), frame(&c, index), "frame {index}");
    }
    let n = a.num_audio_samples() as usize;
    let (audio_a, audio_b, audio_c) = (audio(&a, 0, n), audio(&b, 0, n), audio(&c, 0, n));
    let bits = |v: &[f32]| v.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&audio_a), bits(&audio_b));
    assert_ne!(bits(&audio_a), bits(&audio_c));
    assert!(audio_a.iter().all(|s| (-1.0..=1.0).contains(s)));
}

#[test]
fn audio_does_not_depend_on_block_split() {
    let s = scene(11, 10.0);
    let n = s.num_audio_samples() as usize;
    let whole = audio(&s, 0, n);
    let mut pieces = vec![0.0f32; n];
    let mut at = 0usize;
    for (i, size) in [1usize, 37, 960, 4096, 12345].iter().cycle().enumerate() {
        if at >= n {
            break;
        }
        let end = (at + size + i % 3).min(n);
        s.render_audio(at as u64, &mut pieces[at..end]);
        at = end;
    }
    assert!(whole
        .iter()
        .zip(&pieces)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    // Past the end: silence.
    assert!(audio(&s, n as u64 - 10, 100)[10..]
        .iter()
        .all(|&v| v == 0.0));
}

#[test]
fn timeline_is_sorted_disjoint_and_covers_every_class() {
    for seed in 0..20 {
        let s = scene(seed, 60.0);
        let timeline = s.timeline();
        assert!(
            timeline.len() >= 15,
            "seed {seed}: only {} events",
            timeline.len()
        );
        let frame_s = 1.0 / f64::from(s.config().fps);
        let mut previous_end = 0.0;
        for event in timeline {
            assert!(
                LABELS[1..].contains(&event.label.as_str()),
                "{}",
                event.label
            );
            let length = event.end_s - event.start_s;
            assert!(
                (1.2 - frame_s..=2.0 + frame_s).contains(&length),
                "length {length}"
            );
            assert!(
                event.start_s - previous_end >= 0.6 - frame_s,
                "gap before {event:?}"
            );
            assert!(event.end_s <= 60.0);
            previous_end = event.end_s;
            let middle = 0.5 * (event.start_s + event.end_s);
            assert_eq!(s.label_at(middle), event.label);
            assert_eq!(s.label_at(event.start_s), event.label);
            assert_eq!(s.label_at(event.end_s), "background");
            assert_eq!(s.label_at(event.start_s - 0.01), "background");
        }
        for label in &LABELS[1..] {
            assert!(!events_of(&s, label).is_empty(), "seed {seed}: no {label}");
        }
    }
    let s = scene(3, 60.0);
    assert_eq!(s.label_at(-1.0), "background");
    assert_eq!(s.label_at(1e9), "background");
    // Too short for any event: one static scene.
    let short = scene(3, 1.0);
    assert!(short.timeline().is_empty());
    assert_eq!(frame(&short, 0), frame(&short, 24));
}

#[test]
fn background_is_still_and_events_move() {
    let s = scene(21, 20.0);
    let fps = f64::from(s.config().fps);
    let mut still_changes = 0;
    let mut previous = frame(&s, 0);
    let mut moving_frames = vec![0u32; s.timeline().len()];
    for index in 1..s.num_frames() {
        let current = frame(&s, index);
        let t_prev = (index - 1) as f64 / fps;
        let t_now = index as f64 / fps;
        let changed = current != previous;
        if changed && s.label_at(t_prev) == "background" && s.label_at(t_now) == "background" {
            still_changes += 1;
        }
        if changed {
            if let Some(k) = s
                .timeline()
                .iter()
                .position(|e| t_now >= e.start_s && t_now < e.end_s)
            {
                moving_frames[k] += 1;
            }
        }
        previous = current;
    }
    // The only changes during background are the cuts between two events' scenes.
    assert!(
        still_changes < s.timeline().len(),
        "{still_changes} background changes for {} events",
        s.timeline().len()
    );
    for (event, moving) in s.timeline().iter().zip(moving_frames) {
        assert!(moving >= 8, "{event:?} moved in only {moving} frames");
    }
}

/// Per-pixel median of a set of frames (the static background while one object sweeps).
fn median_frame(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut column = vec![0u8; frames.len()];
    (0..frames[0].len())
        .map(|i| {
            for (value, f) in column.iter_mut().zip(frames) {
                *value = f[i];
            }
            column.sort_unstable();
            column[column.len() / 2]
        })
        .collect()
}

/// Centroid (x, y) and x extent of the pixels differing from `reference` by > 40.
fn foreground(frame: &[u8], reference: &[u8], width: usize) -> Option<(f64, f64, usize, usize)> {
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
    let (mut min_x, mut max_x) = (usize::MAX, 0);
    for (i, (a, b)) in frame
        .chunks_exact(3)
        .zip(reference.chunks_exact(3))
        .enumerate()
    {
        let diff = (0..3).map(|c| a[c].abs_diff(b[c])).max().unwrap_or(0);
        if diff > 40 {
            let (x, y) = (i % width, i / width);
            sx += x as f64;
            sy += y as f64;
            n += 1.0;
            min_x = min_x.min(x);
            max_x = max_x.max(x);
        }
    }
    (n > 20.0).then(|| (sx / n, sy / n, min_x, max_x))
}

fn slide_track(s: &Scene, event: &GroundTruth) -> Vec<f64> {
    let frames: Vec<Vec<u8>> = frames_in(s, event.start_s, event.end_s)
        .map(|i| frame(s, i))
        .collect();
    let background = median_frame(&frames);
    let width = s.config().width as usize;
    frames
        .iter()
        .map(|f| foreground(f, &background, width).expect("object visible").0)
        .collect()
}

#[test]
fn slides_move_the_way_their_label_says() {
    let s = scene(5, 60.0);
    let width = f64::from(s.config().width);
    for (label, sign) in [("slide_left", -1.0), ("slide_right", 1.0)] {
        let events = events_of(&s, label);
        assert!(!events.is_empty());
        for event in events.iter().take(2) {
            let xs = slide_track(&s, event);
            let travel = sign * (xs[xs.len() - 1] - xs[0]);
            assert!(
                travel > 0.3 * width,
                "{label}: travel {travel} px of {xs:?}"
            );
            for pair in xs.windows(2) {
                assert!(
                    sign * (pair[1] - pair[0]) > -1.0,
                    "{label} went back: {xs:?}"
                );
            }
        }
    }
}

#[test]
fn drops_fall_and_collisions_close_in() {
    let s = scene(5, 60.0);
    let (width, height) = (s.config().width as usize, f64::from(s.config().height));
    for event in events_of(&s, "drop_click")
        .into_iter()
        .chain(events_of(&s, "drop_thud"))
    {
        // Track the moving region frame to frame: it must go down and then settle.
        let range = frames_in(&s, event.start_s, event.end_s);
        let mut previous = frame(&s, range.start.saturating_sub(1));
        let mut ys = Vec::new();
        let mut last_motion = 0;
        for index in range.clone() {
            let current = frame(&s, index);
            if let Some((_, y, _, _)) = foreground(&current, &previous, width) {
                ys.push(y);
                last_motion = index;
            }
            previous = current;
        }
        assert!(ys.len() >= 5, "{event:?}: moving in {} frames", ys.len());
        let descent = ys.iter().cloned().fold(f64::MIN, f64::max) - ys[0];
        assert!(
            descent > 0.25 * height,
            "{event:?}: descent {descent} of {ys:?}"
        );
        assert!(
            last_motion + 3 < range.end,
            "{event:?}: still moving at the end"
        );
    }
    for event in events_of(&s, "collide_thud") {
        let frames: Vec<Vec<u8>> = frames_in(&s, event.start_s, event.end_s)
            .map(|i| frame(&s, i))
            .collect();
        // Against the final frame: the two bodies far apart, then together.
        let last = &frames[frames.len() - 1];
        let (_, _, lo, hi) = foreground(&frames[0], last, width).expect("moved");
        assert!(hi - lo > width / 3, "{event:?}: start extent {}", hi - lo);
        let start_mid = 0.5 * (lo + hi) as f64;
        let end_region = frames_in(&s, event.end_s, event.end_s + 0.2).start;
        assert!(
            frame(&s, end_region) == *last,
            "{event:?}: bodies rest after the end"
        );
        assert!(start_mid > 0.2 * width as f64 && start_mid < 0.8 * width as f64);
    }
}

/// Magnitude-weighted mean frequency of a Hann-windowed block.
fn spectral_centroid(samples: &[f32], rate: f64) -> f64 {
    let n = samples.len();
    let mut planner = realfft::RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(n);
    let mut input: Vec<f64> = samples
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let w = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos();
            f64::from(s) * w
        })
        .collect();
    let mut spectrum = fft.make_output_vec();
    fft.process(&mut input, &mut spectrum).unwrap();
    let (mut weighted, mut total) = (0.0, 0.0);
    for (k, c) in spectrum.iter().enumerate() {
        let power = c.norm_sqr();
        weighted += power * k as f64 * rate / n as f64;
        total += power;
    }
    weighted / total
}

/// Onset of the loudest sound inside an event and how long it stays loud, measured
/// in blocks of `hop_s` seconds (longer than a period of the sound).
fn impact(s: &Scene, event: &GroundTruth, hop_s: f64) -> (u64, f64) {
    let rate = f64::from(s.config().audio_rate);
    let start = (event.start_s * rate) as u64;
    let samples = audio(s, start, ((event.end_s - event.start_s) * rate) as usize);
    let hop = (hop_s * rate) as usize;
    let energies: Vec<f64> = samples
        .chunks(hop)
        .map(|c| c.iter().map(|&v| f64::from(v * v)).sum::<f64>() / c.len() as f64)
        .collect();
    let (peak, peak_energy) = energies.iter().cloned().enumerate().fold(
        (0, 0.0),
        |best, (i, e)| if e > best.1 { (i, e) } else { best },
    );
    // Ambient floor: the median block energy of the event.
    let mut sorted = energies.clone();
    sorted.sort_by(f64::total_cmp);
    let floor = sorted[sorted.len() / 2];
    assert!(
        peak_energy > 100.0 * floor,
        "{event:?}: impact not above ambient"
    );
    let loud = energies[peak..]
        .iter()
        .take_while(|&&e| e > 10.0 * floor.max(peak_energy * 1e-4))
        .count();
    // Back up to the onset: the first loud block before the peak.
    let mut onset = peak;
    while onset > 0 && energies[onset - 1] > 0.01 * peak_energy {
        onset -= 1;
    }
    (
        start + (onset * hop) as u64,
        (loud + peak - onset) as f64 * hop_s,
    )
}

#[test]
fn click_is_bright_and_short_thud_is_low_and_long() {
    let s = scene(9, 60.0);
    let rate = f64::from(s.config().audio_rate);
    let clicks = events_of(&s, "drop_click");
    let thuds: Vec<_> = events_of(&s, "drop_thud")
        .into_iter()
        .chain(events_of(&s, "collide_thud"))
        .collect();
    assert!(!clicks.is_empty() && !thuds.is_empty());
    for event in clicks {
        let (onset, loud_s) = impact(&s, event, 0.001);
        let centroid = spectral_centroid(&audio(&s, onset.saturating_sub(96), 1024), rate);
        assert!(centroid > 2500.0, "{event:?}: click centroid {centroid} Hz");
        assert!(loud_s <= 0.02, "{event:?}: click lasts {loud_s} s");
    }
    for event in thuds {
        let (onset, loud_s) = impact(&s, event, 0.02);
        let centroid = spectral_centroid(&audio(&s, onset.saturating_sub(96), 8192), rate);
        assert!(centroid < 400.0, "{event:?}: thud centroid {centroid} Hz");
        assert!(
            (0.06..=0.24).contains(&loud_s),
            "{event:?}: thud lasts {loud_s} s"
        );
    }
}

#[test]
fn slides_whoosh_over_the_whole_motion_and_background_is_quiet() {
    let s = scene(13, 60.0);
    let rate = f64::from(s.config().audio_rate);
    let rms = |from_s: f64, to_s: f64| {
        let v = audio(
            &s,
            (from_s * rate) as u64,
            ((to_s - from_s) * rate) as usize,
        );
        (v.iter().map(|&x| f64::from(x * x)).sum::<f64>() / v.len() as f64).sqrt()
    };
    for event in events_of(&s, "slide_left")
        .into_iter()
        .chain(events_of(&s, "slide_right"))
    {
        let length = event.end_s - event.start_s;
        let (start, end) = (event.start_s, event.end_s);
        let middle = rms(start + 0.35 * length, start + 0.65 * length);
        let before = rms(start - 0.3, start);
        assert!(
            middle > 5.0 * before,
            "{event:?}: whoosh {middle} vs ambient {before}"
        );
        let centroid = spectral_centroid(
            &audio(&s, ((start + 0.4 * length) * rate) as u64, 8192),
            rate,
        );
        assert!(
            (250.0..3000.0).contains(&centroid),
            "whoosh centroid {centroid}"
        );
        // It swells and fades: the edges are much quieter than the middle.
        assert!(rms(start, start + 0.08 * length) < 0.3 * middle);
        assert!(rms(end - 0.08 * length, end) < 0.3 * middle);
    }
}

#[test]
fn wav_header_and_samples_are_right() {
    let dir = scratch("wav");
    let s = scene(4, 2.5);
    let n = s.num_audio_samples() as usize;
    let expected = audio(&s, 0, n);
    for channels in [1u16, 2] {
        let path = dir.join(format!("scene{channels}.wav"));
        write_wav(&s, &path, channels).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let u16_at = |i: usize| u16::from_le_bytes(bytes[i..i + 2].try_into().unwrap());
        let data_bytes = n * 2 * channels as usize;
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u32_at(4) as usize, 36 + data_bytes);
        assert_eq!(&bytes[8..16], b"WAVEfmt ");
        assert_eq!(u32_at(16), 16);
        assert_eq!(u16_at(20), 1, "PCM");
        assert_eq!(u16_at(22), channels);
        assert_eq!(u32_at(24), 48_000);
        assert_eq!(u32_at(28), 48_000 * 2 * u32::from(channels));
        assert_eq!(u16_at(32), 2 * channels);
        assert_eq!(u16_at(34), 16);
        assert_eq!(&bytes[36..40], b"data");
        assert_eq!(u32_at(40) as usize, data_bytes);
        assert_eq!(bytes.len(), 44 + data_bytes);
        for (i, &value) in expected.iter().enumerate().step_by(97) {
            for c in 0..channels as usize {
                let at = 44 + (i * channels as usize + c) * 2;
                let pcm = i16::from_le_bytes([bytes[at], bytes[at + 1]]);
                assert!((f32::from(pcm) / 32767.0 - value).abs() < 1.0 / 32767.0 + 1e-6);
            }
        }
    }
    let error = write_wav(&s, &dir.join("bad.wav"), 3).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ground_truth_json_round_trips() {
    let dir = scratch("json");
    let s = scene(6, 30.0);
    let path = dir.join("truth.json");
    write_ground_truth(&s, &path).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let config: SceneConfig = serde_json::from_value(value["config"].clone()).unwrap();
    assert_eq!(&config, s.config());
    let labels: Vec<String> = serde_json::from_value(value["labels"].clone()).unwrap();
    assert_eq!(labels, LABELS);
    let events: Vec<GroundTruth> = serde_json::from_value(value["events"].clone()).unwrap();
    assert_eq!(events, s.timeline());
    let error = write_ground_truth(&s, &dir.join("missing/dir/truth.json")).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Io);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What came back from decoding a media file.
#[derive(Default)]
struct Decoded {
    frames: Vec<(u64, Vec<u8>)>,
    audio_samples: u64,
    audio_end_ns: u64,
}

/// Decodes `path` with decodebin into RGB frames (with PTS) and mono F32 audio.
fn decode(path: &std::path::Path, width: u32, height: u32) -> Decoded {
    gst::init().unwrap();
    let description = format!(
        "filesrc location=\"{}\" ! decodebin name=d \
         d. ! queue ! videoconvert ! video/x-raw,format=RGB,width={width},height={height} ! appsink name=v sync=false \
         d. ! queue ! audioconvert ! audioresample ! audio/x-raw,format=F32LE,channels=1,rate=48000 ! appsink name=a sync=false",
        path.display()
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let decoded = Arc::new(Mutex::new(Decoded::default()));
    let video_sink = pipeline
        .by_name("v")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let audio_sink = pipeline
        .by_name("a")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let sink_state = decoded.clone();
    video_sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Error)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                let pts = buffer.pts().map_or(u64::MAX, |t| t.nseconds());
                sink_state
                    .lock()
                    .unwrap()
                    .frames
                    .push((pts, map.as_slice().to_vec()));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let sink_state = decoded.clone();
    audio_sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Error)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let mut state = sink_state.lock().unwrap();
                state.audio_samples += buffer.size() as u64 / 4;
                if let (Some(pts), Some(duration)) = (buffer.pts(), buffer.duration()) {
                    state.audio_end_ns = state.audio_end_ns.max((pts + duration).nseconds());
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("decoding finished within 30 s");
    if let gst::MessageView::Error(e) = message.view() {
        panic!(
            "decoding {} failed: {} ({:?})",
            path.display(),
            e.error(),
            e.debug()
        );
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let result = std::mem::take(&mut *decoded.lock().unwrap());
    result
}

/// 4x4 box average of a packed RGB frame (what a model sees after downscaling).
fn shrink4(rgb: &[u8], width: usize, height: usize) -> Vec<u8> {
    let (w, h) = (width / 4, height / 4);
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let mut sum = 0u32;
                for dy in 0..4 {
                    for dx in 0..4 {
                        sum += u32::from(rgb[((y * 4 + dy) * width + x * 4 + dx) * 3 + c]);
                    }
                }
                out[(y * w + x) * 3 + c] = ((sum + 8) / 16) as u8;
            }
        }
    }
    out
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64.powi(2) / mse.max(1e-12)).log10()
}

fn check_media_round_trip(extension: &str) {
    let dir = scratch(extension);
    let s = scene(2, 4.0);
    let path = dir.join(format!("scene.{extension}"));
    let started = std::time::Instant::now();
    write_media(&s, &path).unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert!(elapsed < 4.0, "writing 4 s took {elapsed} s");
    let cfg = s.config();
    let decoded = decode(&path, cfg.width, cfg.height);
    let expected = s.num_frames() as usize;
    assert!(
        decoded.frames.len().abs_diff(expected) <= 1,
        "{extension}: {} frames decoded, {expected} written",
        decoded.frames.len()
    );
    let audio_s = decoded.audio_samples as f64 / 48_000.0;
    assert!(
        (audio_s - 4.0).abs() < 0.06,
        "{extension}: {audio_s} s of audio"
    );
    assert!((decoded.audio_end_ns as f64 * 1e-9 - 4.0).abs() < 0.06);
    // Quality: every decoded frame is close to the rendered one at its PTS, at full
    // size and (tighter) after the 4x downscale a model input gets.
    let (mut worst_full, mut worst_small) = (f64::INFINITY, f64::INFINITY);
    let (width, height) = (cfg.width as usize, cfg.height as usize);
    let mut indices = Vec::new();
    for (pts, rgb) in &decoded.frames {
        let index = (*pts as f64 * 1e-9 * f64::from(cfg.fps)).round() as u64;
        assert!(
            index < s.num_frames(),
            "{extension}: frame PTS {pts} past the end"
        );
        indices.push(index);
        let rendered = frame(&s, index);
        worst_full = worst_full.min(psnr(rgb, &rendered));
        let small = psnr(
            &shrink4(rgb, width, height),
            &shrink4(&rendered, width, height),
        );
        worst_small = worst_small.min(small);
    }
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(
        indices.len(),
        decoded.frames.len(),
        "{extension}: repeated frame times"
    );
    eprintln!("{extension}: worst PSNR {worst_full:.1} dB full size, {worst_small:.1} dB at 1/4");
    assert!(
        worst_full > 26.0,
        "{extension}: worst frame PSNR {worst_full:.1} dB"
    );
    assert!(
        worst_small > 34.0,
        "{extension}: worst 1/4-size PSNR {worst_small:.1} dB"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mkv_decodes_back_with_all_frames_and_audio() {
    check_media_round_trip("mkv");
}

/// Whether every named GStreamer element is installed (the optional containers).
fn have_elements(names: &[&str]) -> bool {
    gst::init().unwrap();
    let missing: Vec<_> = names
        .iter()
        .filter(|name| gst::ElementFactory::find(name).is_none())
        .collect();
    if !missing.is_empty() {
        eprintln!("skipping: {missing:?} not installed");
    }
    missing.is_empty()
}

#[test]
fn mp4_decodes_back_when_its_encoders_exist() {
    if have_elements(&["avenc_mpeg4", "avenc_aac", "mp4mux"]) {
        check_media_round_trip("mp4");
    }
}

#[test]
fn mov_and_webm_decode_back_when_their_encoders_exist() {
    if have_elements(&["jpegenc", "avenc_aac", "qtmux"]) {
        check_media_round_trip("mov");
    }
    if have_elements(&["vp9enc", "vorbisenc", "webmmux"]) {
        check_media_round_trip("webm");
    }
}

#[test]
fn write_media_reports_bad_paths() {
    let dir = scratch("badpath");
    let s = scene(1, 1.0);
    // A refused extension leaves an existing file alone.
    std::fs::write(dir.join("scene.xyz"), b"keep me").unwrap();
    let error = write_media(&s, &dir.join("scene.xyz")).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.message().contains("xyz"), "{error}");
    assert_eq!(std::fs::read(dir.join("scene.xyz")).unwrap(), b"keep me");
    let started = std::time::Instant::now();
    let error = write_media(&s, &dir.join("no/such/dir/scene.mkv")).unwrap_err();
    assert!(started.elapsed().as_secs() < 10, "error took too long");
    assert!(error.message().contains("scene.mkv"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run with `cargo test --release --test synth -- --ignored --nocapture` to measure.
#[test]
#[ignore]
fn write_media_speed_60s() {
    let dir = scratch("speed");
    let s = scene(0, 60.0);
    for extension in ["mkv", "mp4", "mov", "webm"] {
        let path = dir.join(format!("scene.{extension}"));
        let started = std::time::Instant::now();
        write_media(&s, &path).unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        let size = std::fs::metadata(&path).unwrap().len();
        println!(
            "{extension}: 60 s of 320x240@25 + 48 kHz written in {elapsed:.2} s, {size} bytes"
        );
        assert!(elapsed < 30.0);
    }
    let started = std::time::Instant::now();
    let mut rgb = vec![0u8; s.config().frame_bytes()];
    for index in 0..s.num_frames() {
        s.render_frame(index, &mut rgb);
    }
    println!(
        "render 1500 frames: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let started = std::time::Instant::now();
    let mut block = vec![0.0f32; 960];
    for start in (0..s.num_audio_samples()).step_by(960) {
        s.render_audio(start, &mut block);
    }
    println!(
        "render 60 s audio: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// FNV-1a over bytes: a checksum with no dependency.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The generator is bit-exact everywhere (own PRNG and elementary functions), so a
/// scene's pixels and samples are pinned: a change here changes every dataset made
/// from a seed and must be deliberate.
#[test]
fn golden_checksums_are_stable() {
    let s = scene(1, 12.0);
    let mut frames = Vec::new();
    for index in [0u64, 37, 90, 151, 240, 299] {
        frames.extend(frame(&s, index));
    }
    let samples = audio(&s, 0, s.num_audio_samples() as usize);
    let timeline: Vec<u8> = serde_json::to_vec(s.timeline()).unwrap();
    assert_eq!(
        fnv1a(frames.iter().copied()),
        0xd9ec_ccaa_5dce_c627,
        "frames"
    );
    let audio_bytes = samples.iter().flat_map(|v| v.to_le_bytes());
    assert_eq!(fnv1a(audio_bytes), 0x3df3_7e0a_d813_f59e, "audio");
    assert_eq!(
        fnv1a(timeline.iter().copied()),
        0x23a9_1c26_0394_74f4,
        "timeline"
    );
}
