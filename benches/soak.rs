//! Soak: hours of media through one runtime at full speed (a 25 fps test pattern, read
//! as fast as the pipeline goes), one table row per slice: resident memory, latency
//! percentiles and the windows' timestamp error. Flat RSS, no latency creep and no
//! drift are the targets; the last row compares the last slice with the first.
//!
//!   cargo bench --bench soak                 # 1 hour of media, 5-minute slices
//!   AVACTION_SOAK_S=14400 cargo bench --bench soak   # 4 hours
//!
//! `tests/soak.rs` runs five minutes of media in `make test`.

#[path = "../tests/common/soak.rs"]
mod soak;

fn main() {
    let media_s: f64 = std::env::var("AVACTION_SOAK_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v: &f64| v.is_finite() && *v >= 60.0)
        .unwrap_or(3600.0);
    let slice_s = (media_s / 12.0).max(30.0);
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/mov-small");
    println!("soak: {media_s:.0} s of media through models/mov-small, slices of {slice_s:.0} s");
    println!(
        "| media s | wall s | media/wall | windows | RSS MiB | p50 ms | p99 ms | max ts error us |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let slices = soak::run(model, media_s, slice_s, |s| {
        println!(
            "| {:.0} | {:.1} | {:.1}x | {} | {:.1} | {:.2} | {:.2} | {:.3} |",
            s.media_s,
            s.wall_s,
            slice_s / s.wall_s.max(1e-9),
            s.windows,
            s.rss_kib as f64 / 1024.0,
            s.p50_ms,
            s.p99_ms,
            s.max_ts_error_us
        );
    });
    if let (Some(a), Some(b)) = (slices.get(1), slices.last()) {
        println!(
            "last slice / second slice: RSS {:.3}x, p50 {:.2}x, p99 {:.2}x, throughput {:.2}x",
            b.rss_kib as f64 / a.rss_kib.max(1) as f64,
            b.p50_ms / a.p50_ms.max(1e-9),
            b.p99_ms / a.p99_ms.max(1e-9),
            a.wall_s / b.wall_s.max(1e-9)
        );
    }
}
