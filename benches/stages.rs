//! Model cost per hop on one core (tract, 1 thread), input normalisation included, for
//! every bundle in models/: the single graph on a whole window (the reference, measured
//! in the same run) against staged execution in steady state (only the hop's new frames,
//! flow fields and audio segments are normalised and go through the encoders, then the
//! head). Prints one table.
//!
//! `cargo bench --bench stages [-- ITERATIONS]` (`--profile dev` skips the release build;
//! dependencies are optimised in both)

use avaction::backend::{tract::TractBackend, Backend, BackendChoice, BackendOptions, Tensor};
use avaction::clock::Nanos;
use avaction::infer::{InputAssembler, ModelRunner};
use avaction::model::{Bundle, Frontend};
use avaction::window::{Window, WindowFlow};
use std::time::Instant;

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A window of pseudo-random content with the bundle's geometry, `k` hops into a stream.
fn window(b: &Bundle, k: u64) -> Window {
    let m = &b.manifest;
    let (w, h) = m.frame_size();
    let t = m.window.frames;
    let px = (w * h) as usize;
    let mel = m
        .input(Frontend::Logmel)
        .map_or(0, |i| i.shape[1] * i.shape[2]);
    let mel_frames = m.input(Frontend::Logmel).map_or(0, |i| i.shape[1]);
    let hop = m.window.hop_frames as u64;
    let byte = |i: usize| ((i as u64 * 2654435761 + k) % 251) as u8;
    Window {
        index: k,
        t_start: Nanos::from_nanos(0),
        t_end: Nanos::from_nanos(0),
        t_last_frame: Nanos::from_nanos(0),
        frames: (0..t * px * 3).map(byte).collect(),
        flow: WindowFlow::Mov((0..(t - 1) * px * 3).map(byte).collect()),
        logmel: (0..mel).map(|i| byte(i) as f32 / -20.0).collect(),
        audio_start: Some(Nanos::ZERO),
        skew_ns: Some(Nanos::ZERO),
        audio_missing: 0,
        invalid_audio: 0,
        first_frame: k * hop,
        stride: 1,
        audio_slots: 0..mel_frames,
        audio_index: k * hop * (mel_frames / t) as u64,
        video_complete_at: Instant::now(),
    }
}

fn main() -> avaction::Result<()> {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(40);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .map_err(|e| {
            avaction::Error::new(avaction::ErrorKind::Io, root.display().to_string()).caused_by(e)
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.toml").is_file())
        .collect();
    dirs.sort();
    println!("model cost per hop, tract 1 thread, median of {iterations} (ratios against the single graph of the same model, same run)");
    println!(
        "{:<18} {:>13} {:>13} {:>9} {:>13} {:>9}",
        "model", "single ms/win", "staged ms/hop", "ratio", "head ms/hop", "tokens/hop"
    );
    let opts = BackendOptions {
        choice: BackendChoice::Tract,
        ..BackendOptions::default()
    };
    for dir in dirs {
        let b = Bundle::load(&dir)?;
        let mut assembler = InputAssembler::new(&b.manifest);
        let mut single = TractBackend::load(&b.graph(), 1)?;
        let mut times = Vec::new();
        for k in 0..iterations as u64 {
            let w = window(&b, k);
            let t0 = Instant::now();
            single.run(assembler.fill(&w)?)?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let single_ms = median_ms(times);
        let Some(staged_graphs) = b.staged() else {
            println!(
                "{:<18} {single_ms:>13.3} {:>13} {:>9} {:>13} {:>9}",
                b.manifest.name, "-", "-", "-", "-"
            );
            continue;
        };
        let (mut staged, _) = ModelRunner::open(&b, &opts)?;
        let mut head = TractBackend::load(&staged_graphs.head, 1)?;
        let head_inputs: Vec<Tensor> = staged_graphs
            .head
            .inputs
            .iter()
            .map(|i| Tensor::zeros(&i.dims))
            .collect();
        let (mut hop_times, mut head_times) = (Vec::new(), Vec::new());
        let mut tokens = 0;
        for k in 0..=iterations as u64 {
            let w = window(&b, k);
            let before = staged.token_counts().0;
            let t0 = Instant::now();
            staged.run(&w, &mut assembler)?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if k > 0 {
                // the first window fills the rings; steady state from the second on
                hop_times.push(ms);
                tokens = staged.token_counts().0 - before;
            }
            let t0 = Instant::now();
            head.run(&head_inputs)?;
            head_times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let staged_ms = median_ms(hop_times);
        println!(
            "{:<18} {single_ms:>13.3} {staged_ms:>13.3} {:>8.2}x {:>13.3} {tokens:>9}",
            b.manifest.name,
            single_ms / staged_ms,
            median_ms(head_times)
        );
    }
    Ok(())
}
