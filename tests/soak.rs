//! The short version of `benches/soak.rs`: five minutes of media through one runtime at full
//! speed, in one-minute slices. Memory must not grow from the second slice on (the
//! first one warms up), and window times must stay exact (no drift).

#[path = "common/soak.rs"]
mod soak;

#[test]
fn five_minutes_of_media_keep_memory_flat_and_time_exact() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/mov-small");
    let slices = soak::run(model, 300.0, 60.0, |s| println!("{s:?}"));
    assert!(slices.len() >= 3, "{slices:?}");
    let (second, last) = (&slices[1], &slices[slices.len() - 1]);
    let growth_kib = last.rss_kib as i64 - second.rss_kib as i64;
    assert!(
        growth_kib < 16 * 1024,
        "RSS grew {growth_kib} KiB between the second and the last slice: {slices:?}"
    );
    for s in &slices {
        assert!(s.max_ts_error_us < 1.0, "timestamp drift: {s:?}");
    }
}
