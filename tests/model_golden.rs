//! The shipped model under tract against PyTorch's golden outputs
//! (`models/cavnet-small/golden/`, written by models/train's trainer,
//! `python -m avaction_train.train --arch cavnet-small`): the normalised inputs give the
//! same logits, and the runtime's own normalisation of the raw window gives the same inputs.

mod common;

use common::{max_abs_diff, read_f32};

use avaction::backend::{tract::TractBackend, Backend, Tensor};
use avaction::clock::Nanos;
use avaction::infer::InputAssembler;
use avaction::model::Bundle;
use avaction::window::{Window, WindowFlow};
use serde_json::Value;
use std::path::Path;

fn entry(
    golden: &Value,
    section: &str,
    name: &str,
    dir: &Path,
) -> (Vec<usize>, std::path::PathBuf) {
    let e = &golden[section][name];
    let shape = e["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    (shape, dir.join(e["file"].as_str().unwrap()))
}

#[test]
fn tract_matches_pytorch_goldens() {
    let bundle = Bundle::load(common::repo("models/cavnet-small")).expect("bundle");
    let dir = bundle.dir.join("golden");
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let mut backend = TractBackend::load(&bundle.graph(), 1).expect("tract loads the model");

    // 1. normalised inputs -> logits
    let inputs: Vec<Tensor> = bundle
        .manifest
        .inputs
        .iter()
        .map(|i| {
            let (shape, file) = entry(&golden, "inputs", &i.name, &dir);
            assert_eq!(shape, i.shape, "golden shape of {}", i.name);
            Tensor {
                shape,
                data: read_f32(&file),
            }
        })
        .collect();
    let (_, logits_file) = entry(&golden, "outputs", "logits", &dir);
    let expected = read_f32(&logits_file);
    let got = backend.run(&inputs).expect("inference");
    let d = max_abs_diff(&got.data, &expected);
    println!("tract vs pytorch logits: max abs diff {d:e}");
    assert!(d <= 1e-4, "logits differ by {d}");
    // Target profiles give tract a thread pool: same logits with 3 threads.
    let mut pooled = TractBackend::load(&bundle.graph(), 3).expect("tract with 3 threads");
    let d3 = max_abs_diff(&pooled.run(&inputs).expect("inference").data, &expected);
    println!("tract (3 threads) vs pytorch logits: max abs diff {d3:e}");
    assert!(d3 <= 1e-4, "logits with 3 threads differ by {d3}");

    // 2. raw window -> runtime normalisation -> same inputs and logits
    let (_, raw_frames) = entry(&golden, "raw", "frames", &dir);
    let (_, raw_flow) = entry(&golden, "raw", "flow", &dir);
    let (_, raw_mel) = entry(&golden, "raw", "logmel", &dir);
    let window = Window {
        index: 0,
        t_start: Nanos::from_nanos(0),
        t_end: Nanos::from_nanos(640_000_000),
        t_last_frame: Nanos::from_nanos(600_000_000),
        frames: std::fs::read(raw_frames).unwrap(),
        flow: WindowFlow::Mov(std::fs::read(raw_flow).unwrap()),
        logmel: read_f32(&raw_mel),
        audio_start: Some(Nanos::ZERO),
        skew_ns: Some(Nanos::ZERO),
        audio_missing: 0,
        invalid_audio: 0,
        first_frame: 0,
        stride: 1,
        audio_slots: 0..64,
        audio_index: 0,
        video_complete_at: std::time::Instant::now(),
    };
    let mut assembler = InputAssembler::new(&bundle.manifest);
    let assembled = assembler.fill(&window).expect("assemble").to_vec();
    for (a, g) in assembled.iter().zip(&inputs) {
        let d = max_abs_diff(&a.data, &g.data);
        assert!(
            d <= 1e-4,
            "runtime normalisation differs from training by {d}"
        );
    }
    let got = backend.run(&assembled).expect("inference");
    let d = max_abs_diff(&got.data, &expected);
    assert!(d <= 1e-4, "logits from raw window differ by {d}");
}
