//! DIS optical flow (Kroeger et al. 2016, "Fast Optical Flow using Dense Inverse Search"):
//! coarse-to-fine patch search by inverse-compositional Gauss-Newton, densification by
//! photometric-error weighting, optional variational refinement of the finest level.
//!
//! Per pyramid level (coarsest first): a grid of `patch_size` patches spaced at most
//! `patch_stride` apart is laid over the previous frame; each patch starts from the dense flow
//! of the coarser level at its centre (or a better neighbour's vector when spatial
//! propagation is on), and is refined by damped Gauss-Newton steps (see [`STEP_SCALE`]) on the
//! mean-normalised SSD with the template gradients and Hessian fixed (inverse compositional).
//! The dense flow is the per-pixel average of the vectors of all patches covering the pixel,
//! each weighted by `1 / max(1, |I1(x + u) - I0(x)|)`. On the finest searched level the
//! variational refinement then polishes it (OpenCV refines every level; on the goldens and
//! the synthetic tests refining only the finest one gave the same end-point error for less
//! work).

use wide::f32x4;

use super::ops;
use super::variational::{VariationalParams, VariationalRefinement};
use super::{FlowEstimator, FlowField};

/// Fraction of the Gauss-Newton step each patch iteration takes. The template (Sobel)
/// gradients are not the derivatives of the bilinearly interpolated next frame, so full steps
/// overshoot and oscillate around the optimum; OpenCV's unnormalised Sobel gradients
/// make its steps an eighth of Gauss-Newton's, and the same eighth here gave a 5-30% lower
/// end-point error than full steps on the goldens (`tests/frontend_flow_opencv.rs`) and on
/// the synthetic tests (`tests/frontend_flow.rs`).
const STEP_SCALE: f32 = 0.125;

/// Smallest image side the estimator accepts, in pixels.
pub const MIN_SIDE: usize = 8;

/// The search never stops on a level whose smaller side is below this many pixels (unless the
/// frame itself is smaller): `finest_scale` is lowered instead.
pub const MIN_FINEST_SIDE: usize = 48;

/// Parameters of [`DisFlow`]. The presets are OpenCV's `DISOpticalFlow` presets (OpenCV 4.x
/// and 5.0 `DISOpticalFlow::create`):
///
/// | preset      | patch | stride | iterations | finest scale | variational |
/// |-------------|-------|--------|------------|--------------|-------------|
/// | `ultrafast` | 8     | 4      | 12         | 2            | 0           |
/// | `fast`      | 8     | 4      | 16         | 2            | 5           |
/// | `medium`    | 8     | 3      | 25         | 1            | 5           |
///
/// Same as OpenCV: coarsest level, mean-normalised patch cost, Gauss-Newton steps of an
/// eighth (see `STEP_SCALE`), two propagation passes with half the iterations each,
/// densification weights, variational weights (alpha 20, gamma 10,
/// delta 5, 5 SOR sweeps of omega 1.6). Differences: the finest level is lowered on small
/// frames so it keeps [`MIN_FINEST_SIDE`] pixels (OpenCV runs `ultrafast` on a 40x30 level at
/// 160x120, this estimator on 80x60); the variational refinement runs on the finest level only
/// (OpenCV: every level); propagation crosses the whole grid (OpenCV: 8 fixed stripes); the
/// patch grid is spread to touch all borders; the pyramid is `f32` (OpenCV: rounded to 8
/// bits). End-point error against OpenCV on image pairs with known motion:
/// `tests/frontend_flow_opencv.rs`; speed against OpenCV: `scripts/bench-frontends.sh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisParams {
    /// Side of the square patches, in pixels: 4, 8, 12 or 16 (whole SIMD vectors per row).
    /// Small images use a smaller patch (the largest of these that fits).
    pub patch_size: usize,
    /// Largest spacing between neighbouring patches, 1..=`patch_size`. The grid always
    /// touches all four image borders, so the real spacing may be a little smaller.
    pub patch_stride: usize,
    /// Gauss-Newton iterations per patch and level (split over the two propagation passes).
    pub grad_descent_iters: usize,
    /// Pyramid level where the search stops (0 = full resolution); the flow of that level
    /// is upsampled bilinearly to full resolution. Lowered automatically so that the finest
    /// level keeps at least [`MIN_FINEST_SIDE`] pixels on its smaller side.
    pub finest_scale: usize,
    /// Fixed-point iterations of the variational refinement on the finest level (0 = none).
    pub variational_iters: usize,
    /// Tries the left/upper (then right/lower) neighbour's vector before each patch search.
    pub spatial_propagation: bool,
}

impl DisParams {
    /// `dis-ultrafast`, OpenCV's `PRESET_ULTRAFAST`: 8x8 patches every 4 px, 12 Gauss-Newton
    /// iterations, search stops at quarter resolution, no variational refinement.
    pub fn ultrafast() -> Self {
        DisParams {
            patch_size: 8,
            patch_stride: 4,
            grad_descent_iters: 12,
            finest_scale: 2,
            variational_iters: 0,
            spatial_propagation: true,
        }
    }

    /// `dis-fast`, OpenCV's `PRESET_FAST`: 8x8 patches every 4 px, 16 iterations, search
    /// stops at quarter resolution, 5 fixed-point iterations of variational refinement.
    pub fn fast() -> Self {
        DisParams {
            patch_size: 8,
            patch_stride: 4,
            grad_descent_iters: 16,
            finest_scale: 2,
            variational_iters: 5,
            spatial_propagation: true,
        }
    }

    /// `dis-medium`, OpenCV's `PRESET_MEDIUM`: 8x8 patches every 3 px, 25 iterations, search
    /// stops at half resolution, 5 fixed-point iterations of variational refinement.
    pub fn medium() -> Self {
        DisParams {
            patch_size: 8,
            patch_stride: 3,
            grad_descent_iters: 25,
            finest_scale: 1,
            variational_iters: 5,
            spatial_propagation: true,
        }
    }

    fn validate(&self) -> crate::Result<()> {
        if !matches!(self.patch_size, 4 | 8 | 12 | 16) {
            return Err(crate::err!(
                Config,
                "DIS flow: patch_size {} must be 4, 8, 12 or 16",
                self.patch_size
            ));
        }
        if self.patch_stride == 0 || self.patch_stride > self.patch_size {
            return Err(crate::err!(
                Config,
                "DIS flow: patch_stride {} must be in 1..=patch_size ({})",
                self.patch_stride,
                self.patch_size
            ));
        }
        if self.grad_descent_iters == 0 || self.grad_descent_iters > 1000 {
            return Err(crate::err!(
                Config,
                "DIS flow: grad_descent_iters {} must be in 1..=1000",
                self.grad_descent_iters
            ));
        }
        if self.finest_scale > 8 || self.variational_iters > 100 {
            return Err(crate::err!(
                Config,
                "DIS flow: finest_scale {} must be <= 8 and variational_iters {} <= 100",
                self.finest_scale,
                self.variational_iters
            ));
        }
        Ok(())
    }
}

/// One pyramid level: both frames, the padded next frame, gradients of the previous frame
/// and the dense flow (initial guess before the search, result after).
#[derive(Default)]
struct Level {
    width: usize,
    height: usize,
    prev: Vec<f32>,
    next: Vec<f32>,
    next_padded: Vec<f32>,
    grad_x: Vec<f32>,
    grad_y: Vec<f32>,
    flow_u: Vec<f32>,
    flow_v: Vec<f32>,
}

/// A patch of the grid with its precomputed template statistics.
#[derive(Debug, Clone, Copy, Default)]
struct Patch {
    x: usize,
    y: usize,
    /// Inverse of the (regularised, mean-centred) Gauss-Newton Hessian: [h11, h12, h22].
    inv_hessian: [f32; 3],
    /// Mean template gradient (for the mean-normalised residual).
    mean_grad: [f32; 2],
}

/// The sizes and scales chosen for one frame size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Plan {
    width: usize,
    height: usize,
    patch: usize,
    stride: usize,
    finest: usize,
    coarsest: usize,
    border: usize,
}

/// Buffers of the patch search and densification, sized for the largest searched level.
#[derive(Default)]
struct SearchBuffers {
    patches: Vec<Patch>,
    sparse_u: Vec<f32>,
    sparse_v: Vec<f32>,
    acc_u: Vec<f32>,
    acc_v: Vec<f32>,
    acc_w: Vec<f32>,
    /// Two rows of the finest level's flow, for the final upsampling.
    upsample: Vec<f32>,
}

/// The DIS optical flow estimator. Keeps all buffers between calls: after the first call at
/// a given frame size, [`compute`](FlowEstimator::compute) does not allocate.
pub struct DisFlow {
    name: &'static str,
    params: DisParams,
    variational: VariationalParams,
    plan: Plan,
    levels: Vec<Level>,
    search: SearchBuffers,
    refinement: VariationalRefinement,
}

impl DisFlow {
    /// A DIS estimator with these parameters (a [`Config`](crate::ErrorKind::Config) error
    /// names the first invalid one).
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) naming the first invalid parameter.
    pub fn new(params: DisParams) -> crate::Result<Self> {
        params.validate()?;
        let name = if params == DisParams::ultrafast() {
            "dis-ultrafast"
        } else if params == DisParams::fast() {
            "dis-fast"
        } else if params == DisParams::medium() {
            "dis-medium"
        } else {
            "dis-custom"
        };
        Ok(DisFlow {
            name,
            params,
            variational: VariationalParams::opencv_like(params.variational_iters),
            plan: Plan::default(),
            levels: Vec::new(),
            search: SearchBuffers::default(),
            refinement: VariationalRefinement::default(),
        })
    }

    /// The parameters this estimator runs with.
    pub fn params(&self) -> &DisParams {
        &self.params
    }

    /// Chooses patch size, pyramid depth and buffer sizes for a frame size, reusing the
    /// current buffers when the size did not change.
    fn prepare(&mut self, width: usize, height: usize) -> crate::Result<()> {
        if self.plan.width == width && self.plan.height == height {
            return Ok(());
        }
        if width < MIN_SIDE || height < MIN_SIDE {
            return Err(crate::err!(
                Video,
                "optical flow needs frames of at least {MIN_SIDE}x{MIN_SIDE} pixels, got {width}x{height}"
            ));
        }
        let min_side = width.min(height);
        let patch = self.params.patch_size.min(min_side / 4 * 4);
        let stride = self.params.patch_stride.min(patch);
        // Finest level: the requested one, or the deepest whose smaller side still has
        // MIN_FINEST_SIDE pixels (coarser flow is too blurred to be useful).
        let mut finest = self.params.finest_scale;
        while finest > 0 && (min_side >> finest) < MIN_FINEST_SIDE.max(patch) {
            finest -= 1;
        }
        // Coarsest level as in the paper/OpenCV: motion up to about a quarter of the image,
        // and the level must still hold a patch.
        let by_motion = ((width.max(height) as f64) / (4.0 * patch as f64))
            .log2()
            .round();
        let by_patch = ((min_side as f64) / (patch as f64)).log2().floor();
        let coarsest_f = by_motion.min(by_patch).max(0.0);
        // Both are small non-negative numbers here (sides are usize, patch >= 4).
        let coarsest = (coarsest_f as usize).max(finest);
        let plan = Plan {
            width,
            height,
            patch,
            stride,
            finest,
            coarsest,
            border: patch + 2,
        };

        // Levels beyond `coarsest` are kept (not dropped) so that going back to a frame size
        // seen before does not allocate again.
        if self.levels.len() < coarsest + 1 {
            self.levels.resize_with(coarsest + 1, Level::default);
        }
        let mut max_patches = 0;
        for (s, level) in self.levels.iter_mut().enumerate().take(coarsest + 1) {
            let (w, h) = (width >> s, height >> s);
            level.width = w;
            level.height = h;
            let n = w * h;
            let searched = s >= finest;
            // Full-resolution frames are read straight from the caller unless level 0 is
            // searched.
            let frames_n = if s > 0 || searched { n } else { 0 };
            level.prev.resize(frames_n, 0.0);
            level.next.resize(frames_n, 0.0);
            let (gn, pn) = if searched {
                (n, (w + 2 * plan.border) * (h + 2 * plan.border))
            } else {
                (0, 0)
            };
            level.grad_x.resize(gn, 0.0);
            level.grad_y.resize(gn, 0.0);
            level.next_padded.resize(pn, 0.0);
            // Flow planes on searched levels only (the output is upsampled from the finest
            // into the caller's field).
            let fn_ = if searched { n } else { 0 };
            level.flow_u.resize(fn_, 0.0);
            level.flow_v.resize(fn_, 0.0);
            if searched {
                let nx = grid_count(w, patch, stride);
                let ny = grid_count(h, patch, stride);
                max_patches = max_patches.max(nx * ny);
            }
        }
        let finest_n = (width >> finest) * (height >> finest);
        let sb = &mut self.search;
        sb.patches.resize(max_patches, Patch::default());
        sb.sparse_u.resize(max_patches, 0.0);
        sb.sparse_v.resize(max_patches, 0.0);
        sb.acc_u.resize(finest_n, 0.0);
        sb.acc_v.resize(finest_n, 0.0);
        sb.acc_w.resize(finest_n, 0.0);
        sb.upsample.resize(2 * (width >> finest), 0.0);
        if self.params.variational_iters > 0 {
            self.refinement.reserve(width >> finest, height >> finest);
        }
        self.plan = plan;
        Ok(())
    }

    /// Runs the coarse-to-fine search on frames `prev` and `next` (full resolution, sizes
    /// checked by the caller); the result is left in the finest searched level's flow planes.
    fn run(&mut self, prev: &[f32], next: &[f32]) {
        let plan = self.plan;
        if plan.finest == 0 {
            self.levels[0].prev.copy_from_slice(prev);
            self.levels[0].next.copy_from_slice(next);
        }
        for s in 1..=plan.coarsest {
            let (upper, lower) = self.levels.split_at_mut(s);
            let dst = &mut lower[0];
            let (src_prev, src_next, sw, sh) = if s == 1 {
                (prev, next, plan.width, plan.height)
            } else {
                let src = &upper[s - 1];
                (&src.prev[..], &src.next[..], src.width, src.height)
            };
            ops::downsample_half(src_prev, sw, sh, &mut dst.prev);
            ops::downsample_half(src_next, sw, sh, &mut dst.next);
        }
        if let Some(coarsest) = self.levels.get_mut(plan.coarsest) {
            coarsest.flow_u.fill(0.0);
            coarsest.flow_v.fill(0.0);
        }
        for s in (plan.finest..=plan.coarsest).rev() {
            {
                let level = &mut self.levels[s];
                let (w, h) = (level.width, level.height);
                ops::sobel_gradients(&level.prev, w, h, &mut level.grad_x, &mut level.grad_y);
                ops::pad_replicate(&level.next, w, h, plan.border, &mut level.next_padded);
            }
            let level = &mut self.levels[s];
            let sb = &mut self.search;
            let (nx, ny) = layout_patches(level, &plan, &mut sb.patches);
            let count = nx * ny;
            inverse_search(
                level,
                &plan,
                &self.params,
                &sb.patches[..count],
                nx,
                ny,
                &mut sb.sparse_u[..count],
                &mut sb.sparse_v[..count],
            );
            densify(
                level,
                &plan,
                &sb.patches[..count],
                (&sb.sparse_u[..count], &sb.sparse_v[..count]),
                (&mut sb.acc_u, &mut sb.acc_v, &mut sb.acc_w),
            );
            // Refine only the finest level (see the module comment).
            if self.variational.fixed_point_iters > 0 && s == plan.finest {
                self.refinement.refine(
                    &self.variational,
                    &level.prev,
                    &level.next,
                    level.width,
                    level.height,
                    &mut level.flow_u,
                    &mut level.flow_v,
                );
            }
            if s > plan.finest {
                let (upper, lower) = self.levels.split_at_mut(s);
                let (dst, src) = (&mut upper[s - 1], &lower[0]);
                ops::upsample_flow(
                    &src.flow_u,
                    &src.flow_v,
                    src.width,
                    src.height,
                    &mut dst.flow_u,
                    &mut dst.flow_v,
                    dst.width,
                    dst.height,
                    2.0,
                );
            }
        }
    }
}

impl FlowEstimator for DisFlow {
    fn name(&self) -> &'static str {
        self.name
    }

    fn compute(
        &mut self,
        prev: &[f32],
        next: &[f32],
        width: usize,
        height: usize,
        out: &mut FlowField,
    ) -> crate::Result<()> {
        super::check_frames(self.name, prev, next, width, height)?;
        self.prepare(width, height)?;
        self.run(prev, next);
        out.reshape(width, height);
        let finest = self.plan.finest;
        let level = &self.levels[finest];
        if finest == 0 {
            for ((uv, &u), &v) in out
                .uv
                .chunks_exact_mut(2)
                .zip(&level.flow_u)
                .zip(&level.flow_v)
            {
                uv[0] = u;
                uv[1] = v;
            }
        } else {
            ops::upsample_flow_interleaved(
                &level.flow_u,
                &level.flow_v,
                level.width,
                level.height,
                &mut out.uv,
                width,
                height,
                1 << finest,
                &mut self.search.upsample,
            );
        }
        Ok(())
    }
}

/// How many patches of side `patch` spaced at most `stride` apart cover `len` pixels.
fn grid_count(len: usize, patch: usize, stride: usize) -> usize {
    if len <= patch {
        1
    } else {
        (len - patch).div_ceil(stride) + 1
    }
}

/// The `i`-th of `count` patch origins spread evenly over `0..=len - patch`.
fn grid_origin(i: usize, count: usize, len: usize, patch: usize) -> usize {
    let span = len.saturating_sub(patch);
    if count <= 1 {
        0
    } else {
        (i * span + (count - 1) / 2) / (count - 1)
    }
}

/// Lays out the patch grid of a level and precomputes each template's Hessian.
/// Returns the grid dimensions.
fn layout_patches(level: &Level, plan: &Plan, patches: &mut [Patch]) -> (usize, usize) {
    let (w, h, p) = (level.width, level.height, plan.patch);
    let nx = grid_count(w, p, plan.stride);
    let ny = grid_count(h, p, plan.stride);
    let inv_n = 1.0 / (p * p) as f32;
    for (k, patch) in patches.iter_mut().take(nx * ny).enumerate() {
        let x = grid_origin(k % nx, nx, w, p);
        let y = grid_origin(k / nx, ny, h, p);
        // Four-lane sums of gx^2, gx gy, gy^2, gx, gy (p is a multiple of 4).
        let mut acc = [[0.0f32; 4]; 5];
        for r in 0..p {
            let gx = level.grad_x[(y + r) * w + x..][..p].as_chunks::<4>().0;
            let gy = level.grad_y[(y + r) * w + x..][..p].as_chunks::<4>().0;
            for (a, b) in gx.iter().zip(gy) {
                for l in 0..4 {
                    acc[0][l] += a[l] * a[l];
                    acc[1][l] += a[l] * b[l];
                    acc[2][l] += b[l] * b[l];
                    acc[3][l] += a[l];
                    acc[4][l] += b[l];
                }
            }
        }
        let [sxx, sxy, syy, sx, sy] = acc.map(|a| (a[0] + a[1]) + (a[2] + a[3]));
        let (mx, my) = (sx * inv_n, sy * inv_n);
        // Hessian of the mean-normalised residual: covariance of the gradients.
        let h11 = sxx - sx * mx;
        let h12 = sxy - sx * my;
        let h22 = syy - sy * my;
        // Tikhonov term keeps edge-only (aperture) patches well-posed.
        let lambda = 1e-3 * (h11 + h22) + 1e-6;
        let (a, b, c) = (h11 + lambda, h12, h22 + lambda);
        let det = a * c - b * b;
        let inv_hessian = if det > 0.0 && det.is_finite() {
            [c / det, -b / det, a / det]
        } else {
            [0.0; 3]
        };
        *patch = Patch {
            x,
            y,
            inv_hessian,
            mean_grad: [mx, my],
        };
    }
    (nx, ny)
}

/// Where a patch at `origin` displaced by `d` reads the padded next frame: the integer
/// start and the bilinear fraction. `d` must already be clamped by [`clamp_displacement`].
#[inline]
fn sample_start(origin: usize, d: f32, border: usize) -> (usize, f32) {
    let s = (origin + border) as f32 + d;
    // s >= border - patch + 1 > 0 after clamping, so truncation is floor (and cheaper than
    // `floor`, a libm call without SSE4.1).
    let f = s as usize;
    (f, s - f as f32)
}

/// Keeps a patch displacement where the patch still overlaps the image by at least one
/// pixel (so reads stay inside the padded frame). Maps NaN to the lower limit.
#[inline]
fn clamp_displacement(d: f32, origin: usize, len: usize, patch: usize) -> f32 {
    let lo = 1.0 - patch as f32 - origin as f32;
    let hi = (len - 1) as f32 - origin as f32;
    d.max(lo).min(hi)
}

/// Bilinear weights `[w00, w01, w10, w11]` for fractions (`ax`, `ay`).
#[inline]
fn bilinear_weights(ax: f32, ay: f32) -> [f32; 4] {
    [
        (1.0 - ax) * (1.0 - ay),
        ax * (1.0 - ay),
        (1.0 - ax) * ay,
        ax * ay,
    ]
}

/// The `P` values of `src` from `start`, as an array (empty patch rows never happen: the
/// level buffers are sized so every patch row is in range; `None` only on a logic error).
#[inline(always)]
fn row<const P: usize>(src: &[f32], start: usize) -> Option<&[f32; P]> {
    src.get(start..)?.first_chunk::<P>()
}

/// One patch row for bilinear sampling: the template row of `prev` at `base` and the four
/// rows of `next_padded` around the sample (`top`, `top + 1`, and the same one padded row
/// `pw` below). `None` if any would run past its plane.
#[inline(always)]
fn sample_rows<const P: usize>(
    level: &Level,
    base: usize,
    top: usize,
    pw: usize,
) -> Option<[&[f32; P]; 5]> {
    let bottom = top + pw;
    Some([
        row::<P>(&level.prev, base)?,
        row::<P>(&level.next_padded, top)?,
        row::<P>(&level.next_padded, top + 1)?,
        row::<P>(&level.next_padded, bottom)?,
        row::<P>(&level.next_padded, bottom + 1)?,
    ])
}

/// Sums over one patch of the residual `d = I1(x + u) - I0(x)`: `[sum d, sum d^2,
/// sum gx d, sum gy d]` (gradient sums only when `GRAD`). Dispatches to a loop specialised
/// for the patch side so rows become a few full SIMD vectors.
#[inline(always)]
fn patch_sums<const GRAD: bool>(
    level: &Level,
    plan: &Plan,
    patch: &Patch,
    u: f32,
    v: f32,
) -> [f32; 4] {
    match plan.patch {
        4 => patch_sums_n::<4, GRAD>(level, plan, patch, u, v),
        8 => patch_sums_n::<8, GRAD>(level, plan, patch, u, v),
        12 => patch_sums_n::<12, GRAD>(level, plan, patch, u, v),
        _ => patch_sums_n::<16, GRAD>(level, plan, patch, u, v),
    }
}

#[inline(always)]
fn patch_sums_n<const P: usize, const GRAD: bool>(
    level: &Level,
    plan: &Plan,
    patch: &Patch,
    u: f32,
    v: f32,
) -> [f32; 4] {
    let w = level.width;
    let pw = w + 2 * plan.border;
    let (tx, ax) = sample_start(patch.x, u, plan.border);
    let (ty, ay) = sample_start(patch.y, v, plan.border);
    let [w00, w01, w10, w11] = bilinear_weights(ax, ay);
    let (w00, w01, w10, w11) = (
        f32x4::splat(w00),
        f32x4::splat(w01),
        f32x4::splat(w10),
        f32x4::splat(w11),
    );
    let zero = f32x4::splat(0.0);
    let (mut sum_d, mut sum_d2, mut sum_gx, mut sum_gy) = (zero, zero, zero, zero);
    for r in 0..P {
        let base = (patch.y + r) * w + patch.x;
        let top = (ty + r) * pw + tx;
        let Some([t, a0, a1, b0, b1]) = sample_rows::<P>(level, base, top, pw) else {
            continue;
        };
        let grads = (row::<P>(&level.grad_x, base), row::<P>(&level.grad_y, base));
        for k in 0..P / 4 {
            let d =
                w00 * lanes(a0, k) + w01 * lanes(a1, k) + w10 * lanes(b0, k) + w11 * lanes(b1, k)
                    - lanes(t, k);
            sum_d += d;
            sum_d2 += d * d;
            if GRAD {
                if let (Some(gx), Some(gy)) = grads {
                    sum_gx += lanes(gx, k) * d;
                    sum_gy += lanes(gy, k) * d;
                }
            }
        }
    }
    [
        sum_d.reduce_add(),
        sum_d2.reduce_add(),
        sum_gx.reduce_add(),
        sum_gy.reduce_add(),
    ]
}

/// Lanes `4k..4k + 4` of a row as a SIMD vector.
#[inline(always)]
fn lanes<const P: usize>(row: &[f32; P], k: usize) -> f32x4 {
    let i = 4 * k;
    f32x4::new([row[i], row[i + 1], row[i + 2], row[i + 3]])
}

/// Mean-normalised SSD of a patch at displacement (`u`, `v`).
#[inline]
fn patch_cost(level: &Level, plan: &Plan, patch: &Patch, u: f32, v: f32) -> f32 {
    let [sd, sd2, _, _] = patch_sums::<false>(level, plan, patch, u, v);
    sd2 - sd * sd / (plan.patch * plan.patch) as f32
}

/// Inverse-compositional Gauss-Newton from (`u`, `v`), each step scaled by [`STEP_SCALE`];
/// stops after the first step taken from a point no better than the one before (as OpenCV
/// does). Returns the refined displacement, or the start when the search wandered more than a
/// patch away (unreliable) or met non-finite values.
fn refine_patch(
    level: &Level,
    plan: &Plan,
    patch: &Patch,
    start: (f32, f32),
    iters: usize,
) -> (f32, f32) {
    let (w, h, p) = (level.width, level.height, plan.patch);
    let inv_n = 1.0 / (p * p) as f32;
    let [h11, h12, h22] = patch.inv_hessian;
    let [mgx, mgy] = patch.mean_grad;
    let (mut u, mut v) = start;
    let mut prev_cost = f32::INFINITY;
    for _ in 0..iters {
        let [sd, sd2, sgx, sgy] = patch_sums::<true>(level, plan, patch, u, v);
        let cost = sd2 - sd * sd * inv_n;
        if !cost.is_finite() {
            break;
        }
        let bx = sgx - mgx * sd;
        let by = sgy - mgy * sd;
        let du = STEP_SCALE * (h11 * bx + h12 * by);
        let dv = STEP_SCALE * (h12 * bx + h22 * by);
        u = clamp_displacement(u - du, patch.x, w, p);
        v = clamp_displacement(v - dv, patch.y, h, p);
        if cost >= prev_cost {
            break;
        }
        prev_cost = cost;
    }
    let (eu, ev) = (u - start.0, v - start.1);
    if eu * eu + ev * ev > (p * p) as f32 || !u.is_finite() || !v.is_finite() {
        start
    } else {
        (u, v)
    }
}

/// Patch search on one level: initial vectors from the level's dense flow at the patch
/// centres, then one forward and (with propagation) one backward pass over the grid.
#[allow(clippy::too_many_arguments)]
fn inverse_search(
    level: &Level,
    plan: &Plan,
    params: &DisParams,
    patches: &[Patch],
    nx: usize,
    ny: usize,
    sparse_u: &mut [f32],
    sparse_v: &mut [f32],
) {
    let (w, h, p) = (level.width, level.height, plan.patch);
    for ((patch, su), sv) in patches
        .iter()
        .zip(sparse_u.iter_mut())
        .zip(sparse_v.iter_mut())
    {
        let c = (patch.y + p / 2) * w + patch.x + p / 2;
        *su = clamp_displacement(level.flow_u[c], patch.x, w, p);
        *sv = clamp_displacement(level.flow_v[c], patch.y, h, p);
    }
    let passes = if params.spatial_propagation { 2 } else { 1 };
    let iters = (params.grad_descent_iters / passes).max(1);
    let count = nx * ny;
    for pass in 0..passes {
        let forward = pass == 0;
        for step in 0..count {
            let k = if forward { step } else { count - 1 - step };
            let patch = &patches[k];
            let (mut u, mut v) = (sparse_u[k], sparse_v[k]);
            if params.spatial_propagation {
                let (ix, iy) = (k % nx, k / nx);
                let neighbours = if forward {
                    [(ix > 0).then(|| k - 1), (iy > 0).then(|| k - nx)]
                } else {
                    [(ix + 1 < nx).then(|| k + 1), (iy + 1 < ny).then(|| k + nx)]
                };
                let mut best = patch_cost(level, plan, patch, u, v);
                for j in neighbours.into_iter().flatten() {
                    let cu = clamp_displacement(sparse_u[j], patch.x, w, p);
                    let cv = clamp_displacement(sparse_v[j], patch.y, h, p);
                    let cost = patch_cost(level, plan, patch, cu, cv);
                    if cost < best {
                        best = cost;
                        u = cu;
                        v = cv;
                    }
                }
            }
            let (ru, rv) = refine_patch(level, plan, patch, (u, v), iters);
            sparse_u[k] = ru;
            sparse_v[k] = rv;
        }
    }
}

/// Dense flow of a level: every pixel averages the vectors of the patches covering it,
/// weighted by `1 / max(1, |I1(x + u) - I0(x)|)`.
fn densify(
    level: &mut Level,
    plan: &Plan,
    patches: &[Patch],
    sparse: (&[f32], &[f32]),
    acc: (&mut [f32], &mut [f32], &mut [f32]),
) {
    match plan.patch {
        4 => densify_n::<4>(level, plan, patches, sparse, acc),
        8 => densify_n::<8>(level, plan, patches, sparse, acc),
        12 => densify_n::<12>(level, plan, patches, sparse, acc),
        _ => densify_n::<16>(level, plan, patches, sparse, acc),
    }
}

fn densify_n<const P: usize>(
    level: &mut Level,
    plan: &Plan,
    patches: &[Patch],
    (sparse_u, sparse_v): (&[f32], &[f32]),
    (acc_u, acc_v, acc_w): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let w = level.width;
    let n = w * level.height;
    let pw = w + 2 * plan.border;
    let acc_u = &mut acc_u[..n];
    let acc_v = &mut acc_v[..n];
    let acc_w = &mut acc_w[..n];
    acc_u.fill(0.0);
    acc_v.fill(0.0);
    acc_w.fill(0.0);
    for ((patch, &u), &v) in patches.iter().zip(sparse_u).zip(sparse_v) {
        let (tx, ax) = sample_start(patch.x, u, plan.border);
        let (ty, ay) = sample_start(patch.y, v, plan.border);
        let [w00, w01, w10, w11] = bilinear_weights(ax, ay).map(f32x4::splat);
        let (one, u4, v4) = (f32x4::splat(1.0), f32x4::splat(u), f32x4::splat(v));
        for r in 0..P {
            let base = (patch.y + r) * w + patch.x;
            let top = (ty + r) * pw + tx;
            let Some([t, a0, a1, b0, b1]) = sample_rows::<P>(level, base, top, pw) else {
                continue;
            };
            let (Some(au), Some(av), Some(aw)) = (
                acc_u.get_mut(base..base + P),
                acc_v.get_mut(base..base + P),
                acc_w.get_mut(base..base + P),
            ) else {
                continue;
            };
            for k in 0..P / 4 {
                let d = w00 * lanes(a0, k)
                    + w01 * lanes(a1, k)
                    + w10 * lanes(b0, k)
                    + w11 * lanes(b1, k)
                    - lanes(t, k);
                let wgt = one / d.abs().fast_max(one);
                let span = 4 * k..4 * k + 4;
                let (Some(aw), Some(au), Some(av)) = (
                    aw.get_mut(span.clone()),
                    au.get_mut(span.clone()),
                    av.get_mut(span),
                ) else {
                    continue;
                };
                let (aw4, au4, av4) = (
                    f32x4::new([aw[0], aw[1], aw[2], aw[3]]) + wgt,
                    f32x4::new([au[0], au[1], au[2], au[3]]) + wgt * u4,
                    f32x4::new([av[0], av[1], av[2], av[3]]) + wgt * v4,
                );
                aw.copy_from_slice(&aw4.to_array());
                au.copy_from_slice(&au4.to_array());
                av.copy_from_slice(&av4.to_array());
            }
        }
    }
    for (((fu, fv), (&su, &sv)), &sw) in level
        .flow_u
        .iter_mut()
        .zip(level.flow_v.iter_mut())
        .zip(acc_u.iter().zip(acc_v.iter()))
        .zip(acc_w.iter())
    {
        if sw > 0.0 {
            *fu = su / sw;
            *fv = sv / sw;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_covers_the_whole_side() {
        for (len, p, s) in [(64, 8, 4), (32, 8, 6), (17, 8, 4), (8, 8, 4), (120, 12, 4)] {
            let n = grid_count(len, p, s);
            assert_eq!(grid_origin(0, n, len, p), 0);
            assert_eq!(grid_origin(n - 1, n, len, p) + p, len);
            for i in 1..n {
                let gap = grid_origin(i, n, len, p) - grid_origin(i - 1, n, len, p);
                assert!(gap <= s && gap > 0, "{len} {p} {s}: gap {gap}");
            }
        }
    }

    #[test]
    fn invalid_params_are_config_errors() {
        let mut bad = DisParams::fast();
        bad.patch_size = 6;
        assert!(DisFlow::new(bad).is_err());
        let mut bad = DisParams::fast();
        bad.patch_stride = 0;
        assert!(DisFlow::new(bad).is_err());
    }
}
