//! Optical flow throughput: flow fields per second for each estimator at the frame sizes
//! the runtime uses. Run with `cargo bench --bench flow` (optionally `-- SECONDS FILTER...`).

use std::time::{Duration, Instant};

use avaction::frontend::flow::{estimator, FlowField, ESTIMATOR_NAMES};

/// A smooth deterministic texture and the same texture shifted by (`dx`, `dy`).
fn frame_pair(w: usize, h: usize, dx: f32, dy: f32) -> (Vec<f32>, Vec<f32>) {
    let tex = |x: f32, y: f32| {
        128.0
            + 40.0 * (0.31 * x + 0.17 * y).sin()
            + 30.0 * (0.23 * y - 0.41 * x + 1.0).sin()
            + 20.0 * (0.67 * x + 0.53 * y + 2.0).sin()
            + 15.0 * (0.9 * y + 0.2 * x).cos()
    };
    let render = |ox: f32, oy: f32| {
        (0..w * h)
            .map(|i| tex((i % w) as f32 - ox, (i / w) as f32 - oy))
            .collect::<Vec<f32>>()
    };
    (render(0.0, 0.0), render(dx, dy))
}

fn main() {
    // `cargo bench` passes `--bench`; a plain number sets the seconds per measurement, any
    // other word keeps only the presets / sizes containing it (e.g. `fast`, `64x64`).
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let seconds = args
        .iter()
        .find_map(|a| a.parse::<f64>().ok())
        .unwrap_or(1.0);
    let filters: Vec<&String> = args.iter().filter(|a| a.parse::<f64>().is_err()).collect();
    let budget = Duration::from_secs_f64(seconds);
    println!(
        "{:<14} {:>9} {:>12} {:>10} {:>12} {:>10}",
        "preset", "size", "best f/s", "best ms", "mean f/s", "mean ms"
    );
    for name in ESTIMATOR_NAMES {
        for (w, h) in [(64, 64), (160, 120), (224, 224), (320, 240)] {
            let label = format!("{name} {w}x{h}");
            if !filters.iter().all(|f| label.contains(f.as_str())) {
                continue;
            }
            let (prev, next) = frame_pair(w, h, 2.5, -1.5);
            let mut est = match estimator(name) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("{name}: {e}");
                    return;
                }
            };
            let mut flow = FlowField::new(w, h);
            // Warm-up: sizes the buffers.
            for _ in 0..3 {
                if let Err(e) = est.compute(&prev, &next, w, h, &mut flow) {
                    eprintln!("{name} {w}x{h}: {e}");
                    return;
                }
            }
            // Batches of calls; the fastest batch is the least disturbed by other processes
            // on the machine, the mean is what a loaded machine gives.
            let batch = (20_000 / (w * h / 64)).clamp(1, 64);
            let start = Instant::now();
            let (mut count, mut best) = (0u64, f64::INFINITY);
            while start.elapsed() < budget {
                let t = Instant::now();
                for _ in 0..batch {
                    let _ = est.compute(&prev, &next, w, h, &mut flow);
                }
                best = best.min(t.elapsed().as_secs_f64() / batch as f64);
                count += batch as u64;
            }
            let mean = start.elapsed().as_secs_f64() / count as f64;
            std::hint::black_box(&flow);
            println!(
                "{name:<14} {:>9} {:>12.0} {:>10.3} {:>12.0} {:>10.3}",
                format!("{w}x{h}"),
                1.0 / best,
                1e3 * best,
                1.0 / mean,
                1e3 * mean
            );
        }
    }
}
