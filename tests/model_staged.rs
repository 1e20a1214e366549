//! Every staged bundle in models/ (those with `[stages]`): tract against PyTorch's
//! goldens (single graph, each encoder, the head), and the runtime's staged execution
//! against the single graph on real windows, including a second window that reuses
//! cached tokens.

mod common;

use common::{max_abs_diff, read_f32};

use avaction::backend::{tract::TractBackend, Backend, BackendOptions, Tensor};
use avaction::clock::Nanos;
use avaction::infer::{InputAssembler, ModelRunner};
use avaction::model::{Bundle, Frontend};
use avaction::window::{Window, WindowFlow};
use serde_json::Value;
use std::path::Path;

const TOLERANCE: f32 = 1e-4;

fn staged_bundles() -> Vec<Bundle> {
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(common::repo("models"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.toml").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let b = Bundle::load(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        if b.manifest.stages.is_some() {
            out.push(b);
        }
    }
    assert!(!out.is_empty(), "no staged bundle in models/");
    out
}

fn tensor(golden: &Value, section: &str, name: &str, dir: &Path) -> Tensor {
    let e = &golden[section][name];
    assert!(!e.is_null(), "golden.json has no {section}.{name}");
    let shape: Vec<usize> = e["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let path = dir.join(e["file"].as_str().unwrap());
    let data = if e["dtype"] == "u8" {
        std::fs::read(&path)
            .unwrap()
            .iter()
            .map(|&b| b as f32)
            .collect()
    } else {
        read_f32(&path)
    };
    assert_eq!(
        data.len(),
        shape.iter().product::<usize>(),
        "{}",
        path.display()
    );
    Tensor { shape, data }
}

fn golden(b: &Bundle) -> (Value, std::path::PathBuf) {
    let dir = b.dir.join("golden");
    let text = std::fs::read_to_string(dir.join("golden.json")).unwrap();
    (serde_json::from_str(&text).unwrap(), dir)
}

#[test]
fn tract_matches_pytorch_for_every_stage() {
    for b in staged_bundles() {
        let name = &b.manifest.name;
        let (g, dir) = golden(&b);
        let inputs: Vec<Tensor> = b
            .manifest
            .inputs
            .iter()
            .map(|i| tensor(&g, "inputs", &i.name, &dir))
            .collect();
        let expected = tensor(&g, "outputs", &b.manifest.output.name, &dir);
        let mut single = TractBackend::load(&b.graph(), 1).expect("single graph loads");
        let got = single.run(&inputs).expect("single graph runs");
        let d = max_abs_diff(&got.data, &expected.data);
        println!("{name}: tract single graph vs pytorch: max abs diff {d:e}");
        assert!(d <= TOLERANCE, "{name}: single graph differs by {d}");

        let staged = b.staged().unwrap();
        let mut tokens = Vec::new();
        for e in &staged.encoders {
            let mut enc = TractBackend::load(&e.graph, 1).expect("encoder loads");
            let full = &inputs[b
                .manifest
                .inputs
                .iter()
                .position(|i| i.name == e.input.name)
                .unwrap()];
            let per = full.data.len() / e.tokens;
            let mut out = Vec::new();
            for n in 0..e.tokens {
                let one = Tensor {
                    shape: e.graph.inputs[0].dims.clone(),
                    data: full.data[n * per..(n + 1) * per].to_vec(),
                };
                out.extend(enc.run(&[one]).expect("encoder runs").data);
            }
            let head_input = &staged.head.inputs[tokens.len()];
            let want = tensor(&g, "stages", &head_input.name, &dir);
            let d = max_abs_diff(&out, &want.data);
            println!(
                "{name}: tract {} encoder vs pytorch: max abs diff {d:e}",
                e.input.name
            );
            assert!(
                d <= TOLERANCE,
                "{name}: encoder for {} differs by {d}",
                e.input.name
            );
            tokens.push(Tensor {
                shape: head_input.dims.clone(),
                data: out,
            });
        }
        let mut head = TractBackend::load(&staged.head, 1).expect("head loads");
        let got = head.run(&tokens).expect("head runs");
        let d = max_abs_diff(&got.data, &expected.data);
        println!("{name}: tract head on tract tokens vs pytorch: max abs diff {d:e}");
        assert!(d <= TOLERANCE, "{name}: head differs by {d}");
    }
}

/// The golden's raw window as the scheduler would emit it.
fn raw_window(g: &Value, dir: &Path) -> Window {
    let bytes = |t: Tensor| t.data.iter().map(|&v| v as u8).collect::<Vec<u8>>();
    let mel = tensor(g, "raw", "logmel", dir);
    Window {
        index: 0,
        t_start: Nanos::from_nanos(0),
        t_end: Nanos::from_nanos(640_000_000),
        t_last_frame: Nanos::from_nanos(600_000_000),
        frames: bytes(tensor(g, "raw", "frames", dir)),
        flow: WindowFlow::Mov(bytes(tensor(g, "raw", "flow", dir))),
        audio_slots: 0..mel.shape[0],
        logmel: mel.data,
        audio_start: Some(Nanos::ZERO),
        skew_ns: Some(Nanos::ZERO),
        audio_missing: 0,
        invalid_audio: 0,
        first_frame: 100,
        stride: 1,
        audio_index: 400,
        video_complete_at: std::time::Instant::now(),
    }
}

/// The window `hop` frames later: everything shifts left and the new frames, fields
/// and mel frames (taken from the start of the window, any content will do) come in
/// at the end.
fn next_window(w: &Window, hop: usize, frames: usize, mel_per_frame: usize) -> Window {
    let shift = |v: &[u8], items: usize| {
        let per = v.len() / items;
        let mut out = v[hop * per..].to_vec();
        out.extend_from_slice(&v[..hop * per]);
        out
    };
    let mels = w.logmel.len() / w.audio_slots.len();
    let k = hop * mel_per_frame * mels;
    let mut logmel = w.logmel[k..].to_vec();
    logmel.extend(w.logmel[..k].iter().map(|v| v - 1.0));
    Window {
        index: w.index + 1,
        frames: shift(&w.frames, frames),
        flow: match &w.flow {
            WindowFlow::Mov(mov) => WindowFlow::Mov(shift(mov, frames - 1)),
            other => other.clone(),
        },
        logmel,
        first_frame: w.first_frame + hop as u64,
        stride: 1,
        audio_index: w.audio_index + (hop * mel_per_frame) as u64,
        video_complete_at: std::time::Instant::now(),
        ..w.clone()
    }
}

/// Three consecutive windows (the golden's raw window, one a hop later reusing tokens,
/// one more with audio missing at its end) through the staged model and through the
/// single graph: equal outputs, the first equal to PyTorch's, and only the new frames,
/// fields and segments computed.
fn staged_equals_single(b: &Bundle, staged: &mut ModelRunner, single: &mut dyn Backend) {
    let name = &b.manifest.name;
    let (g, dir) = golden(b);
    assert!(
        matches!(staged, ModelRunner::Staged(_)),
        "{name}: not staged"
    );
    let mut assembler = InputAssembler::new(&b.manifest);
    let frames = b.manifest.window.frames;
    let logmel = b.manifest.input(Frontend::Logmel).unwrap();
    let shift_ms = logmel.fbank.as_ref().unwrap().frame_shift_ms as f64;
    let mel = (1000.0 / shift_ms / b.manifest.window.fps as f64).round() as usize;
    let hop = b.manifest.window.hop_frames;
    let first = raw_window(&g, &dir);
    let second = next_window(&first, hop, frames, mel);
    // 3rd window: audio missing at the end (silence is never cached)
    let mut third = next_window(&second, hop, frames, mel);
    third.audio_slots = 0..third.audio_slots.end - 6;
    third.audio_missing = 6;
    let expected = tensor(&g, "outputs", &b.manifest.output.name, &dir);
    let pytorch_tolerance = g["tolerance"].as_f64().map_or(TOLERANCE, |t| t as f32);
    for (k, w) in [first, second, third].iter().enumerate() {
        let inputs = assembler.fill(w).expect("assemble").to_vec();
        let want = single.run(&inputs).expect("single");
        let got = staged.run(w, &mut assembler).expect("staged");
        let d = max_abs_diff(&got.data, &want.data);
        println!("{name}: window {k}: staged vs single graph: max abs diff {d:e}");
        assert!(d <= TOLERANCE, "{name}: window {k}: staged differs by {d}");
        if k == 0 {
            let d = max_abs_diff(&got.data, &expected.data);
            assert!(
                d <= pytorch_tolerance,
                "{name}: raw window through the runtime differs from pytorch by {d}"
            );
        }
    }
    let (computed, reused) = staged.token_counts();
    // window 1 computes every token; windows 2 and 3 only the new frames, fields and
    // segments (in window 3 the new segments also hold the silence)
    let encoders = b.staged().unwrap().encoders;
    let per_window: u64 = encoders.iter().map(|e| e.tokens as u64).sum();
    let new: u64 = encoders
        .iter()
        .map(|e| (hop * if e.segment > 1 { mel } else { 1 } / e.segment) as u64)
        .sum();
    println!("{name}: tokens computed {computed}, reused {reused} ({per_window} per window)");
    assert_eq!(computed, per_window + 2 * new, "{name}: tokens computed");
    assert_eq!(reused, 2 * (per_window - new), "{name}: tokens reused");
}

#[test]
fn frames_encoded_early_are_not_encoded_again() {
    let opts = BackendOptions {
        choice: avaction::backend::BackendChoice::Tract,
        ..BackendOptions::default()
    };
    for b in staged_bundles() {
        let name = &b.manifest.name;
        let (g, dir) = golden(&b);
        let (mut early, _) = ModelRunner::open(&b, &opts).expect("staged bundle opens");
        let (mut plain, _) = ModelRunner::open(&b, &opts).expect("staged bundle opens");
        let mut assembler = InputAssembler::new(&b.manifest);
        let hop = b.manifest.window.hop_frames;
        let frames = b.manifest.window.frames;
        let first = raw_window(&g, &dir);
        let second = next_window(&first, hop, frames, 4);
        for w in [&first, &second] {
            // the video part first (no audio yet), then the complete window
            let mut video = w.clone();
            video.logmel.clear();
            video.audio_slots = 0..0;
            early.prefetch_video(&video, &assembler).expect("prefetch");
            let before = early.token_counts().0;
            let got = early.run(w, &mut assembler).expect("staged");
            let want = plain.run(w, &mut assembler).expect("staged");
            assert_eq!(got.data, want.data, "{name}");
            // only the log-mel segments are left for the complete window
            let audio: u64 = b
                .staged()
                .unwrap()
                .encoders
                .iter()
                .filter(|e| e.input.frontend == Frontend::Logmel)
                .map(|e| e.tokens as u64)
                .sum();
            assert!(early.token_counts().0 - before <= audio, "{name}");
        }
        assert_eq!(early.token_counts().0, plain.token_counts().0, "{name}");
    }
}

#[test]
fn staged_execution_equals_the_single_graph_and_reuses_tokens() {
    let opts = BackendOptions {
        choice: avaction::backend::BackendChoice::Tract,
        ..BackendOptions::default()
    };
    for b in staged_bundles() {
        let (mut staged, _) = ModelRunner::open(&b, &opts).expect("staged bundle opens");
        let mut single = TractBackend::load(&b.graph(), 1).expect("single graph");
        staged_equals_single(&b, &mut staged, &mut single);
    }
}

/// The 32x32 bundles of models/train/avaction_train/realscale.py (`make realscale` writes
/// them to target/realscale-test) on onnxruntime: encoders whose graphs leave the batch
/// axis free (opened at the manifest's batch of 1), staged against the single graph.
#[cfg(feature = "onnxruntime")]
#[test]
fn onnxruntime_runs_batch_free_encoders_staged_as_the_single_graph() {
    if !common::onnxruntime_loaded() {
        return;
    }
    let root = common::repo("target/realscale-test");
    let archs = ["cnn", "mobilenet", "vit"];
    if !root.join("cnn-staged").is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the test bundles: `make realscale` writes them"
        );
        println!("skipped: no {} (run `make realscale`)", root.display());
        return;
    }
    let opts = BackendOptions {
        choice: avaction::backend::BackendChoice::OnnxRuntime,
        ..BackendOptions::default()
    };
    for arch in archs {
        let b = Bundle::load(root.join(format!("{arch}-staged"))).expect("bundle loads");
        let (mut staged, _) = ModelRunner::open(&b, &opts).expect("staged bundle opens");
        assert_eq!(staged.name(), "onnxruntime");
        let (mut single, _) = avaction::backend::open(&b.graph(), &opts).expect("single graph");
        assert_eq!(single.name(), "onnxruntime");
        staged_equals_single(&b, &mut staged, single.as_mut());
    }
}
