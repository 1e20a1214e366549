//! Image helpers for the flow estimators: 2x box downsampling, gradients, replicate padding,
//! bilinear warping and flow upsampling. All work on row-major `f32` planes in caller buffers.

/// Halves an image with a 2x2 box filter (OpenCV's `INTER_AREA` for an exact factor of 2);
/// an odd last row or column is dropped. `dst` holds `(sw / 2) * (sh / 2)` values.
pub(crate) fn downsample_half(src: &[f32], sw: usize, sh: usize, dst: &mut [f32]) {
    let (dw, dh) = (sw / 2, sh / 2);
    if dw == 0 || dh == 0 {
        return;
    }
    for (y, out) in dst.chunks_exact_mut(dw).take(dh).enumerate() {
        let r0 = &src[2 * y * sw..][..2 * dw];
        let r1 = &src[(2 * y + 1) * sw..][..2 * dw];
        for ((o, a), b) in out
            .iter_mut()
            .zip(r0.chunks_exact(2))
            .zip(r1.chunks_exact(2))
        {
            *o = 0.25 * (a[0] + a[1] + b[0] + b[1]);
        }
    }
}

/// Sobel gradients divided by 8 (so they are derivatives per pixel), replicate border.
pub(crate) fn sobel_gradients(src: &[f32], w: usize, h: usize, gx: &mut [f32], gy: &mut [f32]) {
    if w == 0 || h == 0 {
        return;
    }
    for y in 0..h {
        let up = &src[y.saturating_sub(1) * w..][..w];
        let mid = &src[y * w..][..w];
        let down = &src[(y + 1).min(h - 1) * w..][..w];
        let gxr = &mut gx[y * w..][..w];
        let gyr = &mut gy[y * w..][..w];
        // Vertical smoothing and difference per column, then the horizontal pass.
        let col_smooth = |x: usize| up[x] + 2.0 * mid[x] + down[x];
        let col_diff = |x: usize| down[x] - up[x];
        if w == 1 {
            gxr[0] = 0.0;
            gyr[0] = col_diff(0) * 0.5;
            continue;
        }
        gxr[0] = (col_smooth(1) - col_smooth(0)) * 0.125;
        gyr[0] = (3.0 * col_diff(0) + col_diff(1)) * 0.125;
        for x in 1..w - 1 {
            gxr[x] = (col_smooth(x + 1) - col_smooth(x - 1)) * 0.125;
            gyr[x] = (col_diff(x - 1) + 2.0 * col_diff(x) + col_diff(x + 1)) * 0.125;
        }
        let l = w - 1;
        gxr[l] = (col_smooth(l) - col_smooth(l - 1)) * 0.125;
        gyr[l] = (col_diff(l - 1) + 3.0 * col_diff(l)) * 0.125;
    }
}

/// Central differences `(f(x+1) - f(x-1)) / 2`, one-sided at the border (replicate).
pub(crate) fn central_gradients(src: &[f32], w: usize, h: usize, gx: &mut [f32], gy: &mut [f32]) {
    if w == 0 || h == 0 {
        return;
    }
    for y in 0..h {
        let row = &src[y * w..][..w];
        let gxr = &mut gx[y * w..][..w];
        if w == 1 {
            gxr[0] = 0.0;
        } else {
            gxr[0] = 0.5 * (row[1] - row[0]);
            for x in 1..w - 1 {
                gxr[x] = 0.5 * (row[x + 1] - row[x - 1]);
            }
            gxr[w - 1] = 0.5 * (row[w - 1] - row[w - 2]);
        }
        let up = &src[y.saturating_sub(1) * w..][..w];
        let down = &src[(y + 1).min(h - 1) * w..][..w];
        for ((g, d), u) in gy[y * w..][..w].iter_mut().zip(down).zip(up) {
            *g = 0.5 * (d - u);
        }
    }
}

/// Copies `src` (`w` x `h`) into `dst` (`(w + 2 * border)` x `(h + 2 * border)`) with
/// replicated borders.
pub(crate) fn pad_replicate(src: &[f32], w: usize, h: usize, border: usize, dst: &mut [f32]) {
    if w == 0 || h == 0 {
        return;
    }
    let pw = w + 2 * border;
    for py in 0..h + 2 * border {
        let sy = py.saturating_sub(border).min(h - 1);
        let srow = &src[sy * w..][..w];
        let drow = &mut dst[py * pw..][..pw];
        drow[..border].fill(srow[0]);
        drow[border..border + w].copy_from_slice(srow);
        drow[border + w..].fill(srow[w - 1]);
    }
}

/// Bilinear sample of `src` at (`x`, `y`) with replicated borders.
#[inline]
pub(crate) fn sample_bilinear(src: &[f32], w: usize, h: usize, x: f32, y: f32) -> f32 {
    let xmax = (w - 1) as f32;
    let ymax = (h - 1) as f32;
    // max/min (not clamp) so NaN maps to the border instead of propagating into indices.
    let x = x.max(0.0).min(xmax);
    let y = y.max(0.0).min(ymax);
    let x0 = x as usize; // x >= 0, truncation is floor
    let y0 = y as usize;
    let fx = x - x0 as f32;
    let fy = y - y0 as f32;
    let x1 = (x0 + 1).min(w - 1);
    let y1 = (y0 + 1).min(h - 1);
    let r0 = y0 * w;
    let r1 = y1 * w;
    let top = src[r0 + x0] + fx * (src[r0 + x1] - src[r0 + x0]);
    let bottom = src[r1 + x0] + fx * (src[r1 + x1] - src[r1 + x0]);
    top + fy * (bottom - top)
}

/// Warps `src` by the flow: `dst(x, y) = src(x + u(x, y), y + v(x, y))`, bilinear,
/// replicated borders.
pub(crate) fn warp_bilinear(
    src: &[f32],
    w: usize,
    h: usize,
    u: &[f32],
    v: &[f32],
    dst: &mut [f32],
) {
    if w == 0 || h == 0 {
        return;
    }
    for y in 0..h {
        let ur = &u[y * w..][..w];
        let vr = &v[y * w..][..w];
        let dr = &mut dst[y * w..][..w];
        for (x, ((d, &du), &dv)) in dr.iter_mut().zip(ur).zip(vr).enumerate() {
            *d = sample_bilinear(src, w, h, x as f32 + du, y as f32 + dv);
        }
    }
}

/// Source index pair and weight for destination index `i` when upsampling `n` samples by
/// `factor` with pixel-centre alignment: `(i + 0.5) / factor - 0.5`, clamped to `0..=n - 1`.
#[inline]
fn upsample_tap(i: usize, factor: usize, n: usize) -> (usize, usize, f32) {
    let s = ((i as f32 + 0.5) / factor as f32 - 0.5)
        .max(0.0)
        .min((n - 1) as f32);
    let i0 = s as usize; // s >= 0: truncation is floor
    ((i0).min(n - 1), (i0 + 1).min(n - 1), s - i0 as f32)
}

/// Upsamples a flow field by `factor` (a power of two, at least 2) exactly like
/// [`upsample_flow`] (bilinear, pixel-centre aligned, vectors multiplied by `factor`), but
/// writes interleaved `u, v` pairs into `dst_uv` (`2 * dw * dh` values). Separable: each
/// destination row blends two source rows into `scratch` (`2 * sw` values), then expands
/// them by blocks of `factor` pixels whose weights are fixed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn upsample_flow_interleaved(
    src_u: &[f32],
    src_v: &[f32],
    sw: usize,
    sh: usize,
    dst_uv: &mut [f32],
    dw: usize,
    dh: usize,
    factor: usize,
    scratch: &mut [f32],
) {
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 || factor < 2 || scratch.len() < 2 * sw {
        return;
    }
    let scale = factor as f32;
    let (tu, tv) = scratch[..2 * sw].split_at_mut(sw);
    for (y, row) in dst_uv.chunks_exact_mut(2 * dw).take(dh).enumerate() {
        let (y0, y1, fy) = upsample_tap(y, factor, sh);
        let (u0, u1) = (&src_u[y0 * sw..][..sw], &src_u[y1 * sw..][..sw]);
        let (v0, v1) = (&src_v[y0 * sw..][..sw], &src_v[y1 * sw..][..sw]);
        for k in 0..sw {
            tu[k] = scale * (u0[k] + fy * (u1[k] - u0[k]));
            tv[k] = scale * (v0[k] + fy * (v1[k] - v0[k]));
        }
        match factor {
            2 => expand_row::<2>(tu, tv, row),
            4 => expand_row::<4>(tu, tv, row),
            8 => expand_row::<8>(tu, tv, row),
            _ => {}
        }
        // Columns the blocks did not cover (all of them for factors above 8).
        let done = if factor <= 8 { factor * sw } else { 0 };
        for x in done.min(dw)..dw {
            let (x0, x1, fx) = upsample_tap(x, factor, sw);
            row[2 * x] = tu[x0] + fx * (tu[x1] - tu[x0]);
            row[2 * x + 1] = tv[x0] + fx * (tv[x1] - tv[x0]);
        }
    }
}

/// Expands rows `tu`, `tv` by `F` (even) into the interleaved `row` (first `F * tu.len()`
/// pixels, or fewer if `row` is shorter): destination pixel `F k + j` lies between source
/// `k - 1` and `k` (j < F / 2) or `k` and `k + 1`, at a weight that depends on `j` only.
/// Each block of `F` pixels is `F / 2` vectors `[u, v, u, v]`.
#[inline]
fn expand_row<const F: usize>(tu: &[f32], tv: &[f32], row: &mut [f32]) {
    let n = tu.len().min(tv.len());
    if n == 0 {
        return;
    }
    // Weight of the neighbour (left for j < F / 2, right otherwise), per pixel pair.
    let weight = |j: usize| (2 * j as i32 + 1 - F as i32).unsigned_abs() as f32 / (2 * F) as f32;
    let pairs: [wide::f32x4; F] = std::array::from_fn(|m| {
        let (a, b) = (weight(2 * m), weight(2 * m + 1));
        wide::f32x4::new([a, a, b, b])
    });
    for (k, out) in row.chunks_exact_mut(2 * F).take(n).enumerate() {
        let (l, r) = (k.saturating_sub(1), (k + 1).min(n - 1));
        let c = wide::f32x4::new([tu[k], tv[k], tu[k], tv[k]]);
        let to_left = wide::f32x4::new([tu[l], tv[l], tu[l], tv[l]]) - c;
        let to_right = wide::f32x4::new([tu[r], tv[r], tu[r], tv[r]]) - c;
        let mixed = wide::f32x4::new([tu[l], tv[l], tu[r], tv[r]]) - c;
        for (m, (dst, &w)) in out.chunks_exact_mut(4).zip(&pairs).enumerate() {
            let d = if F == 2 {
                mixed
            } else if 2 * m + 1 < F / 2 {
                to_left
            } else {
                to_right
            };
            dst.copy_from_slice(&(c + w * d).to_array());
        }
    }
}

/// Bilinearly resizes a flow field by `factor` (a power of two) with pixel-centre alignment
/// (`x_src = (x + 0.5) / factor - 0.5`) and multiplies the vectors by `factor`.
/// Source is `sw` x `sh`, destination `dw` x `dh` (which may be a little smaller or larger
/// than `factor` times the source when sizes were odd).
#[allow(clippy::too_many_arguments)]
pub(crate) fn upsample_flow(
    src_u: &[f32],
    src_v: &[f32],
    sw: usize,
    sh: usize,
    dst_u: &mut [f32],
    dst_v: &mut [f32],
    dw: usize,
    dh: usize,
    factor: f32,
) {
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 {
        return;
    }
    if factor == 2.0 {
        upsample_flow_x2(src_u, src_v, sw, sh, dst_u, dst_v, dw, dh);
        return;
    }
    let inv = 1.0 / factor;
    let xmax = (sw - 1) as f32;
    let ymax = (sh - 1) as f32;
    for y in 0..dh {
        let sy = ((y as f32 + 0.5) * inv - 0.5).max(0.0).min(ymax);
        let y0 = sy as usize;
        let y1 = (y0 + 1).min(sh - 1);
        let fy = sy - y0 as f32;
        let (u0, u1) = (&src_u[y0 * sw..][..sw], &src_u[y1 * sw..][..sw]);
        let (v0, v1) = (&src_v[y0 * sw..][..sw], &src_v[y1 * sw..][..sw]);
        let du = &mut dst_u[y * dw..][..dw];
        let dv = &mut dst_v[y * dw..][..dw];
        for x in 0..dw {
            let sx = ((x as f32 + 0.5) * inv - 0.5).max(0.0).min(xmax);
            let x0 = sx as usize;
            let x1 = (x0 + 1).min(sw - 1);
            let fx = sx - x0 as f32;
            let lerp2 = |a: &[f32], b: &[f32]| {
                let top = a[x0] + fx * (a[x1] - a[x0]);
                let bottom = b[x0] + fx * (b[x1] - b[x0]);
                top + fy * (bottom - top)
            };
            du[x] = factor * lerp2(u0, u1);
            dv[x] = factor * lerp2(v0, v1);
        }
    }
}

/// [`upsample_flow`] for a factor of 2: destination pixel `x` samples the source at
/// `x / 2 - 0.25`, i.e. weights (0.25, 0.75) on columns (k - 1, k) for x = 2k and
/// (0.75, 0.25) on (k, k + 1) for x = 2k + 1, clamped at the borders; same for rows.
#[allow(clippy::too_many_arguments)]
fn upsample_flow_x2(
    src_u: &[f32],
    src_v: &[f32],
    sw: usize,
    sh: usize,
    dst_u: &mut [f32],
    dst_v: &mut [f32],
    dw: usize,
    dh: usize,
) {
    let taps = |i: usize, n: usize| -> (usize, usize, f32) {
        let k = i / 2;
        if i.is_multiple_of(2) {
            (k.saturating_sub(1).min(n - 1), k.min(n - 1), 0.75)
        } else {
            (k.min(n - 1), (k + 1).min(n - 1), 0.25)
        }
    };
    for y in 0..dh {
        let (y0, y1, fy) = taps(y, sh);
        let (u0, u1) = (&src_u[y0 * sw..][..sw], &src_u[y1 * sw..][..sw]);
        let (v0, v1) = (&src_v[y0 * sw..][..sw], &src_v[y1 * sw..][..sw]);
        let du = &mut dst_u[y * dw..][..dw];
        let dv = &mut dst_v[y * dw..][..dw];
        for x in 0..dw {
            let (x0, x1, fx) = taps(x, sw);
            let cu0 = u0[x0] + fy * (u1[x0] - u0[x0]);
            let cu1 = u0[x1] + fy * (u1[x1] - u0[x1]);
            let cv0 = v0[x0] + fy * (v1[x0] - v0[x0]);
            let cv1 = v0[x1] + fy * (v1[x1] - v0[x1]);
            du[x] = 2.0 * (cu0 + fx * (cu1 - cu0));
            dv[x] = 2.0 * (cv0 + fx * (cv1 - cv0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_of_a_ramp_are_exact_inside() {
        let (w, h) = (7, 5);
        let img: Vec<f32> = (0..w * h)
            .map(|i| 3.0 * (i % w) as f32 - 2.0 * (i / w) as f32)
            .collect();
        let (mut gx, mut gy) = (vec![0.0; w * h], vec![0.0; w * h]);
        sobel_gradients(&img, w, h, &mut gx, &mut gy);
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                assert!((gx[y * w + x] - 3.0).abs() < 1e-5);
                assert!((gy[y * w + x] + 2.0).abs() < 1e-5);
            }
        }
        central_gradients(&img, w, h, &mut gx, &mut gy);
        assert!((gx[2 * w + 3] - 3.0).abs() < 1e-5 && (gy[2 * w + 3] + 2.0).abs() < 1e-5);
    }

    #[test]
    fn upsampling_constant_flow_scales_it() {
        let (u, v) = (vec![1.5f32; 12], vec![-0.5f32; 12]);
        let (mut du, mut dv) = (vec![0.0; 7 * 5], vec![0.0; 7 * 5]);
        upsample_flow(&u, &v, 4, 3, &mut du, &mut dv, 7, 5, 2.0);
        assert!(du.iter().all(|&x| (x - 3.0).abs() < 1e-6));
        assert!(dv.iter().all(|&x| (x + 1.0).abs() < 1e-6));
    }

    #[test]
    fn factor_two_fast_path_matches_the_general_formula() {
        let (sw, sh) = (5, 4);
        let u: Vec<f32> = (0..sw * sh).map(|i| (i * 7 % 11) as f32).collect();
        let v: Vec<f32> = (0..sw * sh).map(|i| (i * 5 % 13) as f32 - 6.0).collect();
        for (dw, dh) in [(10, 8), (11, 9)] {
            let (mut fu, mut fv) = (vec![0.0; dw * dh], vec![0.0; dw * dh]);
            upsample_flow(&u, &v, sw, sh, &mut fu, &mut fv, dw, dh, 2.0);
            for y in 0..dh {
                for x in 0..dw {
                    let sx = ((x as f32 + 0.5) / 2.0 - 0.5).clamp(0.0, (sw - 1) as f32);
                    let sy = ((y as f32 + 0.5) / 2.0 - 0.5).clamp(0.0, (sh - 1) as f32);
                    let want_u = 2.0 * sample_bilinear(&u, sw, sh, sx, sy);
                    let want_v = 2.0 * sample_bilinear(&v, sw, sh, sx, sy);
                    assert!((fu[y * dw + x] - want_u).abs() < 1e-4, "{x},{y}");
                    assert!((fv[y * dw + x] - want_v).abs() < 1e-4, "{x},{y}");
                }
            }
        }
    }

    #[test]
    fn interleaved_upsampling_matches_the_general_formula() {
        let (sw, sh) = (5, 4);
        let u: Vec<f32> = (0..sw * sh).map(|i| (i * 7 % 11) as f32).collect();
        let v: Vec<f32> = (0..sw * sh).map(|i| (i * 5 % 13) as f32 - 6.0).collect();
        let mut scratch = vec![0.0; 2 * sw];
        for factor in [2usize, 4, 8, 16] {
            for (dw, dh) in [
                (sw * factor, sh * factor),
                (sw * factor + 1, sh * factor + 3),
            ] {
                let mut uv = vec![f32::NAN; 2 * dw * dh];
                upsample_flow_interleaved(&u, &v, sw, sh, &mut uv, dw, dh, factor, &mut scratch);
                let f = factor as f32;
                for y in 0..dh {
                    for x in 0..dw {
                        let sx = ((x as f32 + 0.5) / f - 0.5).clamp(0.0, (sw - 1) as f32);
                        let sy = ((y as f32 + 0.5) / f - 0.5).clamp(0.0, (sh - 1) as f32);
                        let want_u = f * sample_bilinear(&u, sw, sh, sx, sy);
                        let want_v = f * sample_bilinear(&v, sw, sh, sx, sy);
                        let i = 2 * (y * dw + x);
                        assert!((uv[i] - want_u).abs() < 1e-3, "{factor} {x},{y}");
                        assert!((uv[i + 1] - want_v).abs() < 1e-3, "{factor} {x},{y}");
                    }
                }
            }
        }
    }

    #[test]
    fn downsample_and_pad_shapes() {
        let img: Vec<f32> = (0..5 * 3).map(|i| i as f32).collect();
        let mut half = vec![0.0; 2];
        downsample_half(&img, 5, 3, &mut half);
        assert_eq!(half, vec![3.0, 5.0]);
        let mut padded = vec![0.0; 9 * 7];
        pad_replicate(&img, 5, 3, 2, &mut padded);
        assert_eq!(padded[0], 0.0);
        assert_eq!(padded[9 * 7 - 1], 14.0);
        assert_eq!(padded[2 * 9 + 3], 1.0);
    }
}
