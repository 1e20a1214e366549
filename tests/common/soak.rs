//! The soak run shared by `benches/soak.rs` (hours of media) and `tests/soak.rs` (its
//! short version): one runtime reads a long non-live test pattern as fast as it can,
//! and every slice of media time reports resident memory, latency percentiles and the
//! timestamp error of the windows (their end times against frame count / fps).

#![allow(dead_code)] // shared by the bench (which prints every field) and the test
use avaction::{AudioSource, Output, Runtime, VideoSource};
use std::time::Instant;

/// One slice of the run.
#[derive(Debug, Clone)]
pub struct Slice {
    /// Media time at the end of the slice, seconds.
    pub media_s: f64,
    /// Wall-clock seconds the slice took.
    pub wall_s: f64,
    /// Windows in the slice.
    pub windows: usize,
    /// Resident memory at the end of the slice, KiB.
    pub rss_kib: u64,
    /// Latency percentiles over the slice's windows, ms.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest |window end - expected end| in the slice, microseconds.
    pub max_ts_error_us: f64,
}

/// Resident memory of this process, KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs `media_s` seconds of a 25 fps ball pattern through `model` (an audio-optional
/// bundle: the pattern has no audio) and reports a slice every `slice_s` of media.
pub fn run(model: &str, media_s: f64, slice_s: f64, mut report: impl FnMut(&Slice)) -> Vec<Slice> {
    let fps = 25.0;
    let frames = (media_s * fps).round() as u64;
    let runtime = Runtime::builder()
        .model(model)
        .video(VideoSource::Pipeline(format!(
            "videotestsrc pattern=ball num-buffers={frames} ! capsfilter caps=video/x-raw,width=160,height=120,framerate=25/1"
        )))
        .audio(AudioSource::None)
        .build()
        .expect("soak runtime");
    let hop = runtime.bundle().manifest.window.hop_frames as f64;
    let mut slices = Vec::new();
    let mut latencies = Vec::new();
    let mut max_error = 0f64;
    let mut first: Option<(u64, f64)> = None;
    let mut slice_started = Instant::now();
    let mut next_edge = slice_s;
    for output in runtime.outputs() {
        let Output::Prediction(p) = output else {
            continue;
        };
        let (w0, e0) = *first.get_or_insert((p.window, p.end_s));
        let expected = e0 + (p.window - w0) as f64 * hop / fps;
        max_error = max_error.max((p.end_s - expected).abs());
        latencies.push(p.latency_ms);
        if p.end_s >= next_edge {
            latencies.sort_by(f64::total_cmp);
            let slice = Slice {
                media_s: p.end_s,
                wall_s: slice_started.elapsed().as_secs_f64(),
                windows: latencies.len(),
                rss_kib: rss_kib(),
                p50_ms: percentile(&latencies, 0.5),
                p99_ms: percentile(&latencies, 0.99),
                max_ts_error_us: max_error * 1e6,
            };
            report(&slice);
            slices.push(slice);
            latencies.clear();
            max_error = 0.0;
            slice_started = Instant::now();
            next_edge += slice_s;
        }
    }
    let stats = runtime.finish().expect("the soak run ends cleanly");
    assert_eq!(stats.windows_dropped, 0, "{stats:?}");
    slices
}
