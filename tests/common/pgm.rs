//! Reads the 8-bit binary PGM images of `tests/data/flow/` (shared by
//! `tests/frontend_flow_opencv.rs` and `benches/flow.rs` through `#[path]`).

use std::path::Path;

/// Reads a binary 8-bit PGM (`P5`, maxval 255) as (width, height, gray `f32` in 0..255).
pub fn read_pgm(path: &Path) -> Result<(usize, usize, Vec<f32>), String> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
    // Header: four whitespace-separated fields, then one whitespace byte, then the pixels.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let start = i;
        while bytes.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
            i += 1;
        }
        if i == start {
            return Err(format!("{name}: truncated PGM header"));
        }
        fields.push(String::from_utf8_lossy(&bytes[start..i]).into_owned());
    }
    let parse = |s: &str| s.parse::<usize>().map_err(|e| format!("{name}: {s}: {e}"));
    let (w, h) = (parse(&fields[1])?, parse(&fields[2])?);
    let pixels = bytes.get(i + 1..).unwrap_or_default();
    if fields[0] != "P5" || fields[3] != "255" || pixels.len() != w * h {
        return Err(format!("{name}: not an 8-bit {w}x{h} binary PGM"));
    }
    Ok((w, h, pixels.iter().map(|&b| f32::from(b)).collect()))
}
