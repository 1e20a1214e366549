//! Bring your own model: a bundle written by the PyTorch exporter (models/train,
//! `avaction_train.export`, from `models/train/examples/byo_model.py`; random weights)
//! with what manifest version 2 expresses: NCTHW video sampled at stride 2, a log-mel
//! input `[1, 1, 100, 64]` covering 1 s of audio that ends at the window's end (longer than
//! the 0.6 s video window), encoders with tokens and a head. Committed as
//! `tests/data/bundles/byo-mov-tiny`.

mod common;

use avaction::clock::{AudioChunk, Nanos, VideoFrame};
use avaction::infer::verify::{verify, VerifyOptions};
use avaction::infer::{plan, InputAssembler};
use avaction::model::{Bundle, HeadSlot, Manifest};
use avaction::window::WindowScheduler;
use serde_json::Value;
use std::time::Duration;

const BYO: &str = "tests/data/bundles/byo-mov-tiny";

#[test]
fn exported_bundle_verifies_from_frames_and_audio() {
    let bundle = Bundle::load(common::repo(BYO)).expect("bundle");
    let report = verify(&bundle, &VerifyOptions::default()).expect("verify runs");
    for c in &report.checks {
        println!(
            "{:<50} {:e} (tolerance {:e})",
            c.name, c.max_diff, c.tolerance
        );
    }
    assert_eq!(report.window_from, "source");
    assert!(report.passed(), "{report:?}");
    // the frames go through the runtime's own path bit for bit; the log-mel within the
    // tolerance of torchaudio's Kaldi fbank
    let video = &report.checks[1];
    assert!(
        video.name.contains("`video`") && video.max_diff == 0.0,
        "{video:?}"
    );
    assert!(report.checks.iter().any(|c| c.name.contains("staged")));
}

#[test]
fn verify_fails_a_bundle_whose_goldens_disagree() {
    let dir = common::temp_dir("byo-verify-fails");
    copy_dir(&common::repo(BYO), &dir);
    // one golden output value changed: the graph checks must fail, and the CLI say so
    let logits = dir.join("golden/logits.bin");
    let mut bytes = std::fs::read(&logits).unwrap();
    let v = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) + 0.5;
    bytes[..4].copy_from_slice(&v.to_le_bytes());
    std::fs::write(&logits, bytes).unwrap();
    let run = common::avaction(&["verify", dir.to_str().unwrap()], Duration::from_secs(120));
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("FAIL"), "{}", run.stdout);
    assert!(run.stderr.contains("checks failed"), "{}", run.stderr);
    // and a bundle without goldens is an error naming what is missing
    std::fs::remove_dir_all(dir.join("golden")).unwrap();
    let run = common::avaction(&["verify", dir.to_str().unwrap()], Duration::from_secs(60));
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("golden"), "{}", run.stderr);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_manifest_expresses_the_model_without_adapters() {
    let bundle = Bundle::load(common::repo(BYO)).expect("bundle");
    let m = &bundle.manifest;
    assert_eq!(m.version(), 2);
    assert_eq!(m.window.span(), 15, "8 frames at stride 2");
    let mel = m.logmel().expect("log-mel input");
    assert_eq!(mel.frames, 100, "1 s of 10 ms frames");
    let staged = bundle.staged().expect("staged");
    assert_eq!(staged.encoders[0].graph.inputs[0].dims, vec![1, 3, 64, 64]);
    assert_eq!(staged.encoders[1].graph.inputs[0].dims, vec![1, 1, 4, 64]);
    assert_eq!(
        staged.head_slots,
        vec![HeadSlot::Tokens(0), HeadSlot::Tokens(1)]
    );
}

/// Frames numbered by their value and audio whose samples say their time: the window takes
/// every second captured frame, and its log-mel grid ends at the window's end whatever
/// order audio and video arrive in.
#[test]
fn stride_and_audio_context_place_data_by_time() {
    let bundle = Bundle::load(common::repo(BYO)).expect("bundle");
    let m = &bundle.manifest;
    let cfg = plan::window_config(m);
    let (w, h) = (64u32, 64u32);
    let frame = |k: u64| VideoFrame {
        t_ns: Nanos::from_millis_f64(40.0 * k as f64),
        width: w,
        height: h,
        rgb: vec![k as u8; (w * h * 3) as usize],
    };
    // 3 s of a tone, starting 1 s before the first frame
    let rate = 16_000;
    let audio = AudioChunk {
        t_ns: Nanos::from_millis_f64(-1000.0),
        rate,
        samples: (0..3 * rate as usize)
            .map(|i| (i as f32 * 0.05).sin() * 0.3)
            .collect(),
    };
    let windows = |audio_first: bool| {
        let mut s = WindowScheduler::new(cfg.clone()).expect("scheduler");
        if audio_first {
            s.push_audio(&audio);
        }
        let mut out = Vec::new();
        for k in 0..40 {
            s.push_frame(&frame(k)).unwrap();
            if !audio_first && k == 25 {
                s.push_audio(&audio);
            }
            while let Some(win) = s.poll(None, false) {
                out.push(win);
            }
        }
        while let Some(win) = s.poll(None, true) {
            out.push(win);
        }
        out
    };
    let early = windows(true);
    let late = windows(false);
    // windows end at captured frames 14, 18, 22, ... 38: (40 - 15) / 4 + 1 of them
    assert_eq!(early.len(), 7);
    assert_eq!(late.len(), early.len());
    let px = (w * h * 3) as usize;
    for (a, b) in early.iter().zip(&late) {
        let firsts: Vec<u8> = (0..8).map(|k| a.frames[k * px]).collect();
        let f0 = a.first_frame as u8;
        assert_eq!(firsts, (0..8).map(|k| f0 + 2 * k).collect::<Vec<u8>>());
        assert_eq!(a.frame_number(7), a.first_frame + 14);
        assert_eq!(a.logmel.len(), 100 * 64);
        assert_eq!(a.audio_missing, 0, "the audio covers every window");
        assert_eq!(a.logmel, b.logmel, "audio placed by time, not by arrival");
        assert_eq!(a.frames, b.frames);
        // the grid's last frame starts one mel frame before the window's end
        let start = a.audio_start.expect("audio");
        let end = start + Nanos::from_millis_f64(1000.0);
        assert_eq!(end, a.t_end, "the audio context ends at the window's end");
    }
}

/// The same file twice through `avaction run`: every prediction is the same (the audio
/// context, longer than the window, used to be filled with whatever audio had arrived).
#[test]
fn two_runs_of_a_long_audio_context_agree() {
    let dir = common::temp_dir("byo-determinism");
    let media = common::scene(&dir, 8);
    let run = || {
        let r = common::avaction(
            &[
                "run",
                "--model",
                BYO,
                "--video",
                media.to_str().unwrap(),
                "--json",
            ],
            Duration::from_secs(180),
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["type"] == "prediction")
            .map(|mut v| {
                v.as_object_mut().unwrap().remove("latency_ms");
                v
            })
            .collect::<Vec<Value>>()
    };
    let (a, b) = (run(), run());
    assert!(a.len() > 40, "{} predictions", a.len());
    assert_eq!(a, b);
    std::fs::remove_dir_all(&dir).ok();
}

/// The same window in three layouts: NTCHW, NCTHW and NTHWC hold the same values in
/// their own orders, and a raw (encoder-less) head input is filled whole.
#[test]
fn layouts_hold_the_same_values_in_their_orders() {
    let text = |layout: &str, shape: &str| {
        format!(
            r#"manifest_version = 2
name = "t"
version = "1"
graph = "model.onnx"
labels = "labels.txt"
[window]
frames = 2
fps = 25
hop_frames = 1
[[inputs]]
name = "video"
frontend = "image"
layout = "{layout}"
shape = {shape}
mean = [0.1, 0.2, 0.3]
std = [0.5, 0.5, 0.5]
[output]
name = "logits"
shape = [1, 2]
[decoder]
kind = "softmax"
top_k = 1
smoothing = 1
enter = 0.6
exit = 0.4
min_duration_s = 0.0
"#
        )
    };
    let (w, h) = (16usize, 16usize);
    let window = {
        let m = Manifest::parse(&text("NTCHW", "[1, 2, 3, 16, 16]")).unwrap();
        let mut s = WindowScheduler::new(plan::window_config(&m)).unwrap();
        for k in 0..2u64 {
            s.push_frame(&VideoFrame {
                t_ns: Nanos::from_millis_f64(40.0 * k as f64),
                width: w as u32,
                height: h as u32,
                rgb: (0..w * h * 3)
                    .map(|i| (i * 7 + k as usize * 13) as u8)
                    .collect(),
            })
            .unwrap();
        }
        s.poll(None, true).expect("a window")
    };
    let fill = |layout: &str, shape: &str| {
        let m = Manifest::parse(&text(layout, shape)).unwrap();
        InputAssembler::new(&m).fill(&window).unwrap()[0]
            .data
            .clone()
    };
    let ntchw = fill("NTCHW", "[1, 2, 3, 16, 16]");
    let ncthw = fill("NCTHW", "[1, 3, 2, 16, 16]");
    let nthwc = fill("NTHWC", "[1, 2, 16, 16, 3]");
    let px = w * h;
    for t in 0..2 {
        for c in 0..3 {
            for p in 0..px {
                let v = ntchw[(t * 3 + c) * px + p];
                assert_eq!(ncthw[(c * 2 + t) * px + p], v);
                assert_eq!(nthwc[(t * px + p) * 3 + c], v);
            }
        }
    }
    // a wrong shape for the layout is refused, naming the layout's order
    let e = Manifest::parse(&text("NCTHW", "[1, 2, 3, 16, 16]")).unwrap_err();
    assert!(e.to_string().contains("[1, 3, 2, H, W]"), "{e}");
}

/// An input without an encoder goes to the head whole (version 2 only), in the order
/// `head_inputs` gives. (Running such a bundle is checked by `make test`, which verifies
/// every bundle models/train/examples/byo_model.py writes, `mov-raw-audio` among them.)
#[test]
fn raw_head_inputs_need_version_2_and_keep_the_head_order() {
    let toml = std::fs::read_to_string(common::repo(BYO).join("model.toml")).unwrap();
    let audio_encoder = toml
        .find("[[stages.encoders]]\ninput = \"audio\"")
        .expect("the audio encoder table");
    let end = toml[audio_encoder..].find("[decoder]").unwrap() + audio_encoder;
    let raw = format!("{}{}", &toml[..audio_encoder], &toml[end..]).replace(
        "head_inputs = [\"video_tokens\", \"audio_tokens\"]",
        "head_inputs = [\"audio\", \"video_tokens\"]",
    );
    let m = Manifest::parse(&raw).expect("version 2 takes a raw head input");
    let stages = m.stages.as_ref().unwrap();
    assert_eq!(stages.head_order(&m), vec!["audio", "video_tokens"]);
    let v1 = raw
        .replace("manifest_version = 2\n", "")
        .replace("layout = \"NCTHW\"\n", "")
        .replace("shape = [1, 3, 8, 64, 64]", "shape = [1, 8, 3, 64, 64]");
    let e = Manifest::parse(&v1).unwrap_err().to_string();
    assert!(e.contains("manifest_version = 2"), "{e}");
    // head_inputs must name every token input and raw input once
    let wrong = raw.replace("[\"audio\", \"video_tokens\"]", "[\"video_tokens\"]");
    let e = Manifest::parse(&wrong).unwrap_err().to_string();
    assert!(e.contains("head_inputs"), "{e}");
    // and newer manifests are refused with the reason
    let v3 = toml.replace("manifest_version = 2", "manifest_version = 3");
    let e = Manifest::parse(&v3).unwrap_err().to_string();
    assert!(e.contains("versions 1 and 2"), "{e}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
