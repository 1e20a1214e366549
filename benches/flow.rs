//! Optical flow throughput: flow fields per second for each estimator at the frame sizes the
//! runtime uses, on real frames (the Big Buck Bunny pairs of `tests/data/flow/`: 224x224 and
//! 320x240 as they are, 64x64 and 160x120 cropped from the 320x240 pair).
//! Run with `cargo bench --bench flow` (optionally `-- SECONDS FILTER...`); for ratios
//! against OpenCV measured in the same run, see `scripts/bench-frontends.sh`.

use std::path::Path;
use std::time::{Duration, Instant};

use avaction::frontend::flow::{estimator, FlowField, ESTIMATOR_NAMES};

/// The frame sizes measured, with the pair each is cut from (first, second image) and the
/// crop origin.
const SIZES: [(usize, usize, &str, &str, usize, usize); 4] = [
    (64, 64, "bbb_c_0.pgm", "bbb_c_similarity.pgm", 128, 88),
    (160, 120, "bbb_c_0.pgm", "bbb_c_similarity.pgm", 80, 60),
    (224, 224, "bbb_a_0.pgm", "bbb_a_rotate.pgm", 0, 0),
    (320, 240, "bbb_c_0.pgm", "bbb_c_similarity.pgm", 0, 0),
];

#[path = "../tests/common/pgm.rs"]
mod pgm;

/// Reads one of the `tests/data/flow/` images.
fn read_pgm(name: &str) -> Result<(usize, usize, Vec<f32>), String> {
    pgm::read_pgm(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/flow")
            .join(name),
    )
}

/// The `w` x `h` window at (`x0`, `y0`) of a `sw`-wide image.
fn crop(src: &[f32], sw: usize, x0: usize, y0: usize, w: usize, h: usize) -> Vec<f32> {
    (0..h)
        .flat_map(|y| src[(y0 + y) * sw + x0..][..w].iter().copied())
        .collect()
}

fn frame_pair(
    size: &(usize, usize, &str, &str, usize, usize),
) -> Result<(Vec<f32>, Vec<f32>), String> {
    let &(w, h, first, second, x0, y0) = size;
    let (sw, sh, prev) = read_pgm(first)?;
    let (_, _, next) = read_pgm(second)?;
    if x0 + w > sw || y0 + h > sh {
        return Err(format!(
            "{first}: {sw}x{sh} has no {w}x{h} window at ({x0}, {y0})"
        ));
    }
    Ok((crop(&prev, sw, x0, y0, w, h), crop(&next, sw, x0, y0, w, h)))
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
        for size in &SIZES {
            let (w, h) = (size.0, size.1);
            let label = format!("{name} {w}x{h}");
            if !filters.iter().all(|f| label.contains(f.as_str())) {
                continue;
            }
            let (prev, next) = match frame_pair(size) {
                Ok(pair) => pair,
                Err(e) => {
                    eprintln!("{e}");
                    return;
                }
            };
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
