//! Image preprocessing per frame: a 640x480 RGB frame to a 224x224 model input (short side
//! 224, centre crop, ImageNet normalisation, CHW f32), antialiased bilinear and area, next to
//! OpenCV measured in the same run.
//!
//! Run with `cargo bench --bench preprocess` (optionally `-- SECONDS`). With
//! `AVACTION_BENCH_PYTHON` set to a Python that has numpy, opencv-python and torch (e.g. the
//! project venv's), `benches/preprocess_reference.py` first times `cv2.resize` (INTER_LINEAR
//! and INTER_AREA to 298x224, one thread), `cv2.dnn.blobFromImage` (resize + crop + mean /
//! scale + CHW) and torch's antialiased bilinear on the same frame, and the table gains the
//! ratio ours / OpenCV.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use avaction::frontend::image::{
    Crop, ImageNormalize, Preprocess, PreprocessConfig, ResizeFilter, ResizeTo,
};

const WIDTH: usize = 640;
const HEIGHT: usize = 480;
const SIDE: usize = 224;

/// The frame both sides use: smooth colour ramps with a little texture, as
/// `preprocess_reference.py` builds it.
fn frame() -> Vec<u8> {
    let mut rgb = Vec::with_capacity(WIDTH * HEIGHT * 3);
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let t = ((x * 7 + y * 13) % 32) as u8;
            rgb.push((x * 255 / (WIDTH - 1)) as u8 ^ t);
            rgb.push((y * 255 / (HEIGHT - 1)) as u8 ^ t);
            rgb.push(((x + y) % 256) as u8);
        }
    }
    rgb
}

/// Best and mean seconds per call of `f` over `budget`, in batches.
fn time(budget: Duration, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..5 {
        f();
    }
    let batch = 10;
    let start = Instant::now();
    let (mut count, mut best) = (0u32, f64::INFINITY);
    while start.elapsed() < budget || count == 0 {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / f64::from(batch));
        count += batch;
    }
    (best, start.elapsed().as_secs_f64() / f64::from(count))
}

/// `name best_us mean_us` lines of the Python reference, if `AVACTION_BENCH_PYTHON` is set.
fn reference(seconds: f64) -> HashMap<String, (f64, f64)> {
    let Ok(python) = std::env::var("AVACTION_BENCH_PYTHON") else {
        println!("(set AVACTION_BENCH_PYTHON to a Python with cv2 + torch for the OpenCV columns)");
        return HashMap::new();
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/preprocess_reference.py"
    );
    let output = match Command::new(&python)
        .arg(script)
        .arg(seconds.to_string())
        .output()
    {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "{script} failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return HashMap::new();
        }
        Err(e) => {
            eprintln!("cannot run {python}: {e}");
            return HashMap::new();
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let mut times = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [name, best, mean] = fields[..] {
            if let (Ok(best), Ok(mean)) = (best.parse::<f64>(), mean.parse::<f64>()) {
                times.insert(name.to_string(), (best, mean));
            }
        } else if !line.is_empty() {
            println!("reference: {line}");
        }
    }
    times
}

fn main() {
    let seconds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<f64>().ok())
        .unwrap_or(1.0);
    let budget = Duration::from_secs_f64(seconds);
    let reference = reference(seconds);
    let rgb = frame();
    let norm = ImageNormalize::IMAGENET;
    let mut chw = vec![0.0f32; 3 * SIDE * SIDE];
    let mut bytes = vec![0u8; 3 * SIDE * SIDE];

    println!("\n640x480 RGB -> short side 224 -> centre crop 224x224, one thread (us per frame)\n");
    println!(
        "{:<34} {:>9} {:>9}   {:<30} {:>9} {:>7}",
        "ours", "best", "mean", "reference", "best", "ratio"
    );
    let row = |name: &str, (best, mean): (f64, f64), reference_name: &str| {
        let (ref_text, ratio) = match reference.get(reference_name) {
            Some(&(ref_best, _)) => (
                format!("{ref_best:>9.1}"),
                format!("{:>6.2}x", best * 1e6 / ref_best),
            ),
            None => (format!("{:>9}", "-"), format!("{:>7}", "-")),
        };
        println!(
            "{name:<34} {:>9.1} {:>9.1}   {reference_name:<30} {ref_text} {ratio}",
            best * 1e6,
            mean * 1e6
        );
    };
    for (filter, label, opencv) in [
        (
            ResizeFilter::Bilinear,
            "bilinear-aa",
            [
                "cv2.resize_INTER_LINEAR",
                "torch_bilinear_aa_uint8",
                "torch_bilinear_aa_float",
            ],
        ),
        (
            ResizeFilter::Area,
            "area",
            ["cv2.resize_INTER_AREA", "cv2.resize_INTER_AREA_float", ""],
        ),
    ] {
        let config = PreprocessConfig {
            resize: filter,
            resize_to: Some(ResizeTo::ShortSide(SIDE as u32)),
            crop: Crop::Center,
        };
        let mut pre = match Preprocess::new(&config, &norm, (SIDE, SIDE)) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{e}");
                return;
            }
        };
        let chw_time = time(budget, || {
            let _ = pre.to_chw(&rgb, WIDTH, HEIGHT, &mut chw);
        });
        std::hint::black_box(&chw);
        row(&format!("{label} to_chw (full)"), chw_time, opencv[0]);
        for reference_name in &opencv[1..] {
            if !reference_name.is_empty() {
                row("", chw_time, reference_name);
            }
        }
        if filter == ResizeFilter::Bilinear {
            row("", chw_time, "cv2.dnn.blobFromImage");
        }
        let rgb_time = time(budget, || {
            let _ = pre.to_rgb(&rgb, WIDTH, HEIGHT, &mut bytes);
        });
        std::hint::black_box(&bytes);
        row(&format!("{label} to_rgb (u8 out)"), rgb_time, opencv[0]);
    }
    // The normalisation alone, on a frame already at the model size (today's path).
    let small: Vec<u8> = rgb[..3 * SIDE * SIDE].to_vec();
    let lut = time(budget, || {
        let _ = norm.rgb_to_chw(&small, SIDE, SIDE, &mut chw);
    });
    row("rgb_to_chw 224x224 (no resize)", lut, "");
}
