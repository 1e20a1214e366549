//! TensorRT against tract on the shipped model, where TensorRT and a GPU exist: FP32
//! within 1e-3 and FP16 within 1e-2 of tract (relative to the largest logit), on the
//! golden inputs of models/cavnet-small/golden/, plus a latency table (printed, not
//! asserted). Elsewhere it prints why it is skipped and passes: CI has no GPU.
//!
//! Run: `cargo test --features tensorrt --test tensorrt_gpu -- --nocapture`.

mod common;

use avaction::backend::engine_cache::{EngineCache, Precision};
use avaction::backend::{self, tensorrt, Backend, BackendChoice, BackendOptions, Tensor};
use avaction::model::Bundle;
use std::path::Path;
use std::time::Instant;

fn golden_inputs(bundle: &Bundle) -> Vec<Tensor> {
    bundle
        .manifest
        .inputs
        .iter()
        .map(|spec| {
            let path = bundle.dir.join(format!("golden/inputs_{}.bin", spec.name));
            let data = common::read_f32(&path);
            assert_eq!(
                data.len(),
                spec.shape.iter().product::<usize>(),
                "{}",
                path.display()
            );
            Tensor {
                shape: spec.shape.clone(),
                data,
            }
        })
        .collect()
}

fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape, b.shape);
    let scale = a.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let diff = a
        .data
        .iter()
        .zip(&b.data)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

fn ms_per_run(backend: &mut dyn Backend, inputs: &[Tensor]) -> f64 {
    for _ in 0..5 {
        backend.run(inputs).expect("warm-up");
    }
    let n = 50;
    let t0 = Instant::now();
    for _ in 0..n {
        backend.run(inputs).expect("run");
    }
    t0.elapsed().as_secs_f64() * 1e3 / n as f64
}

#[test]
fn tensorrt_matches_tract_on_the_shipped_model() {
    let gpu = match tensorrt::availability() {
        Ok(gpu) => gpu,
        Err(reason) => {
            eprintln!("skipped: TensorRT not available here: {reason}");
            return;
        }
    };
    let bundle = Bundle::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cavnet-small"))
        .expect("bundle");
    let inputs = golden_inputs(&bundle);
    let cache = std::env::temp_dir().join(format!("avaction-trt-gpu-{}", std::process::id()));
    let open = |choice, precision| {
        let mut opts = BackendOptions {
            choice,
            ..BackendOptions::default()
        };
        opts.engine.precision = precision;
        opts.engine.cache = EngineCache::new(&cache);
        let t0 = Instant::now();
        let (b, _) = backend::open(&bundle.graph(), &opts).expect("open");
        (b, t0.elapsed().as_secs_f64())
    };
    let (mut tract, _) = open(BackendChoice::Tract, Precision::Fp32);
    let reference = tract.run(&inputs).expect("tract");
    let tract_ms = ms_per_run(tract.as_mut(), &inputs);
    eprintln!(
        "TensorRT {} on {} (compute {}.{})",
        gpu.tensorrt_version, gpu.name, gpu.compute_capability.0, gpu.compute_capability.1
    );
    eprintln!("| backend | engine build s | ms/window | vs tract | max rel diff |");
    eprintln!("| tract | - | {tract_ms:.3} | 1.00 | 0 |");
    for (precision, limit) in [(Precision::Fp32, 1e-3), (Precision::Fp16, 1e-2)] {
        let (mut trt, build_s) = open(BackendChoice::TensorRt, precision);
        assert_eq!(trt.name(), "tensorrt");
        let out = trt.run(&inputs).expect("tensorrt");
        let diff = rel_diff(&reference, &out);
        let ms = ms_per_run(trt.as_mut(), &inputs);
        eprintln!(
            "| tensorrt {} | {build_s:.1} | {ms:.3} | {:.2} | {diff:.2e} |",
            precision.as_str(),
            ms / tract_ms
        );
        assert!(diff <= limit, "{}: {diff} > {limit}", precision.as_str());
        // A second open finds the engine in the cache.
        let t0 = Instant::now();
        open(BackendChoice::TensorRt, precision);
        eprintln!("  cached open: {:.2} s", t0.elapsed().as_secs_f64());
    }
    std::fs::remove_dir_all(&cache).ok();
}
