//! Image normalisation against numpy goldens made the torchvision way
//! (`tests/golden/make_image_goldens.py`), and the cost of one 224 x 224 frame.

use std::path::{Path, PathBuf};
use std::time::Instant;

use avaction::frontend::image::ImageNormalize;

const TOLERANCE: f32 = 1e-5;

#[derive(serde::Deserialize)]
struct GoldenCase {
    name: String,
    width: usize,
    height: usize,
    normalize: ImageNormalize,
    rgb: String,
    chw: String,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/image")
}

fn read(name: &str) -> Vec<u8> {
    let path = data_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn rgb_to_chw_matches_torchvision_style_goldens() {
    let text = String::from_utf8(read("goldens.json")).expect("utf-8");
    let cases: Vec<GoldenCase> = serde_json::from_str(&text).expect("goldens.json parses");
    assert_eq!(cases.len(), 3);
    for case in &cases {
        let rgb = read(&case.rgb);
        let golden: Vec<f32> = read(&case.chw)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(rgb.len(), case.width * case.height * 3, "{}", case.name);
        assert_eq!(golden.len(), rgb.len(), "{}", case.name);
        let mut out = vec![f32::NAN; rgb.len()];
        case.normalize
            .rgb_to_chw(&rgb, case.width, case.height, &mut out)
            .expect("valid golden case");
        let worst = out
            .iter()
            .zip(&golden)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "{:16} {}x{}: max |diff| {worst:.2e}",
            case.name, case.width, case.height
        );
        assert!(worst <= TOLERANCE, "{}: max diff {worst}", case.name);
    }
}

#[test]
fn a_224_frame_converts_quickly() {
    let (width, height) = (224, 224);
    let rgb: Vec<u8> = (0..width * height * 3)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let mut out = vec![0.0f32; rgb.len()];
    let norm = ImageNormalize::IMAGENET;
    norm.rgb_to_chw(&rgb, width, height, &mut out)
        .expect("valid");
    let runs = 50;
    let start = Instant::now();
    for _ in 0..runs {
        norm.rgb_to_chw(&rgb, width, height, &mut out)
            .expect("valid");
    }
    let per_frame = start.elapsed().as_secs_f64() / f64::from(runs);
    println!("rgb_to_chw 224x224: {:.1} us per frame", per_frame * 1e6);
    assert!(out.iter().all(|x| x.is_finite()));
    // A 30 fps camera leaves 33 ms per frame; preprocessing must be a small part of it.
    assert!(per_frame < 0.005, "{:.1} us per frame", per_frame * 1e6);
}
