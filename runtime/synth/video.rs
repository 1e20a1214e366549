//! Draws one frame of a synthetic scene: textured wall and floor, then the bodies
//! with soft (anti-aliased) edges at their positions at the frame's time.

use super::plan::{Backdrop, Body, Segment, Shape};
use super::rng::hash_signed;
use super::{SceneConfig, MAX_SIDE};

/// Most lattice columns a texture row can need (smallest cell is 2 pixels).
const MAX_LATTICE_COLUMNS: usize = MAX_SIDE as usize / 2 + 2;

/// Renders the segment at time `t_s` into the whole rows of `rgb` that fit.
pub(crate) fn render(cfg: &SceneConfig, segment: &Segment, t_s: f64, rgb: &mut [u8]) {
    let width = cfg.width as usize;
    let row_bytes = width * 3;
    let rows = (rgb.len() / row_bytes).min(cfg.height as usize);
    let frame = &mut rgb[..rows * row_bytes];
    draw_backdrop(&segment.backdrop, width, rows, frame);
    if let Some(still) = &segment.still {
        draw_body(&still.body, still.x, still.y, width, rows, frame);
    }
    if let Some(action) = &segment.action {
        for (index, body) in action.bodies.iter().enumerate() {
            let (x, y) = action.position(index, t_s);
            draw_body(body, x, y, width, rows, frame);
        }
    }
}

/// Smoothstep weight for value-noise interpolation.
#[inline]
fn smooth(f: f32) -> f32 {
    f * f * (3.0 - 2.0 * f)
}

/// Rounds to the nearest level and saturates (without a libm `round` call).
#[inline]
fn to_byte(value: f32) -> u8 {
    (value + 0.5).clamp(0.0, 255.0) as u8
}

/// Wall above `floor_y`, floor below, both with a static blotchy texture and grain.
fn draw_backdrop(backdrop: &Backdrop, width: usize, rows: usize, frame: &mut [u8]) {
    let cell = backdrop.texture_cell.max(2) as usize;
    let columns = (width / cell + 2).min(MAX_LATTICE_COLUMNS);
    let lattice_key = backdrop.texture_key;
    let grain_key = backdrop.texture_key ^ 0x5EED_6A1A;
    let floor_y = backdrop.floor_y.max(0.0) as usize;
    let mut lattice_row = [0.0f32; MAX_LATTICE_COLUMNS];
    for (y, row) in frame.chunks_exact_mut(width * 3).take(rows).enumerate() {
        let gy = (y / cell) as u64;
        let fy = smooth((y % cell) as f32 / cell as f32);
        for (gx, value) in lattice_row.iter_mut().take(columns).enumerate() {
            let top = hash_signed(lattice_key, (gy << 32) | gx as u64);
            let bottom = hash_signed(lattice_key, ((gy + 1) << 32) | gx as u64);
            *value = top + (bottom - top) * fy;
        }
        let base = if y < floor_y {
            backdrop.wall
        } else if y < floor_y + 2 {
            // A darker seam where the wall meets the floor.
            backdrop.floor.map(|c| 0.8 * c)
        } else {
            backdrop.floor
        };
        let inverse_cell = 1.0 / cell as f32;
        let (mut gx, mut within) = (0usize, 0usize);
        for (x, pixel) in row.chunks_exact_mut(3).enumerate() {
            let fx = smooth(within as f32 * inverse_cell);
            let left = lattice_row[gx.min(columns - 1)];
            let right = lattice_row[(gx + 1).min(columns - 1)];
            within += 1;
            if within == cell {
                within = 0;
                gx += 1;
            }
            let blotch = left + (right - left) * fx;
            let grain = hash_signed(grain_key, (y * width + x) as u64);
            let offset = backdrop.texture_amp * blotch + backdrop.grain_amp * grain;
            pixel[0] = to_byte(base[0] + offset);
            pixel[1] = to_byte(base[1] + offset);
            pixel[2] = to_byte(base[2] + offset);
        }
    }
}

/// Blends a body centred at (`cx`, `cy`) over the frame, with one pixel of soft edge
/// and a slight top-to-bottom shading.
fn draw_body(body: &Body, cx: f64, cy: f64, width: usize, rows: usize, frame: &mut [u8]) {
    let half = body.half;
    let x_lo = (cx - half - 1.0).floor().max(0.0) as usize;
    let y_lo = (cy - half - 1.0).floor().max(0.0) as usize;
    let x_hi = ((cx + half + 1.0).ceil().max(0.0) as usize).min(width);
    let y_hi = ((cy + half + 1.0).ceil().max(0.0) as usize).min(rows);
    for y in y_lo..y_hi {
        let dy = y as f64 + 0.5 - cy;
        let shade = (1.06 - 0.12 * ((dy + half) / (2.0 * half)).clamp(0.0, 1.0)) as f32;
        let row = &mut frame[y * width * 3..(y + 1) * width * 3];
        for x in x_lo..x_hi {
            let dx = x as f64 + 0.5 - cx;
            let coverage = match body.shape {
                Shape::Square => {
                    (half + 0.5 - dx.abs()).clamp(0.0, 1.0)
                        * (half + 0.5 - dy.abs()).clamp(0.0, 1.0)
                }
                Shape::Disc => (half + 0.5 - (dx * dx + dy * dy).sqrt()).clamp(0.0, 1.0),
            } as f32;
            if coverage <= 0.0 {
                continue;
            }
            let pixel = &mut row[x * 3..x * 3 + 3];
            for (channel, value) in pixel.iter_mut().enumerate() {
                let color = (body.color[channel] * shade).min(255.0);
                let under = f32::from(*value);
                *value = to_byte(under + (color - under) * coverage);
            }
        }
    }
}
