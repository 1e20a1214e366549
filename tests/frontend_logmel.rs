//! Log-mel frontend against torchaudio goldens (`tests/golden/make_logmel_goldens.py`),
//! streaming against offline, and the cost of one 10 ms hop.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use avaction::frontend::logmel::{fbank, FbankConfig, LogMel};

/// Largest allowed |ours - torchaudio| on raw log-mel values.
const RAW_TOLERANCE: f32 = 1e-3;
/// AST's dataset statistics: AST feeds `(fbank - MEAN) / (2 * STD)` to the model.
const AST_MEAN: f32 = -4.267_739_3;
const AST_STD: f32 = 4.568_997_4;

#[derive(serde::Deserialize)]
struct GoldenIndex {
    waveforms: BTreeMap<String, GoldenWave>,
    cases: Vec<GoldenCase>,
}

#[derive(serde::Deserialize)]
struct GoldenWave {
    file: String,
    sample_rate: u32,
    num_samples: usize,
}

#[derive(serde::Deserialize)]
struct GoldenCase {
    name: String,
    waveform: String,
    config: FbankConfig,
    file: String,
    num_frames: usize,
    num_bins: usize,
    /// Linear (not log) mel energies: compared relative to their magnitude.
    #[serde(default)]
    linear: bool,
}

/// Reads a raw little-endian f32 file of exactly `len` values.
fn read_f32(name: &str, len: usize) -> Vec<f32> {
    let path = common::data_dir("logmel").join(name);
    let values = common::read_f32(&path);
    assert_eq!(values.len(), len, "{}: wrong size", path.display());
    values
}

fn index() -> GoldenIndex {
    let text = std::fs::read_to_string(common::data_dir("logmel").join("goldens.json"))
        .expect("goldens.json");
    serde_json::from_str(&text).expect("goldens.json parses")
}

fn waveform(index: &GoldenIndex, case: &GoldenCase) -> Vec<f32> {
    let wave = &index.waveforms[&case.waveform];
    assert_eq!(wave.sample_rate, case.config.sample_rate, "{}", case.name);
    read_f32(&wave.file, wave.num_samples)
}

fn max_abs_diff(a: &[f32], b: &[f32], map: impl Fn(f32) -> f32) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (map(x) - map(y)).abs())
        .fold(0.0, f32::max)
}

#[test]
fn fbank_matches_torchaudio_goldens() {
    let index = index();
    assert!(index.cases.len() >= 14, "golden index lists too few cases");
    for case in &index.cases {
        let samples = waveform(&index, case);
        let golden = read_f32(&case.file, case.num_frames * case.num_bins);
        let frames = fbank(&samples, &case.config).expect("golden config is valid");
        assert_eq!(frames.len(), case.num_frames, "{}: frame count", case.name);
        assert!(
            frames.iter().all(|f| f.len() == case.num_bins),
            "{}",
            case.name
        );
        let ours: Vec<f32> = frames.concat();
        if case.linear {
            // Energies span many decades: compare relative to max(|golden|, 1).
            let rel = ours
                .iter()
                .zip(&golden)
                .map(|(&x, &y)| (x - y).abs() / y.abs().max(1.0))
                .fold(0.0, f32::max);
            println!(
                "{:24} {:4} x {:3}: max relative diff (linear) {rel:.2e}",
                case.name, case.num_frames, case.num_bins
            );
            assert!(rel <= RAW_TOLERANCE, "{}: relative diff {rel}", case.name);
            continue;
        }

        let raw = max_abs_diff(&ours, &golden, |x| x);
        let ast = max_abs_diff(&ours, &golden, |x| (x - AST_MEAN) / (2.0 * AST_STD));
        let n = golden.len() as f64;
        let mean = golden.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let std = (golden
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let (mean, std) = (mean as f32, std as f32);
        let clip = max_abs_diff(&ours, &golden, |x| (x - mean) / std);
        println!(
            "{:24} {:4} x {:3}: max |diff| raw {raw:.2e}, AST-normalised {ast:.2e}, \
             clip-normalised {clip:.2e}",
            case.name, case.num_frames, case.num_bins
        );
        assert!(raw <= RAW_TOLERANCE, "{}: raw diff {raw}", case.name);
        assert!(
            ast <= RAW_TOLERANCE,
            "{}: AST-normalised diff {ast}",
            case.name
        );
        assert!(
            clip <= RAW_TOLERANCE,
            "{}: clip-normalised diff {clip}",
            case.name
        );
    }
}

/// xorshift64*: a fixed, dependency-free sequence of chunk sizes.
struct ChunkSizes(u64);

impl ChunkSizes {
    fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % (max + 1)
    }
}

fn stream(log_mel: &mut LogMel, samples: &[f32], sizes: &mut ChunkSizes) -> Vec<Vec<f32>> {
    let max_chunk = 2 * log_mel.frame_len() + 3;
    let mut frames = Vec::new();
    let mut rest = samples;
    while !rest.is_empty() {
        let take = sizes.next(max_chunk).min(rest.len());
        let (chunk, tail) = rest.split_at(take);
        log_mel.push(chunk, &mut |frame| frames.push(frame.to_vec()));
        rest = tail;
    }
    frames
}

fn bits(frames: &[Vec<f32>]) -> Vec<u32> {
    frames.iter().flatten().map(|x| x.to_bits()).collect()
}

#[test]
fn streaming_in_random_chunks_is_bit_identical_to_offline() {
    let index = index();
    let mut sizes = ChunkSizes(0x9e37_79b9_7f4a_7c15);
    for case in &index.cases {
        let samples = waveform(&index, case);
        let offline = fbank(&samples, &case.config).expect("valid");
        let mut log_mel = LogMel::new(&case.config).expect("valid");
        for round in 0..3 {
            let streamed = stream(&mut log_mel, &samples, &mut sizes);
            assert_eq!(streamed.len(), offline.len(), "{} round {round}", case.name);
            assert!(
                bits(&streamed) == bits(&offline),
                "{} round {round}: streamed frames differ from offline",
                case.name
            );
            log_mel.reset();
        }
    }
}

#[test]
fn a_shift_longer_than_the_frame_skips_samples_like_snip_edges() {
    // Frames of 8 ms every 20 ms: frame k covers [320 k, 320 k + 128).
    let cfg = FbankConfig {
        frame_length_ms: 8.0,
        frame_shift_ms: 20.0,
        num_mel_bins: 23,
        ..FbankConfig::default()
    };
    let samples: Vec<f32> = (0..4000)
        .map(|n| ((n * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let frames = fbank(&samples, &cfg).expect("valid");
    assert_eq!(frames.len(), 1 + (4000 - 128) / 320);
    for (k, frame) in frames.iter().enumerate() {
        let alone = fbank(&samples[k * 320..k * 320 + 128], &cfg).expect("valid");
        assert_eq!(alone.len(), 1);
        assert!(
            bits(&alone) == bits(std::slice::from_ref(frame)),
            "frame {k}"
        );
    }
    let mut log_mel = LogMel::new(&cfg).expect("valid");
    let streamed = stream(&mut log_mel, &samples, &mut ChunkSizes(7));
    assert!(bits(&streamed) == bits(&frames));
}

#[test]
fn a_clip_shorter_than_one_frame_gives_no_frames() {
    let cfg = FbankConfig::default();
    let log_mel = LogMel::new(&cfg).expect("valid");
    assert_eq!(log_mel.frames_in(399), 0);
    assert_eq!(log_mel.frames_in(400), 1);
    assert_eq!(log_mel.frames_in(559), 1);
    assert_eq!(log_mel.frames_in(560), 2);
    assert!(fbank(&[0.1; 399], &cfg).expect("valid").is_empty());
    let silent = fbank(&[0.0; 400], &cfg).expect("valid");
    assert!(silent[0].iter().all(|&x| x == f32::EPSILON.ln()));
}

#[test]
fn invalid_config_is_an_error_naming_the_field() {
    let text = r#"{"num_mel_bins": 2}"#;
    let cfg: FbankConfig = serde_json::from_str(text).expect("parses");
    let error = LogMel::new(&cfg).expect_err("2 bins is too few");
    assert!(error.to_string().contains("num_mel_bins"), "{error}");
    assert!(serde_json::from_str::<FbankConfig>(r#"{"dither": 0.0}"#).is_err());
}

/// Streams a clip hop by hop, as a microphone feeds it, and prints the cost of one hop
/// (the benchmark `scripts/bench-frontends.sh` gives the real figure against torchaudio).
#[test]
fn streaming_hop_by_hop_prints_its_cost() {
    let index = index();
    let case = &index.cases[0];
    let samples = waveform(&index, case);
    let mut log_mel = LogMel::new(&case.config).expect("valid");
    let hop = log_mel.frame_shift();
    let mut checksum = 0.0f32;
    let mut frames = 0usize;
    // Warm up, then time several passes over the clip hop by hop, as a microphone feeds it.
    log_mel.push(&samples, &mut |f| checksum += f[0]);
    let start = Instant::now();
    for _ in 0..20 {
        log_mel.reset();
        for chunk in samples.chunks(hop) {
            log_mel.push(chunk, &mut |f| {
                checksum += f[0];
                frames += 1;
            });
        }
    }
    let per_hop = start.elapsed().as_secs_f64() / frames as f64;
    let hop_seconds = hop as f64 / f64::from(case.config.sample_rate);
    println!(
        "log-mel ({} bins, frame {} / hop {} samples): {:.2} us per hop, {:.0}x real time \
         (checksum {checksum})",
        log_mel.num_bins(),
        log_mel.frame_len(),
        hop,
        per_hop * 1e6,
        hop_seconds / per_hop
    );
    // Speed is measured by `scripts/bench-frontends.sh`, not asserted here (noisy machines).
    assert!(checksum.is_finite());
}
