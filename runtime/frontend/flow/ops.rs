//! Image helpers for the flow estimators: 2x box downsampling, gradients, replicate padding,
//! bilinear warping, flow upsampling, OpenCV-style bilinear resizing and median filtering.
//! All work on row-major `f32` planes in caller buffers.

use std::ops::{Add, Div, Mul, Sub};

use wide::f32x4;

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

/// Arithmetic shared by scalar `f32` and SIMD [`f32x4`] code, so that one per-pixel formula
/// serves both the vector body and the scalar tail of a row loop.
pub(crate) trait Lane:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    /// All lanes set to `x`.
    fn splat(x: f32) -> Self;
    /// Lane-wise minimum (which operand wins on NaN is unspecified).
    fn lmin(self, other: Self) -> Self;
    /// Lane-wise maximum (which operand wins on NaN is unspecified).
    fn lmax(self, other: Self) -> Self;
    /// Lane-wise square root.
    fn sqrt(self) -> Self;
}

impl Lane for f32 {
    #[inline(always)]
    fn splat(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn lmin(self, other: Self) -> Self {
        if other < self {
            other
        } else {
            self
        }
    }
    #[inline(always)]
    fn lmax(self, other: Self) -> Self {
        if other > self {
            other
        } else {
            self
        }
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Lane for f32x4 {
    #[inline(always)]
    fn splat(x: f32) -> Self {
        f32x4::splat(x)
    }
    #[inline(always)]
    fn lmin(self, other: Self) -> Self {
        self.fast_min(other)
    }
    #[inline(always)]
    fn lmax(self, other: Self) -> Self {
        self.fast_max(other)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32x4::sqrt(self)
    }
}

/// Bilinear resize with OpenCV's `INTER_LINEAR` conventions: destination pixel `x` samples
/// the source at `(x + 0.5) * scale_x - 0.5` (computed in `f64`, then rounded to `f32`),
/// clamped to the image, interpolating along rows first. No low-pass filter, so shrinking
/// aliases exactly like OpenCV's. `src` is `sw` x `sh`, `dst` is `dw` x `dh`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resize_bilinear(
    src: &[f32],
    sw: usize,
    sh: usize,
    dst: &mut [f32],
    dw: usize,
    dh: usize,
    scale_x: f64,
    scale_y: f64,
) {
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 {
        return;
    }
    // First tap, second tap and the second tap's weight for a destination coordinate.
    let taps = |d: usize, scale: f64, n: usize| -> (usize, usize, f32) {
        let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let fl = f.floor();
        if fl.is_nan() || fl < 0.0 {
            return (0, 0, 0.0); // left of the first pixel centre (or a NaN scale)
        }
        let i = fl as usize; // saturates for huge values
        if i >= n - 1 {
            (n - 1, n - 1, 0.0)
        } else {
            (i, i + 1, f - fl)
        }
    };
    for (y, out) in dst.chunks_exact_mut(dw).take(dh).enumerate() {
        let (y0, y1, fy) = taps(y, scale_y, sh);
        let r0 = &src[y0 * sw..][..sw];
        let r1 = &src[y1 * sw..][..sw];
        for (x, o) in out.iter_mut().enumerate() {
            let (x0, x1, fx) = taps(x, scale_x, sw);
            let a = r0[x0] * (1.0 - fx) + r0[x1] * fx;
            let b = r1[x0] * (1.0 - fx) + r1[x1] * fx;
            *o = a * (1.0 - fy) + b * fy;
        }
    }
}

/// Scratch rows for [`median_blur`], sized for the widest image seen.
#[derive(Default)]
pub(crate) struct MedianScratch {
    rows: Vec<f32>,
}

impl MedianScratch {
    /// Padded row length for an image `w` wide: 2 replicated columns on each side, rounded
    /// up to whole vectors, plus one vector so that every output vector has a next one.
    fn padded(w: usize) -> usize {
        (w + 4).div_ceil(4) * 4 + 4
    }

    /// Makes room for images up to `w` pixels wide (allocates only when it grows).
    pub(crate) fn reserve(&mut self, w: usize) {
        let len = 5 * Self::padded(w);
        if self.rows.len() < len {
            self.rows.resize(len, 0.0);
        }
    }
}

/// Median filter over a `size` x `size` window (`size` 3 or 5; any other size copies) with
/// replicated borders, like OpenCV's `medianBlur` on `f32` images. Reads `src`, writes `dst`
/// (both `w` x `h`). For each output row the window's columns are sorted once (shared by all
/// outputs overlapping them), then a selection network takes the median of the sorted
/// columns, four pixels at a time. Allocates only if `scratch` is too small for `w`.
pub(crate) fn median_blur(
    src: &[f32],
    w: usize,
    h: usize,
    size: usize,
    scratch: &mut MedianScratch,
    dst: &mut [f32],
) {
    let n = w * h;
    if n == 0 {
        return;
    }
    if size != 3 && size != 5 {
        dst[..n].copy_from_slice(&src[..n]);
        return;
    }
    let half = size / 2;
    let pw = MedianScratch::padded(w);
    scratch.reserve(w);
    let rows = &mut scratch.rows[..size * pw];
    for (y, out) in dst.chunks_exact_mut(w).take(h).enumerate() {
        // Rows y - half ..= y + half (clamped), columns replicated: padded index j holds
        // image column j - 2.
        for (k, padded) in rows.chunks_exact_mut(pw).enumerate() {
            let sy = (y + k).saturating_sub(half).min(h - 1);
            let srow = &src[sy * w..][..w];
            padded[..2].fill(srow[0]);
            padded[2..2 + w].copy_from_slice(srow);
            padded[2 + w..].fill(srow[w - 1]);
        }
        if size == 5 {
            median5_row(rows, pw, out);
        } else {
            median3_row(rows, pw, out);
        }
    }
}

/// Compare-exchange: `(min, max)`.
#[inline(always)]
fn minmax(a: f32x4, b: f32x4) -> (f32x4, f32x4) {
    (a.fast_min(b), a.fast_max(b))
}

/// The vectors of `K` padded rows (`pw` long) starting at every column `shift + 4 i` for
/// `i < count`: `shifted[r][i]` holds columns `shift + 4 i .. shift + 4 i + 4` of row `r`.
/// Loading them from memory (rather than shuffling aligned vectors through the stack)
/// avoids store-forwarding stalls.
#[inline(always)]
fn shifted_rows<const K: usize>(
    rows: &[f32],
    pw: usize,
    shift: usize,
    count: usize,
) -> [&[[f32; 4]]; K] {
    std::array::from_fn(|r| rows[r * pw + shift..][..4 * count].as_chunks::<4>().0)
}

/// Sorts each column of `K` padded rows (each `pw` long, a multiple of 4) in place with the
/// comparator network `net`.
#[inline(always)]
fn sort_columns<const K: usize>(rows: &mut [f32], pw: usize, net: &[(usize, usize)]) {
    for i in (0..pw).step_by(4) {
        let mut v: [f32x4; K] = std::array::from_fn(|r| {
            let c = &rows[r * pw + i..][..4];
            f32x4::new([c[0], c[1], c[2], c[3]])
        });
        for &(a, b) in net {
            (v[a], v[b]) = minmax(v[a], v[b]);
        }
        for (r, x) in v.iter().enumerate() {
            rows[r * pw + i..][..4].copy_from_slice(&x.to_array());
        }
    }
}

/// Output row of the 5x5 median from five padded rows (`pw` long): sorts their columns,
/// then selects the median of the 5 sorted columns of each window.
fn median5_row(rows: &mut [f32], pw: usize, out: &mut [f32]) {
    // Optimal 9-comparator sorting network for 5 inputs.
    const SORT5: [(usize, usize); 9] = [
        (0, 1),
        (3, 4),
        (2, 4),
        (2, 3),
        (0, 3),
        (0, 2),
        (1, 4),
        (1, 3),
        (1, 2),
    ];
    sort_columns::<5>(rows, pw, &SORT5);
    let count = out.len().div_ceil(4);
    // The window of output x is padded columns x .. x + 5.
    let cols: [[&[[f32; 4]]; 5]; 5] = std::array::from_fn(|c| shifted_rows(rows, pw, c, count));
    for (i, o) in out.chunks_mut(4).enumerate() {
        // v[5 c + r]: rank r of window column c (spelled out: a loop here is not unrolled
        // and sends all 25 vectors through the stack).
        let at = |c: usize, r: usize| f32x4::new(cols[c][r][i]);
        #[rustfmt::skip]
        let mut v = [
            at(0, 0), at(0, 1), at(0, 2), at(0, 3), at(0, 4),
            at(1, 0), at(1, 1), at(1, 2), at(1, 3), at(1, 4),
            at(2, 0), at(2, 1), at(2, 2), at(2, 3), at(2, 4),
            at(3, 0), at(3, 1), at(3, 2), at(3, 3), at(3, 4),
            at(4, 0), at(4, 1), at(4, 2), at(4, 3), at(4, 4),
        ];
        let m = median25_of_sorted_columns(&mut v).to_array();
        let len = o.len();
        o.copy_from_slice(&m[..len]);
    }
}

/// Output row of the 3x3 median from three padded rows (`pw` long): sorts their columns,
/// then takes the median of (largest column minimum, median of column medians, smallest
/// column maximum), which is the median of the 9 values.
fn median3_row(rows: &mut [f32], pw: usize, out: &mut [f32]) {
    sort_columns::<3>(rows, pw, &[(0, 1), (1, 2), (0, 1)]);
    let count = out.len().div_ceil(4);
    // The window of output x is padded columns x + 1 ..= x + 3.
    let cols: [[&[[f32; 4]]; 3]; 3] = std::array::from_fn(|c| shifted_rows(rows, pw, c + 1, count));
    let med3 = |a: f32x4, b: f32x4, c: f32x4| {
        let (lo, hi) = minmax(a, b);
        lo.fast_max(hi.fast_min(c))
    };
    for (i, o) in out.chunks_mut(4).enumerate() {
        let at = |c: usize, r: usize| f32x4::new(cols[c][r][i]);
        let lo = at(0, 0).fast_max(at(1, 0)).fast_max(at(2, 0));
        let mid = med3(at(0, 1), at(1, 1), at(2, 1));
        let hi = at(0, 2).fast_min(at(1, 2)).fast_min(at(2, 2));
        let m = med3(lo, mid, hi).to_array();
        let len = o.len();
        o.copy_from_slice(&m[..len]);
    }
}

/// Median of 25 values given as 5 columns sorted ascending (`v[5 * c + r]` is rank `r` of
/// column `c`): Batcher's odd-even merge sort for 32 inputs, cut to 25, with every
/// comparator removed that never exchanges on column-sorted inputs (checked on all of them
/// with the 0-1 principle) or that does not lead to the middle output; 85 comparators left,
/// 24 of which only need their min or their max.
#[inline(always)]
fn median25_of_sorted_columns(v: &mut [f32x4; 25]) -> f32x4 {
    // Compare-exchange; the min only; the max only.
    macro_rules! cs {
        ($i:literal, $j:literal) => {
            (v[$i], v[$j]) = minmax(v[$i], v[$j]);
        };
    }
    macro_rules! lo {
        ($i:literal, $j:literal) => {
            v[$i] = v[$i].fast_min(v[$j]);
        };
    }
    macro_rules! hi {
        ($i:literal, $j:literal) => {
            v[$j] = v[$i].fast_max(v[$j]);
        };
    }
    cs!(4, 5);
    cs!(14, 15);
    cs!(5, 7);
    cs!(8, 10);
    cs!(9, 11);
    cs!(12, 14);
    cs!(5, 6);
    cs!(9, 10);
    cs!(13, 14);
    cs!(0, 4);
    cs!(1, 5);
    cs!(2, 6);
    cs!(8, 12);
    cs!(10, 14);
    cs!(11, 15);
    cs!(16, 20);
    cs!(17, 21);
    cs!(18, 22);
    cs!(19, 23);
    cs!(2, 4);
    cs!(3, 5);
    cs!(10, 12);
    cs!(11, 13);
    cs!(18, 20);
    cs!(19, 21);
    cs!(1, 2);
    cs!(3, 4);
    cs!(5, 6);
    cs!(9, 10);
    cs!(11, 12);
    cs!(13, 14);
    cs!(17, 18);
    cs!(19, 20);
    cs!(21, 22);
    cs!(0, 8);
    cs!(1, 9);
    cs!(2, 10);
    cs!(3, 11);
    cs!(4, 12);
    cs!(5, 13);
    cs!(6, 14);
    lo!(7, 15);
    cs!(4, 8);
    cs!(5, 9);
    cs!(6, 10);
    cs!(7, 11);
    cs!(20, 24);
    cs!(2, 4);
    cs!(3, 5);
    cs!(6, 8);
    cs!(7, 9);
    cs!(10, 12);
    cs!(11, 13);
    cs!(22, 24);
    cs!(1, 2);
    cs!(3, 4);
    cs!(5, 6);
    cs!(7, 8);
    cs!(9, 10);
    cs!(11, 12);
    lo!(13, 14);
    cs!(21, 22);
    cs!(23, 24);
    hi!(0, 16);
    hi!(1, 17);
    hi!(2, 18);
    hi!(3, 19);
    hi!(4, 20);
    hi!(5, 21);
    lo!(6, 22);
    lo!(7, 23);
    lo!(8, 24);
    hi!(8, 16);
    hi!(9, 17);
    lo!(10, 18);
    lo!(11, 19);
    lo!(12, 20);
    lo!(13, 21);
    hi!(6, 10);
    hi!(7, 11);
    lo!(12, 16);
    lo!(13, 17);
    hi!(10, 12);
    lo!(11, 13);
    hi!(11, 12);
    v[12]
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

    /// Median of the `size` x `size` window at (x, y), replicated borders, by sorting.
    fn median_reference(src: &[f32], w: usize, h: usize, size: usize, x: usize, y: usize) -> f32 {
        let half = size as isize / 2;
        let mut win = Vec::new();
        for dy in -half..=half {
            for dx in -half..=half {
                let sx = (x as isize + dx).clamp(0, w as isize - 1) as usize;
                let sy = (y as isize + dy).clamp(0, h as isize - 1) as usize;
                win.push(src[sy * w + sx]);
            }
        }
        win.sort_by(f32::total_cmp);
        win[win.len() / 2]
    }

    #[test]
    fn median_blur_matches_sorting_on_all_small_sizes() {
        let mut scratch = MedianScratch::default();
        let mut seed = 12345u32;
        for (w, h) in [
            (1, 1),
            (1, 7),
            (2, 3),
            (3, 9),
            (4, 4),
            (5, 6),
            (7, 5),
            (8, 8),
            (13, 11),
        ] {
            // Few distinct values, so ties are common.
            let src: Vec<f32> = (0..w * h)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 27) as f32 - 8.0
                })
                .collect();
            for size in [3, 5] {
                let mut dst = vec![f32::NAN; w * h];
                median_blur(&src, w, h, size, &mut scratch, &mut dst);
                for y in 0..h {
                    for x in 0..w {
                        let want = median_reference(&src, w, h, size, x, y);
                        assert_eq!(dst[y * w + x], want, "{w}x{h} size {size} at {x},{y}");
                    }
                }
            }
            let mut dst = vec![0.0; w * h];
            median_blur(&src, w, h, 1, &mut scratch, &mut dst);
            assert_eq!(dst, src);
        }
    }

    #[test]
    fn resize_bilinear_follows_opencv_pixel_centres() {
        // 4 -> 2 columns at scale 2: samples at 0.5 and 2.5.
        let src = [0.0, 10.0, 20.0, 30.0];
        let mut dst = [0.0; 2];
        resize_bilinear(&src, 4, 1, &mut dst, 2, 1, 2.0, 1.0);
        assert_eq!(dst, [5.0, 25.0]);
        // 2 -> 5 columns (scale 0.4): x = -0.3 clamps to 0, x = 1.3 clamps to 1.
        let src = [0.0, 10.0];
        let mut dst = [0.0; 5];
        resize_bilinear(&src, 2, 1, &mut dst, 5, 1, 0.4, 1.0);
        let want = [0.0, 1.0, 5.0, 9.0, 10.0];
        for (d, w) in dst.iter().zip(want) {
            assert!((d - w).abs() < 1e-5, "{dst:?}");
        }
    }
}
