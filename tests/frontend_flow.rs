//! Optical flow frontend: end-point error of the DIS presets and TV-L1 on synthetic frame
//! pairs with known motion (translated textures, a textured square over a textured
//! background), zero motion, robustness on odd and tiny sizes, no allocation after warm-up,
//! MOV encoding.

use avaction::frontend::flow::{estimator, mov_encode, rgb_to_gray, FlowField, ESTIMATOR_NAMES};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

#[global_allocator]
static GLOBAL: counting_alloc::CountingAlloc = counting_alloc::CountingAlloc;

// ---------------------------------------------------------------------------------------
// Deterministic smooth textures that can be evaluated at any real position, so shifted
// frames are exact (no resampling of a discrete image).

struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Sum of random plane waves (periods 7..28 px, all orientations) plus smooth value noise
/// (cosine-interpolated random lattice, 5 px cells). Values stay within 0..255.
/// Rich in fine detail, so small motions are well determined; see [`Texture::natural`].
struct Texture {
    waves: Vec<[f32; 4]>, // kx, ky, phase, amplitude
    lattice: Vec<f32>,
    lattice_side: usize,
    /// Value-noise octaves: (cell size in px, amplitude).
    octaves: Vec<(f32, f32)>,
    offset: (f32, f32),
}

impl Texture {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let waves = (0..8)
            .map(|_| {
                let period = 7.0 + 21.0 * rng.next_f32();
                let angle = std::f32::consts::TAU * rng.next_f32();
                let k = std::f32::consts::TAU / period;
                [
                    k * angle.cos(),
                    k * angle.sin(),
                    std::f32::consts::TAU * rng.next_f32(),
                    6.0 + 6.0 * rng.next_f32(),
                ]
            })
            .collect();
        let lattice_side = 128;
        let lattice = (0..lattice_side * lattice_side)
            .map(|_| rng.next_f32() * 2.0 - 1.0)
            .collect();
        Texture {
            waves,
            lattice,
            lattice_side,
            octaves: vec![(5.0, 35.0)],
            offset: (37.0 * rng.next_f32(), 37.0 * rng.next_f32()),
        }
    }

    /// Like [`Texture::new`] but with a natural-image-like spectrum: no plane waves, value
    /// noise over five octaves (cells of 3 to 48 px) with amplitude growing with the cell.
    fn natural(seed: u64) -> Self {
        let mut tex = Texture::new(seed);
        tex.waves.clear();
        tex.octaves = vec![
            (3.0, 10.0),
            (6.0, 16.0),
            (12.0, 24.0),
            (24.0, 32.0),
            (48.0, 40.0),
        ];
        tex
    }

    fn noise(&self, x: f32, y: f32, cell: f32) -> f32 {
        let gx = (x + self.offset.0) / cell + 8.0;
        let gy = (y + self.offset.1) / cell + 8.0;
        let (fx0, fy0) = (gx.floor(), gy.floor());
        let n = self.lattice_side;
        let at = |i: f32, j: f32| {
            let (i, j) = ((i as usize) % n, (j as usize) % n);
            self.lattice[j * n + i]
        };
        let smooth = |t: f32| 0.5 - 0.5 * (std::f32::consts::PI * t).cos();
        let (tx, ty) = (smooth(gx - fx0), smooth(gy - fy0));
        let top = at(fx0, fy0) + tx * (at(fx0 + 1.0, fy0) - at(fx0, fy0));
        let bottom = at(fx0, fy0 + 1.0) + tx * (at(fx0 + 1.0, fy0 + 1.0) - at(fx0, fy0 + 1.0));
        top + ty * (bottom - top)
    }

    fn at(&self, x: f32, y: f32) -> f32 {
        let waves: f32 = self
            .waves
            .iter()
            .map(|[kx, ky, ph, a]| a * (kx * x + ky * y + ph).sin())
            .sum();
        let noise: f32 = self
            .octaves
            .iter()
            .map(|&(cell, amplitude)| amplitude * self.noise(x, y, cell))
            .sum();
        (128.0 + waves + noise).clamp(0.0, 255.0)
    }

    fn render(&self, w: usize, h: usize, dx: f32, dy: f32) -> Vec<f32> {
        let mut img = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                img.push(self.at(x as f32 - dx, y as f32 - dy));
            }
        }
        img
    }
}

/// A frame pair where the whole image moves by (`dx`, `dy`).
fn translated_pair(seed: u64, w: usize, h: usize, dx: f32, dy: f32) -> (Vec<f32>, Vec<f32>) {
    let tex = Texture::new(seed);
    (tex.render(w, h, 0.0, 0.0), tex.render(w, h, dx, dy))
}

/// Adds independent Gaussian noise of standard deviation `sigma` (camera sensor noise).
fn add_noise(img: &mut [f32], sigma: f32, seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    for px in img.iter_mut() {
        // Box-Muller.
        let (a, b) = (rng.next_f32().max(1e-7), rng.next_f32());
        let g = (-2.0 * a.ln()).sqrt() * (std::f32::consts::TAU * b).cos();
        *px += sigma * g;
    }
}

/// Fraction of pixel `i` (covering `[i - 0.5, i + 0.5]`) inside `[lo, hi]`.
fn coverage(i: usize, lo: f32, hi: f32) -> f32 {
    let (a, b) = (i as f32 - 0.5, i as f32 + 0.5);
    (b.min(hi) - a.max(lo)).clamp(0.0, 1.0)
}

/// A textured square of side `side` with top-left `origin` over a static textured background;
/// in the next frame the square (and its texture) moved by `shift`. Anti-aliased edges.
fn square_scene(
    w: usize,
    h: usize,
    origin: (f32, f32),
    side: f32,
    shift: (f32, f32),
) -> (Vec<f32>, Vec<f32>) {
    let background = Texture::new(11);
    let object = Texture::new(12);
    let frame = |ox: f32, oy: f32| {
        let mut img = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let cov = coverage(x, ox, ox + side) * coverage(y, oy, oy + side);
                let bg = background.at(x as f32, y as f32);
                // Object texture is attached to the square: darker/brighter so edges show.
                let fg = 0.6 * object.at(x as f32 - ox, y as f32 - oy) + 60.0;
                img.push(cov * fg + (1.0 - cov) * bg);
            }
        }
        img
    };
    (
        frame(origin.0, origin.1),
        frame(origin.0 + shift.0, origin.1 + shift.1),
    )
}

// ---------------------------------------------------------------------------------------
// Metrics.

/// Mean end-point error over the pixels where `mask(x, y)` holds, against flow `truth(x, y)`.
fn mean_epe(
    flow: &FlowField,
    truth: impl Fn(usize, usize) -> (f32, f32),
    mask: impl Fn(usize, usize) -> bool,
) -> f32 {
    let (mut sum, mut count) = (0.0f64, 0usize);
    for y in 0..flow.height {
        for x in 0..flow.width {
            if !mask(x, y) {
                continue;
            }
            let (u, v) = flow.at(x, y).unwrap_or((f32::NAN, f32::NAN));
            let (tu, tv) = truth(x, y);
            sum += f64::from(((u - tu).powi(2) + (v - tv).powi(2)).sqrt());
            count += 1;
        }
    }
    assert!(count > 0, "empty evaluation mask");
    (sum / count as f64) as f32
}

fn compute(name: &str, prev: &[f32], next: &[f32], w: usize, h: usize) -> FlowField {
    let mut est = estimator(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut flow = FlowField::new(w, h);
    est.compute(prev, next, w, h, &mut flow)
        .unwrap_or_else(|e| panic!("{name} {w}x{h}: {e}"));
    flow
}

/// Mean EPE of a preset on a translated texture (with sensor noise of std `noise`), over
/// pixels at least `margin` from the border.
fn translation_epe(
    name: &str,
    w: usize,
    h: usize,
    (dx, dy): (f32, f32),
    seed: u64,
    noise: f32,
) -> f32 {
    let (mut prev, mut next) = translated_pair(seed, w, h, dx, dy);
    if noise > 0.0 {
        add_noise(&mut prev, noise, seed + 100);
        add_noise(&mut next, noise, seed + 200);
    }
    let flow = compute(name, &prev, &next, w, h);
    let margin = (dx.abs().max(dy.abs()).ceil() as usize) + 3;
    mean_epe(
        &flow,
        |_, _| (dx, dy),
        |x, y| x >= margin && y >= margin && x + margin < w && y + margin < h,
    )
}

const SHIFTS: [(f32, f32); 5] = [
    (0.4, 0.25),
    (1.5, -0.75),
    (-2.25, 1.0),
    (3.0, 2.0),
    (6.0, -4.0),
];

/// Checks the worst mean EPE over [`SHIFTS`] x 2 textures, noise-free and with sensor noise
/// (std 3 gray levels), against `limits` = (clean, noisy).
fn check_translations(name: &str, w: usize, h: usize, limits: (f32, f32)) {
    for (noise, limit) in [(0.0, limits.0), (3.0, limits.1)] {
        let mut worst = 0.0f32;
        let mut report = String::new();
        for (i, &shift) in SHIFTS.iter().enumerate() {
            for seed in [1u64, 2] {
                let epe = translation_epe(name, w, h, shift, seed + 10 * i as u64, noise);
                report += &format!("{shift:?}#{seed}: {epe:.3}  ");
                worst = worst.max(epe);
            }
        }
        println!("{name} {w}x{h} noise {noise}: translation EPE worst {worst:.3}: {report}");
        assert!(
            worst < limit,
            "{name} {w}x{h} noise {noise}: worst mean EPE {worst:.3} >= {limit} ({report})"
        );
    }
}

// ---------------------------------------------------------------------------------------
// (a) translated textures

#[test]
fn translation_fast_64x64() {
    check_translations("dis-fast", 64, 64, (0.03, 0.2));
}

#[test]
fn translation_fast_160x120() {
    check_translations("dis-fast", 160, 120, (0.1, 0.1));
}

#[test]
fn translation_medium_64x64() {
    check_translations("dis-medium", 64, 64, (0.02, 0.2));
}

#[test]
fn translation_medium_160x120() {
    // Like OpenCV's medium preset, the search stops at half resolution (80x60 here).
    check_translations("dis-medium", 160, 120, (0.05, 0.2));
}

#[test]
fn translation_ultrafast_64x64() {
    check_translations("dis-ultrafast", 64, 64, (0.08, 0.35));
}

#[test]
fn translation_ultrafast_160x120() {
    check_translations("dis-ultrafast", 160, 120, (0.15, 0.15));
}

// TV-L1 stops iterating once the flow changes by about `epsilon` = 0.01 px per iteration, so
// subpixel motions keep an error of ~0.05 px (integer ones ~0.005), as in OpenCV.
#[test]
fn translation_tvl1_64x64() {
    check_translations("tvl1", 64, 64, (0.07, 0.08));
}

#[test]
fn translation_tvl1_160x120() {
    check_translations("tvl1", 160, 120, (0.07, 0.08));
}

// ---------------------------------------------------------------------------------------
// (b) moving textured square over a textured background

fn check_square(name: &str, w: usize, h: usize, side: f32, shift: (f32, f32), limits: (f32, f32)) {
    let origin = (w as f32 * 0.3, h as f32 * 0.3);
    let (prev, next) = square_scene(w, h, origin, side, shift);
    let flow = compute(name, &prev, &next, w, h);
    let (x0, y0) = origin;
    let inside_by = |x: usize, y: usize, ox: f32, oy: f32, d: f32| {
        let (x, y) = (x as f32, y as f32);
        x >= ox + d && x <= ox + side - d && y >= oy + d && y <= oy + side - d
    };
    // Inside: pixels of the square in the previous frame, 3 px from its edges.
    let inside = mean_epe(&flow, |_, _| shift, |x, y| inside_by(x, y, x0, y0, 3.0));
    // Background: 4 px away from the square in both frames and 3 px from the image border.
    let background = mean_epe(
        &flow,
        |_, _| (0.0, 0.0),
        |x, y| {
            let near = |ox: f32, oy: f32| inside_by(x, y, ox, oy, -4.0);
            x >= 3
                && y >= 3
                && x + 3 < w
                && y + 3 < h
                && !near(x0, y0)
                && !near(x0 + shift.0, y0 + shift.1)
        },
    );
    println!(
        "{name} {w}x{h} square {side} shift {shift:?}: EPE inside {inside:.3}, background {background:.3}"
    );
    assert!(
        inside < limits.0 && background < limits.1,
        "{name} {w}x{h} shift {shift:?}: EPE inside {inside:.3} (limit {}), background {background:.3} (limit {})",
        limits.0,
        limits.1
    );
}

#[test]
fn square_fast_64x64() {
    check_square("dis-fast", 64, 64, 24.0, (3.0, 2.0), (0.1, 0.02));
    check_square("dis-fast", 64, 64, 24.0, (-2.5, 1.5), (0.1, 0.02));
}

#[test]
fn square_fast_160x120() {
    check_square("dis-fast", 160, 120, 48.0, (4.0, -3.0), (0.35, 0.02));
}

#[test]
fn square_tvl1() {
    // Smooth (lambda 0.15): the flow bleeds a little over the square's edges.
    check_square("tvl1", 64, 64, 24.0, (3.0, 2.0), (0.15, 0.045));
    check_square("tvl1", 64, 64, 24.0, (-2.5, 1.5), (0.25, 0.045));
    check_square("tvl1", 160, 120, 48.0, (4.0, -3.0), (0.08, 0.02));
}

#[test]
fn square_medium_and_ultrafast_64x64() {
    check_square("dis-medium", 64, 64, 24.0, (3.0, 2.0), (0.25, 0.03));
    check_square("dis-ultrafast", 64, 64, 24.0, (3.0, 2.0), (0.25, 0.03));
}

// ---------------------------------------------------------------------------------------
// (c) zero motion

#[test]
fn zero_motion_gives_zero_flow() {
    for name in ESTIMATOR_NAMES {
        for (w, h) in [(64, 64), (160, 120)] {
            let (prev, _) = translated_pair(5, w, h, 0.0, 0.0);
            let flow = compute(name, &prev, &prev, w, h);
            let max = flow.uv.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
            println!("{name} {w}x{h} zero motion: max |flow| {max:.2e}");
            assert!(
                max < 1e-3,
                "{name} {w}x{h}: max |flow| {max} on identical frames"
            );
        }
        // A flat frame has no texture at all: flow must be zero and finite, not NaN.
        let flat = vec![100.0f32; 64 * 64];
        let flow = compute(name, &flat, &flat, 64, 64);
        assert!(flow.uv.iter().all(|&x| x == 0.0), "{name}: flat frames");
    }
}

// ---------------------------------------------------------------------------------------
// Robustness: sizes, bad input, allocation.

#[test]
fn all_sizes_from_8_work_and_smaller_or_mismatched_frames_are_errors() {
    for name in ESTIMATOR_NAMES {
        let mut est = estimator(name).unwrap_or_else(|e| panic!("{e}"));
        let mut flow = FlowField::new(0, 0);
        for (w, h) in [
            (8, 8),
            (9, 31),
            (16, 16),
            (17, 23),
            (31, 16),
            (33, 47),
            (64, 64),
            (65, 63),
            (100, 17),
            (224, 224),
            (320, 240),
        ] {
            let (prev, next) = translated_pair(3, w, h, 1.0, -1.0);
            est.compute(&prev, &next, w, h, &mut flow)
                .unwrap_or_else(|e| panic!("{name} {w}x{h}: {e}"));
            assert_eq!((flow.width, flow.height, flow.uv.len()), (w, h, 2 * w * h));
            assert!(flow.uv.iter().all(|x| x.is_finite()), "{name} {w}x{h}");
            // Extreme input (values far outside 0..255, NaN) must not panic either: it is
            // refused (issue 14: non-finite or out-of-range grey is an error, not NaN flow).
            let mut wild = next.clone();
            wild[0] = f32::NAN;
            wild[w * h / 2] = 1e30;
            let err = est.compute(&prev, &wild, w, h, &mut flow).err();
            assert!(
                err.as_ref().map(|e| e.kind()) == Some(avaction::ErrorKind::Video),
                "{name} {w}x{h} wild: {err:?}"
            );
        }
        for (w, h) in [(7, 64), (64, 4), (0, 0), (1, 1)] {
            let img = vec![0.0f32; w * h];
            assert!(est.compute(&img, &img, w, h, &mut flow).is_err(), "{w}x{h}");
        }
        let img = vec![0.0f32; 64 * 64];
        assert!(est.compute(&img, &img[1..], 64, 64, &mut flow).is_err());
        assert!(est.compute(&img, &img, 64, 63, &mut flow).is_err());
    }
}

#[test]
fn no_allocation_after_the_first_call_at_a_size() {
    for name in ESTIMATOR_NAMES {
        let mut est = estimator(name).unwrap_or_else(|e| panic!("{e}"));
        for (w, h) in [(64, 64), (160, 120)] {
            let (prev, next) = translated_pair(4, w, h, 2.0, 1.0);
            let mut flow = FlowField::new(w, h);
            est.compute(&prev, &next, w, h, &mut flow)
                .unwrap_or_else(|e| panic!("{e}"));
            let before = allocations();
            for _ in 0..3 {
                est.compute(&next, &prev, w, h, &mut flow)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            assert_eq!(allocations(), before, "{name} {w}x{h} allocated");
        }
        // Going back and forth between sizes seen before does not allocate either.
        let pairs: Vec<_> = [(64, 64), (160, 120), (33, 17)]
            .iter()
            .map(|&(w, h)| (w, h, translated_pair(4, w, h, 2.0, 1.0)))
            .collect();
        let mut flow = FlowField::new(160, 120);
        for (w, h, (prev, next)) in &pairs {
            est.compute(prev, next, *w, *h, &mut flow)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let before = allocations();
        for _ in 0..2 {
            for (w, h, (prev, next)) in &pairs {
                est.compute(prev, next, *w, *h, &mut flow)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        assert_eq!(allocations(), before, "{name}: alternating sizes allocated");
    }
}

// ---------------------------------------------------------------------------------------
// (d) MOV encoding and gray conversion

#[test]
fn mov_encode_maps_bound_to_byte_range() {
    let values = [
        (0.0, 128u8), // 127.5 rounds half to even like cvRound
        (20.0, 255),
        (-20.0, 0),
        (25.0, 255),
        (-1e9, 0),
        (10.0, 191), // 191.25
        (-10.0, 64), // 63.75
        (0.1, 128),  // 128.14
        (-0.1, 127), // 126.86
        (f32::NAN, 128),
    ];
    let w = values.len();
    let mut flow = FlowField::new(w, 1);
    for (i, &(x, _)) in values.iter().enumerate() {
        flow.uv[2 * i] = x; // u
        flow.uv[2 * i + 1] = x; // v
    }
    let mut out = vec![9u8; 3 * w];
    mov_encode(&flow, 20.0, &mut out);
    for (i, &(x, want)) in values.iter().enumerate() {
        assert_eq!(out[i], want, "u = {x}");
        assert_eq!(out[w + i], want, "v = {x}");
        assert_eq!(out[2 * w + i], 0, "third channel");
    }
    // Any value: monotone, and the exact formula 255 * (x + 20) / 40, rounded.
    let mut flow = FlowField::new(401, 1);
    for i in 0..401 {
        flow.uv[2 * i] = -25.0 + 0.125 * i as f32;
    }
    let mut out = vec![0u8; 3 * 401];
    mov_encode(&flow, 20.0, &mut out);
    for (i, &byte) in out.iter().take(401).enumerate() {
        let x = (-25.0f64 + 0.125 * i as f64).clamp(-20.0, 20.0);
        let want = (255.0 * (x + 20.0) / 40.0).round_ties_even();
        assert_eq!(f64::from(byte), want, "x = {x}");
    }
}

#[test]
fn gray_conversion_feeds_the_estimator() {
    let (w, h) = (64, 48);
    let tex = Texture::new(9);
    let rgb: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            let g = tex.at((i % w) as f32, (i / w) as f32) as u8;
            [g, g / 2, 255 - g]
        })
        .collect();
    let mut gray = vec![0.0f32; w * h];
    rgb_to_gray(&rgb, &mut gray);
    let p = 17 * w + 5;
    let want = 0.299 * f32::from(rgb[3 * p])
        + 0.587 * f32::from(rgb[3 * p + 1])
        + 0.114 * f32::from(rgb[3 * p + 2]);
    assert!((gray[p] - want).abs() < 1e-3);
    let flow = compute("dis-fast", &gray, &gray, w, h);
    assert!(flow.uv.iter().all(|x| x.abs() < 1e-3));
}

#[test]
fn large_motion_is_found_through_the_pyramid() {
    // DIS: motions up to about a tenth of the frame (on a texture with a natural spectrum:
    // coarse levels need coarse structure). TV-L1 with OpenCV's pyramid (5 levels of 0.8, the
    // coarsest at 0.41 of the size) reaches about 10 px, like OpenCV's (at 160x120, a shift
    // of (14, -10) gives a mean EPE of 4.7 px in both). EPE over pixels 20 px from the border.
    let dis = [
        (64, 64, (12.0, -8.0), 0.05),
        (160, 120, (10.0, -7.0), 0.1),
        (160, 120, (20.0, -14.0), 0.3),
        (224, 224, (-24.0, 20.0), 0.35),
        (320, 240, (32.0, 24.0), 0.6),
    ];
    let tvl1 = [
        (64, 64, (12.0, -8.0), 0.02),
        (160, 120, (10.0, -7.0), 0.03),
        (224, 224, (-9.0, 7.5), 0.2),
        (320, 240, (10.0, -7.0), 0.05),
        (320, 240, (-10.0, 8.0), 0.35),
    ];
    for name in ESTIMATOR_NAMES {
        let cases = if name == "tvl1" { &tvl1 } else { &dis };
        for &(w, h, shift, limit) in cases {
            let tex = Texture::natural(7);
            let (prev, next) = (
                tex.render(w, h, 0.0, 0.0),
                tex.render(w, h, shift.0, shift.1),
            );
            let flow = compute(name, &prev, &next, w, h);
            let m = 20;
            let epe = mean_epe(
                &flow,
                |_, _| shift,
                |x, y| x >= m && y >= m && x + m < w && y + m < h,
            );
            println!("{name} {w}x{h} shift {shift:?}: EPE {epe:.3}");
            assert!(
                epe < limit,
                "{name} {w}x{h} shift {shift:?}: EPE {epe:.3} >= {limit}"
            );
        }
    }
}
