//! Issue 14, "Hostile input": the frontends (optical flow, log-mel, image preprocessing)
//! are total. Any frame size, any float content (NaN, inf, negative, huge) and any sample
//! slice gives `Ok` or an `Error`, never a panic; `Ok` flow is finite. Property tests
//! (bounded case counts and sizes, so the file runs in seconds) plus the cases the issue
//! quotes and the failures the properties found, kept as regular tests.

use std::time::{Duration, Instant};

use avaction::clock::{AudioChunk, Nanos, VideoFrame};
use avaction::frontend::flow::{
    estimator, DisFlow, DisParams, FlowEstimator, FlowField, TvL1Flow, TvL1Params, ESTIMATOR_NAMES,
    GRAY_LIMITS, MIN_SIDE,
};
use avaction::frontend::image::{
    Crop, ImageNormalize, Preprocess, PreprocessConfig, ResizeFilter, ResizeTo,
};
use avaction::frontend::logmel::{fbank, FbankConfig, LogMel};
use avaction::window::{WindowConfig, WindowScheduler};
use avaction::ErrorKind;
use proptest::prelude::*;

/// Wall-clock bound of a single frontend call on the small inputs used here.
const CALL_BOUND: Duration = Duration::from_secs(5);

/// A smooth 0..255 texture (so the estimators have something to track).
fn texture(w: usize, h: usize, shift: f32) -> Vec<f32> {
    (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as f32 - shift, (i / w) as f32);
            128.0 + 60.0 * (x * 0.45).sin() + 50.0 * (y * 0.31 + x * 0.1).cos()
        })
        .collect()
}

/// Any float a hostile caller might pass.
fn any_gray() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => 0.0f32..=255.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => -1e6f32..0.0,
        1 => prop_oneof![Just(1e30f32), Just(f32::MAX), Just(-f32::MAX), Just(1e-40)],
        1 => 0.0f32..=1.0,
    ]
}

/// Frames of `w` x `h` (sometimes of a wrong length), mostly clean, sometimes hostile.
fn frame_pair() -> impl Strategy<Value = (usize, usize, Vec<f32>, Vec<f32>)> {
    (0usize..40, 0usize..40, any::<bool>(), 0usize..4).prop_flat_map(|(w, h, clean, extra)| {
        let n = w * h;
        let len = if extra == 3 { n + 1 } else { n };
        let content = if clean {
            prop::collection::vec(0.0f32..=255.0, len).boxed()
        } else {
            prop::collection::vec(any_gray(), len).boxed()
        };
        (
            Just(w),
            Just(h),
            content,
            prop::collection::vec(any_gray(), n),
        )
    })
}

/// Runs one estimator on one pair and checks the contract of `FlowEstimator::compute`.
fn check_flow(name: &str, w: usize, h: usize, prev: &[f32], next: &[f32]) {
    let mut est = estimator(name).expect("estimator");
    let mut out = FlowField::new(0, 0);
    let start = Instant::now();
    let result = est.compute(prev, next, w, h, &mut out);
    assert!(
        start.elapsed() < CALL_BOUND,
        "{name} {w}x{h} took {:?}",
        start.elapsed()
    );
    let valid_input = w >= MIN_SIDE
        && h >= MIN_SIDE
        && prev.len() == w * h
        && next.len() == w * h
        && prev
            .iter()
            .chain(next)
            .all(|x| (GRAY_LIMITS.0..=GRAY_LIMITS.1).contains(x));
    match result {
        Ok(()) => {
            assert!(valid_input, "{name} {w}x{h}: invalid input accepted");
            assert_eq!((out.width, out.height, out.uv.len()), (w, h, 2 * w * h));
            assert!(
                out.uv.iter().all(|x| x.is_finite()),
                "{name} {w}x{h}: non-finite flow from valid input"
            );
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Video, "{name} {w}x{h}: {e}");
            assert!(
                e.message().contains(name),
                "message names the estimator: {e}"
            );
            // The only refusal of in-range input: TV-L1 on grey scaled to 0..1.
            if valid_input {
                assert!(name.starts_with("tvl1"), "{name} {w}x{h} refused: {e}");
                assert!(e.message().contains("0..=255"), "{e}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn dis_is_total((w, h, prev, next) in frame_pair(), preset in 0usize..3) {
        check_flow(ESTIMATOR_NAMES[preset], w, h, &prev, &next);
    }

    #[test]
    fn dis_is_total_after_another_size((w, h, prev, next) in frame_pair()) {
        // The estimator keeps buffers between calls: a size after another one.
        let mut est = estimator("dis-fast").expect("estimator");
        let (a, b) = (texture(24, 17, 0.0), texture(24, 17, 1.0));
        let mut out = FlowField::new(0, 0);
        est.compute(&a, &b, 24, 17, &mut out).expect("valid");
        let _ = est.compute(&prev, &next, w, h, &mut out);
        est.compute(&a, &b, 24, 17, &mut out).expect("still valid after a refusal");
        prop_assert!(out.uv.iter().all(|x| x.is_finite()));
    }
}

proptest! {
    // TV-L1 is the slow estimator: fewer cases, same sizes.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn tvl1_is_total((w, h, prev, next) in frame_pair()) {
        check_flow("tvl1", w, h, &prev, &next);
    }
}

fn any_sample() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -1.0f32..=1.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => prop_oneof![Just(f32::MAX), Just(-f32::MAX), Just(1e30f32), Just(-3.0f32)],
    ]
}

fn small_fbank() -> FbankConfig {
    FbankConfig {
        num_mel_bins: 16,
        ..FbankConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn logmel_is_total_and_flags_non_finite_frames(
        samples in prop::collection::vec(any_sample(), 0..1500),
        split in 0usize..1500,
    ) {
        let cfg = small_fbank();
        let mut log_mel = LogMel::new(&cfg).expect("valid config");
        let (shift, len) = (log_mel.frame_shift(), log_mel.frame_len());
        let split = split.min(samples.len());
        let mut frames: Vec<Vec<f32>> = Vec::new();
        let start = Instant::now();
        let mut invalid = 0;
        for part in [&samples[..split], &samples[split..]] {
            invalid += log_mel.push(part, &mut |f| frames.push(f.to_vec()));
        }
        prop_assert!(start.elapsed() < CALL_BOUND);
        prop_assert_eq!(invalid, samples.iter().filter(|x| !x.is_finite()).count());
        prop_assert_eq!(frames.len(), log_mel.frames_in(samples.len()));
        for (k, frame) in frames.iter().enumerate() {
            let covered = &samples[k * shift..k * shift + len];
            let bad = covered.iter().any(|x| !x.is_finite());
            prop_assert_eq!(LogMel::is_invalid_frame(frame), bad, "frame {}", k);
            if bad {
                prop_assert!(frame.iter().all(|x| x.is_nan()));
            } else {
                prop_assert!(frame.iter().all(|x| x.is_finite()), "frame {}: {:?}", k, frame);
            }
        }
        // The offline path gives the same frames (NaN where the stream has NaN).
        let offline = fbank(&samples, &cfg).expect("valid");
        prop_assert_eq!(offline.len(), frames.len());
        for (a, b) in offline.iter().zip(&frames) {
            for (x, y) in a.iter().zip(b) {
                prop_assert!(x == y || (x.is_nan() && y.is_nan()));
            }
        }
    }
}

fn any_preprocess() -> impl Strategy<Value = PreprocessConfig> {
    let resize = prop_oneof![Just(ResizeFilter::Bilinear), Just(ResizeFilter::Area)];
    let resize_to = prop_oneof![
        Just(None),
        (0u32..48).prop_map(|s| Some(ResizeTo::ShortSide(s))),
        (0u32..48, 0u32..48).prop_map(|(w, h)| Some(ResizeTo::Exact([w, h]))),
    ];
    let crop = prop_oneof![
        Just(Crop::Center),
        Just(Crop::TopLeft),
        Just(Crop::TopRight),
        Just(Crop::BottomLeft),
        Just(Crop::BottomRight),
        Just(Crop::None),
    ];
    (resize, resize_to, crop).prop_map(|(resize, resize_to, crop)| PreprocessConfig {
        resize,
        resize_to,
        crop,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn image_preprocessing_is_total(
        config in any_preprocess(),
        (w, h) in (0usize..40, 0usize..40),
        (out_w, out_h) in (0usize..40, 0usize..40),
        short in any::<bool>(),
        seed in any::<u8>(),
    ) {
        let len = (w * h * 3).saturating_sub(usize::from(short));
        let rgb: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let start = Instant::now();
        match Preprocess::new(&config, &ImageNormalize::IMAGENET, (out_w, out_h)) {
            Err(e) => prop_assert!(out_w == 0 || out_h == 0 || config.resize_to.is_some(), "{}", e),
            Ok(mut pre) => {
                let mut chw = vec![0.0f32; 3 * out_w * out_h];
                let chw_result = pre.to_chw(&rgb, w, h, &mut chw);
                let mut packed = vec![0u8; 3 * out_w * out_h];
                let rgb_result = pre.to_rgb(&rgb, w, h, &mut packed);
                prop_assert_eq!(chw_result.is_ok(), rgb_result.is_ok());
                if let Err(e) = &chw_result {
                    prop_assert!(matches!(e.kind(), ErrorKind::Video | ErrorKind::Config), "{}", e);
                } else {
                    prop_assert!(w > 0 && h > 0 && !short);
                    prop_assert!(chw.iter().all(|x| x.is_finite()));
                }
                // Wrong output buffers are errors too.
                prop_assert!(pre.to_chw(&rgb, w, h, &mut chw[1..]).is_err());
                prop_assert!(pre.to_rgb(&rgb, w, h, &mut []).is_err() || out_w * out_h == 0);
            }
        }
        let mut out = vec![0.0f32; 3 * w * h];
        let normalized = ImageNormalize::IMAGENET.rgb_to_chw(&rgb, w, h, &mut out);
        prop_assert_eq!(normalized.is_ok(), w > 0 && h > 0 && !short);
        prop_assert!(start.elapsed() < CALL_BOUND);
    }
}

// -------------------------------------------------------------------------------------
// The cases quoted in issue 14, and the failures the properties found.

/// "The flow estimators panic (index out of bounds) on a 0x0 frame for a fresh estimator."
#[test]
fn zero_by_zero_on_a_fresh_estimator_is_an_error() {
    for name in ESTIMATOR_NAMES {
        for (w, h) in [(0, 0), (1, 1), (1, 9), (9, 1), (0, 64), (7, 7)] {
            let mut est = estimator(name).expect("estimator");
            let img = vec![10.0f32; w * h];
            let mut out = FlowField::new(0, 0);
            let e = est
                .compute(&img, &img, w, h, &mut out)
                .expect_err("too small");
            assert_eq!(e.kind(), ErrorKind::Video);
            assert!(
                e.message().contains(name) && e.message().contains("at least 8x8"),
                "{e}"
            );
        }
    }
}

/// "One NaN or inf pixel fills DIS fast/medium output with NaN with no error."
#[test]
fn one_non_finite_pixel_is_an_error_naming_the_pixel() {
    let (w, h) = (64, 48);
    let (prev, next) = (texture(w, h, 0.0), texture(w, h, 1.5));
    for name in ESTIMATOR_NAMES {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut est = estimator(name).expect("estimator");
            let mut out = FlowField::new(0, 0);
            let mut wild = next.clone();
            wild[5 * w + 7] = bad;
            let e = est
                .compute(&prev, &wild, w, h, &mut out)
                .expect_err("non-finite pixel");
            assert_eq!(e.kind(), ErrorKind::Video);
            assert!(
                e.message().contains(name)
                    && e.message().contains("(7, 5) of next")
                    && e.message().contains("finite"),
                "{e}"
            );
            // The estimator is still usable and its output finite.
            est.compute(&prev, &next, w, h, &mut out).expect("valid");
            assert!(out.uv.iter().all(|x| x.is_finite()), "{name}");
        }
    }
}

#[test]
fn grey_far_out_of_range_is_an_error_and_slack_is_accepted() {
    let (w, h) = (32, 32);
    let (prev, next) = (texture(w, h, 0.0), texture(w, h, 1.0));
    for name in ESTIMATOR_NAMES {
        let mut est = estimator(name).expect("estimator");
        let mut out = FlowField::new(0, 0);
        let mut huge = prev.clone();
        huge[3] = 1e30;
        let e = est.compute(&huge, &next, w, h, &mut out).expect_err("1e30");
        assert!(
            e.message().contains("(3, 0) of prev") && e.message().contains("-255..=510"),
            "{e}"
        );
        let mut negative = prev.clone();
        negative[0] = -1000.0;
        assert!(est.compute(&negative, &next, w, h, &mut out).is_err());
        // Sensor noise a little outside 0..255 is fine.
        let mut noisy = prev.clone();
        noisy[0] = -12.0;
        noisy[1] = 270.0;
        est.compute(&noisy, &next, w, h, &mut out).expect("slack");
    }
}

/// "TV-L1 silently returns ~zero flow for grey values in 0..1."
#[test]
fn tvl1_refuses_grey_scaled_to_unit_range() {
    let (w, h) = (48, 40);
    let scaled = |img: Vec<f32>| img.into_iter().map(|x| x / 255.0).collect::<Vec<f32>>();
    let (prev, next) = (scaled(texture(w, h, 0.0)), scaled(texture(w, h, 2.0)));
    let mut est = TvL1Flow::new(TvL1Params::default()).expect("tvl1");
    let mut out = FlowField::new(0, 0);
    let e = est.compute(&prev, &next, w, h, &mut out).expect_err("0..1");
    assert_eq!(e.kind(), ErrorKind::Video);
    assert!(
        e.message().contains("tvl1") && e.message().contains("scale the frames by 255"),
        "{e}"
    );
    // Flat frames (even black ones) are not 0..1 data: zero flow.
    let black = vec![0.0f32; w * h];
    est.compute(&black, &black, w, h, &mut out).expect("black");
    assert!(out.uv.iter().all(|&x| x == 0.0));
    // DIS does not depend on the grey scale the same way: it accepts 0..1.
    let mut dis = DisFlow::new(DisParams::fast()).expect("dis");
    dis.compute(&prev, &next, w, h, &mut out)
        .expect("dis on 0..1");
}

/// A scheduler of 2-frame windows (hop 1) at 25 fps with 4 log-mel frames each.
fn audio_scheduler() -> WindowScheduler {
    WindowScheduler::new(WindowConfig {
        frames: 2,
        hop_frames: 1,
        stride: 1,
        fps: 25,
        width: 16,
        height: 16,
        preprocess: None,
        flow: None,
        logmel: Some((small_fbank(), 4)),
        expect_audio: true,
        audio_wait_ns: None,
        mel_history: 64,
        max_pending: 8,
    })
    .expect("scheduler")
}

fn grey_frame(k: i64) -> VideoFrame {
    VideoFrame {
        t_ns: Nanos::from_nanos(k * 40_000_000),
        width: 16,
        height: 16,
        rgb: vec![90; 16 * 16 * 3],
    }
}

/// "Log-mel turns a NaN sample into silence": the frames are NaN, the window is flagged
/// and counted.
#[test]
fn nan_audio_sample_flags_the_window() {
    let mut log_mel = LogMel::new(&small_fbank()).expect("valid");
    let mut samples = vec![0.1f32; 400];
    samples[100] = f32::NAN;
    let mut got = Vec::new();
    assert_eq!(log_mel.push(&samples, &mut |f| got = f.to_vec()), 1);
    assert!(got.iter().all(|x| x.is_nan()), "not silence: {got:?}");

    let mut scheduler = audio_scheduler();
    let mut audio: Vec<f32> = (0..3200).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    // 43.75 ms: window 0 (frames 0-1, 0-80 ms) hears its last 40 ms (mel frames from 40 ms,
    // the audio ends with the video), window 1 those from 80 ms
    audio[700] = f32::NAN;
    scheduler.push_audio(&AudioChunk {
        t_ns: Nanos::ZERO,
        rate: 16_000,
        samples: audio,
    });
    for k in 0..3 {
        scheduler.push_frame(&grey_frame(k)).expect("frame");
    }
    let first = scheduler.poll(None, false).expect("first window");
    assert!(first.invalid_audio > 0, "window 0 holds the NaN sample");
    let second = scheduler.poll(None, false).expect("second window");
    assert_eq!(
        second.invalid_audio, 0,
        "window 1's audio starts at 80 ms, after the NaN"
    );
    assert!(second.logmel.iter().all(|x| x.is_finite()));
    let stats = scheduler.stats();
    assert_eq!(stats.audio_samples_invalid, 1);
    assert_eq!(stats.windows_invalid_audio, 1);
}

/// Two black frames from a camera (every grey value at most 1) with TV-L1 in the
/// scheduler: zero flow, not an error that would end the stream.
#[test]
fn scheduler_with_tvl1_survives_black_frames() {
    use avaction::frontend::flow::{FlowEncoding, FlowSettings};
    let mut scheduler = WindowScheduler::new(WindowConfig {
        frames: 2,
        hop_frames: 1,
        stride: 1,
        fps: 25,
        width: 16,
        height: 16,
        preprocess: None,
        flow: Some(FlowSettings {
            estimator: "tvl1".into(),
            tvl1: None,
            encoding: FlowEncoding::Float,
        }),
        logmel: None,
        expect_audio: false,
        audio_wait_ns: None,
        mel_history: 8,
        max_pending: 4,
    })
    .expect("scheduler");
    for k in 0..3 {
        let mut f = grey_frame(k);
        f.rgb
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 2) as u8);
        scheduler.push_frame(&f).expect("black frames are fine");
    }
    assert!(scheduler.poll(None, true).is_some());
}
