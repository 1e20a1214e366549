//! TV-L1 optical flow (Zach, Pock and Bischof 2007, in the duality-based form of Sánchez
//! Pérez, Meinhardt-Llopis and Facciolo, IPOL 2013) with the conventions of OpenCV's
//! `cv::optflow::DualTVL1OpticalFlow`, the flow MOV was trained on.
//!
//! Minimises `sum |grad u1| + |grad u2| + lambda |rho(u)|` with `rho` the brightness change
//! linearised around the current flow. Pyramid: each level is the previous one resized by
//! `scale_step` (bilinear, no blur, like OpenCV), down to 16 pixels on a side. On each level,
//! coarsest first, `warps` times: the next frame and its centred-difference gradients are
//! warped by the current flow (bicubic, a = -0.75, zero outside the frame) and the data term
//! is linearised; then up to `outer_iterations` rounds of (median filter of the flow; up to
//! `inner_iterations` of: thresholding step for the auxiliary flow `v`, primal step
//! `u = v + theta div p`, dual step on `p` with forward differences), stopping once the
//! squared change of `u` summed over the level drops to `epsilon^2` times the pixel count.
//! The flow goes to the next finer level by bilinear resizing, divided by `scale_step`.
//!
//! Speed: OpenCV makes five passes over the level per inner iteration; here one fused pass
//! per row does the thresholding, divergence, primal step and (one row behind) the dual step,
//! four pixels per SIMD vector, so the ten planes it touches are read once.

use wide::f32x4;

use super::ops::{self, Lane, MedianScratch};
use super::{FlowEstimator, FlowField, MIN_SIDE};

/// The pyramid stops before a level with a side below this many pixels (as in OpenCV).
const MIN_LEVEL_SIDE: usize = 16;

/// Parameters of [`TvL1Flow`]; [`Default`] gives OpenCV's defaults, the ones MOV's flow was
/// computed with. In a config file every field is optional (missing ones take the default)
/// and unknown fields are rejected.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TvL1Params {
    /// Time step of the dual update, in (0, 0.25] (larger steps do not converge).
    /// Default 0.25.
    pub tau: f64,
    /// Weight of the data term against the total variation (> 0): smaller gives smoother
    /// flow. Default 0.15.
    pub lambda: f64,
    /// Coupling between the flow and its thresholded copy (> 0): smaller couples them more
    /// tightly but converges more slowly. Default 0.3.
    pub theta: f64,
    /// Weight of the illumination-change term (>= 0, 0 = off; OpenCV's `gamma`). Default 0.
    pub gamma: f64,
    /// Largest number of pyramid levels, 1..=16 (1 = full resolution only); fewer are used
    /// when a level would have a side below 16 pixels. Default 5.
    pub scales: usize,
    /// Warps (re-linearisations of the data term) per level, 1..=100. Default 5.
    pub warps: usize,
    /// Stopping threshold (>= 0): a level's iterations stop once the mean squared change of
    /// the flow per iteration drops to `epsilon^2`. Default 0.01.
    pub epsilon: f64,
    /// Iterations between two median filterings of the flow, 1..=1000. Default 30.
    pub inner_iterations: usize,
    /// Median filterings (each followed by `inner_iterations`) per warp, 1..=1000.
    /// Default 10.
    pub outer_iterations: usize,
    /// Size ratio between consecutive pyramid levels, in (0, 1). Default 0.8.
    pub scale_step: f64,
    /// Side of the median filter applied to the flow before each outer iteration:
    /// 0 or 1 (off), 3 or 5. Default 5.
    pub median_filtering: usize,
}

impl Default for TvL1Params {
    fn default() -> Self {
        TvL1Params {
            tau: 0.25,
            lambda: 0.15,
            theta: 0.3,
            gamma: 0.0,
            scales: 5,
            warps: 5,
            epsilon: 0.01,
            inner_iterations: 30,
            outer_iterations: 10,
            scale_step: 0.8,
            median_filtering: 5,
        }
    }
}

impl TvL1Params {
    /// Checks every field; a [`Config`](crate::ErrorKind::Config) error names the first
    /// invalid one and its valid range.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) naming the first invalid field and its valid
    /// range.
    pub fn validate(&self) -> crate::Result<()> {
        let positive = |name: &str, x: f64, max: f64| {
            if x.is_finite() && x > 0.0 && x <= max {
                Ok(())
            } else {
                Err(crate::err!(
                    Config,
                    "TV-L1 flow: {name} {x} must be in (0, {max}]"
                ))
            }
        };
        let count = |name: &str, n: usize, max: usize| {
            if (1..=max).contains(&n) {
                Ok(())
            } else {
                Err(crate::err!(
                    Config,
                    "TV-L1 flow: {name} {n} must be in 1..={max}"
                ))
            }
        };
        positive("tau", self.tau, 0.25)?;
        positive("lambda", self.lambda, 1e6)?;
        positive("theta", self.theta, 1e6)?;
        if !(self.gamma.is_finite() && (0.0..=1e6).contains(&self.gamma)) {
            return Err(crate::err!(
                Config,
                "TV-L1 flow: gamma {} must be in [0, 1e6] (0 = off)",
                self.gamma
            ));
        }
        if !(self.epsilon.is_finite() && (0.0..=1e3).contains(&self.epsilon)) {
            return Err(crate::err!(
                Config,
                "TV-L1 flow: epsilon {} must be in [0, 1000]",
                self.epsilon
            ));
        }
        count("scales", self.scales, 16)?;
        count("warps", self.warps, 100)?;
        count("inner_iterations", self.inner_iterations, 1000)?;
        count("outer_iterations", self.outer_iterations, 1000)?;
        if !(self.scale_step.is_finite() && self.scale_step > 0.0 && self.scale_step < 1.0) {
            return Err(crate::err!(
                Config,
                "TV-L1 flow: scale_step {} must be in (0, 1)",
                self.scale_step
            ));
        }
        if !matches!(self.median_filtering, 0 | 1 | 3 | 5) {
            return Err(crate::err!(
                Config,
                "TV-L1 flow: median_filtering {} must be 0 or 1 (off), 3 or 5",
                self.median_filtering
            ));
        }
        Ok(())
    }

    /// Whether the illumination term is on (it adds a third flow component).
    fn use_gamma(&self) -> bool {
        self.gamma != 0.0
    }
}

/// One pyramid level: both frames and the flow (u1 = x, u2 = y, u3 = illumination change,
/// present only with `gamma`).
#[derive(Default)]
struct Level {
    width: usize,
    height: usize,
    i0: Vec<f32>,
    i1: Vec<f32>,
    u: [Vec<f32>; 3],
}

/// Per-level working planes, sized for the finest level and reused by the coarser ones.
#[derive(Default)]
struct Work {
    /// Centred-difference gradients of the next frame.
    grad_x: Vec<f32>,
    grad_y: Vec<f32>,
    /// The next frame and its gradients packed per pixel, `[I1, I1x, I1y, 0]`, so that one
    /// SIMD vector interpolates all three.
    packed: Vec<[f32; 4]>,
    /// Linearised data term: warped gradients, `1 / |grad|^2` and the constant part of rho.
    ix: Vec<f32>,
    iy: Vec<f32>,
    inv_grad: Vec<f32>,
    rho_c: Vec<f32>,
    /// The illumination component's data-term coefficient (all `gamma`), only with gamma.
    gamma_plane: Vec<f32>,
    /// Dual variables per flow component: x and y parts.
    p1: [Vec<f32>; 3],
    p2: [Vec<f32>; 3],
    /// Copy of a flow plane for the median filter, and the filter's scratch rows.
    median_src: Vec<f32>,
    median: MedianScratch,
    /// One row: the thresholding factor, rho with the illumination term, zeros.
    fi: Vec<f32>,
    rho_row: Vec<f32>,
    zero: Vec<f32>,
}

/// Step constants derived from the parameters once.
#[derive(Debug, Clone, Copy)]
struct Steps {
    /// `lambda * theta`: the thresholding bound.
    lt: f32,
    theta: f32,
    /// `tau / theta`: the dual step.
    taut: f32,
    gamma: f32,
}

/// The TV-L1 optical flow estimator. Keeps all buffers between calls: after the first call at
/// a given frame size, [`compute`](FlowEstimator::compute) does not allocate. Frames must be
/// at least [`MIN_SIDE`] pixels on each side.
pub struct TvL1Flow {
    name: &'static str,
    params: TvL1Params,
    steps: Steps,
    width: usize,
    height: usize,
    /// Levels in use for the current size (`levels` may hold more from larger sizes).
    count: usize,
    levels: Vec<Level>,
    work: Work,
}

impl TvL1Flow {
    /// A TV-L1 estimator with these parameters (a [`Config`](crate::ErrorKind::Config) error
    /// names the first invalid one).
    ///
    /// # Errors
    /// As [`TvL1Params::validate`].
    pub fn new(params: TvL1Params) -> crate::Result<Self> {
        params.validate()?;
        let name = if params == TvL1Params::default() {
            "tvl1"
        } else {
            "tvl1-custom"
        };
        Ok(TvL1Flow {
            name,
            params,
            steps: Steps {
                lt: (params.lambda * params.theta) as f32,
                theta: params.theta as f32,
                taut: (params.tau / params.theta) as f32,
                gamma: params.gamma as f32,
            },
            width: 0,
            height: 0,
            count: 0,
            levels: Vec::new(),
            work: Work::default(),
        })
    }

    /// The parameters this estimator runs with.
    pub fn params(&self) -> &TvL1Params {
        &self.params
    }

    /// Sizes the pyramid and the working planes for a frame size; a no-op when the size did
    /// not change, and allocation-free for sizes seen before.
    fn prepare(&mut self, width: usize, height: usize) -> crate::Result<()> {
        if self.width == width && self.height == height {
            return Ok(());
        }
        if width < MIN_SIDE || height < MIN_SIDE {
            return Err(crate::err!(
                Video,
                "optical flow needs frames of at least {MIN_SIDE}x{MIN_SIDE} pixels, got {width}x{height}"
            ));
        }
        let comps = if self.params.use_gamma() { 3 } else { 2 };
        let (mut w, mut h) = (width, height);
        let mut count = 0;
        while count < self.params.scales {
            if count > 0 {
                // OpenCV rounds the scaled size; it keeps going until a side is below 16.
                let nw = (w as f64 * self.params.scale_step).round() as usize;
                let nh = (h as f64 * self.params.scale_step).round() as usize;
                if nw < MIN_LEVEL_SIDE || nh < MIN_LEVEL_SIDE {
                    break;
                }
                (w, h) = (nw, nh);
            }
            if self.levels.len() <= count {
                self.levels.push(Level::default());
            }
            let level = &mut self.levels[count];
            let n = w * h;
            level.width = w;
            level.height = h;
            level.i0.resize(n, 0.0);
            level.i1.resize(n, 0.0);
            for (k, u) in level.u.iter_mut().enumerate() {
                u.resize(if k < comps { n } else { 0 }, 0.0);
            }
            count += 1;
        }
        let n = width * height;
        let work = &mut self.work;
        for plane in [
            &mut work.grad_x,
            &mut work.grad_y,
            &mut work.ix,
            &mut work.iy,
            &mut work.inv_grad,
            &mut work.rho_c,
        ] {
            plane.resize(n, 0.0);
        }
        for k in 0..3 {
            let len = if k < comps { n } else { 0 };
            work.p1[k].resize(len, 0.0);
            work.p2[k].resize(len, 0.0);
        }
        work.packed.resize(n, [0.0; 4]);
        work.gamma_plane
            .resize(if comps == 3 { n } else { 0 }, self.steps.gamma);
        if self.params.median_filtering > 1 {
            work.median_src.resize(n, 0.0);
            work.median.reserve(width);
        }
        work.fi.resize(width, 0.0);
        work.rho_row.resize(width, 0.0);
        work.zero.resize(width, 0.0);
        self.width = width;
        self.height = height;
        self.count = count;
        Ok(())
    }

    /// Runs the coarse-to-fine solver on the frames in level 0; the flow ends in level 0.
    fn run(&mut self) {
        let step = self.params.scale_step;
        let comps = if self.params.use_gamma() { 3 } else { 2 };
        for s in 1..self.count {
            let (finer, coarser) = self.levels.split_at_mut(s);
            let (src, dst) = (&finer[s - 1], &mut coarser[0]);
            let (sw, sh, dw, dh) = (src.width, src.height, dst.width, dst.height);
            ops::resize_bilinear(&src.i0, sw, sh, &mut dst.i0, dw, dh, 1.0 / step, 1.0 / step);
            ops::resize_bilinear(&src.i1, sw, sh, &mut dst.i1, dw, dh, 1.0 / step, 1.0 / step);
        }
        if let Some(coarsest) = self
            .count
            .checked_sub(1)
            .and_then(|s| self.levels.get_mut(s))
        {
            for u in &mut coarsest.u {
                u.fill(0.0);
            }
        }
        for s in (0..self.count).rev() {
            solve_level(
                &self.params,
                &self.steps,
                &mut self.levels[s],
                &mut self.work,
            );
            if s == 0 {
                break;
            }
            let (finer, coarser) = self.levels.split_at_mut(s);
            let (dst, src) = (&mut finer[s - 1], &coarser[0]);
            let (sw, sh, dw, dh) = (src.width, src.height, dst.width, dst.height);
            // OpenCV resizes to the finer level's size (scale = ratio of the sizes) and
            // multiplies the displacements by 1 / scale_step (the illumination term is not
            // a displacement: it is not scaled).
            let (scale_x, scale_y) = (1.0 / (dw as f64 / sw as f64), 1.0 / (dh as f64 / sh as f64));
            let zoom = (1.0 / step) as f32;
            for k in 0..comps {
                ops::resize_bilinear(&src.u[k], sw, sh, &mut dst.u[k], dw, dh, scale_x, scale_y);
                if k < 2 {
                    for x in dst.u[k].iter_mut() {
                        *x *= zoom;
                    }
                }
            }
        }
    }
}

impl FlowEstimator for TvL1Flow {
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
        let (min, max) = super::check_frames(self.name, prev, next, width, height)?;
        if max <= 1.0 && min < max {
            return Err(crate::err!(
                Video,
                "{} optical flow: every gray value lies at or below 1 (range {min}..={max}): TV-L1's parameters assume grey in 0..=255 and would give near-zero flow; scale the frames by 255",
                self.name
            ));
        }
        self.prepare(width, height)?;
        self.levels[0].i0.copy_from_slice(prev);
        self.levels[0].i1.copy_from_slice(next);
        self.run();
        out.reshape(width, height);
        let level = &self.levels[0];
        for ((uv, &u), &v) in out.uv.chunks_exact_mut(2).zip(&level.u[0]).zip(&level.u[1]) {
            uv[0] = u;
            uv[1] = v;
        }
        Ok(())
    }
}

/// Solves one level, starting from the flow in `level.u` and leaving the result there.
fn solve_level(params: &TvL1Params, steps: &Steps, level: &mut Level, work: &mut Work) {
    let (w, h) = (level.width, level.height);
    let n = w * h;
    let comps = if params.use_gamma() { 3 } else { 2 };
    let (gx, gy) = (&mut work.grad_x[..n], &mut work.grad_y[..n]);
    ops::central_gradients(&level.i1, w, h, gx, gy);
    for (((p, &i), &x), &y) in work.packed[..n]
        .iter_mut()
        .zip(&level.i1)
        .zip(&*gx)
        .zip(&*gy)
    {
        *p = [i, x, y, 0.0];
    }
    for k in 0..comps {
        work.p1[k][..n].fill(0.0);
        work.p2[k][..n].fill(0.0);
    }
    let scaled_epsilon = (params.epsilon * params.epsilon * n as f64) as f32;
    for _ in 0..params.warps {
        data_term(
            w,
            h,
            &level.i0,
            &work.packed[..n],
            (&level.u[0], &level.u[1]),
            &mut work.fi,
            DataTerm {
                ix: &mut work.ix[..n],
                iy: &mut work.iy[..n],
                inv_grad: &mut work.inv_grad[..n],
                rho_c: &mut work.rho_c[..n],
            },
        );
        let mut error = f32::MAX;
        let mut outer = 0;
        while error > scaled_epsilon && outer < params.outer_iterations {
            if params.median_filtering > 1 {
                for u in &mut level.u[..2] {
                    work.median_src[..n].copy_from_slice(u);
                    ops::median_blur(
                        &work.median_src[..n],
                        w,
                        h,
                        params.median_filtering,
                        &mut work.median,
                        u,
                    );
                }
            }
            let mut inner = 0;
            while error > scaled_epsilon && inner < params.inner_iterations {
                error = iterate(w, h, comps, steps, &mut level.u, work);
                inner += 1;
            }
            outer += 1;
        }
    }
}

/// Output planes of [`data_term`].
struct DataTerm<'a> {
    ix: &'a mut [f32],
    iy: &'a mut [f32],
    inv_grad: &'a mut [f32],
    rho_c: &'a mut [f32],
}

/// Linearises the data term around the current flow: warps the next frame and its gradients
/// (`packed`) to `x + u` (bicubic, zero outside the frame, as OpenCV's `remap` with
/// `INTER_CUBIC`) and stores the warped gradient, `1 / |grad|^2` and
/// `rho_c = I1w - grad . u - I0`, so that `rho(u') = rho_c + grad . u'`. `i1w` is a row of
/// scratch for the warped frame.
fn data_term(
    w: usize,
    h: usize,
    i0: &[f32],
    packed: &[[f32; 4]],
    (u1, u2): (&[f32], &[f32]),
    i1w: &mut [f32],
    out: DataTerm<'_>,
) {
    let n = w * h;
    let (i0, u1, u2, i1w) = (&i0[..n], &u1[..n], &u2[..n], &mut i1w[..w]);
    for y in 0..h {
        let row = y * w..(y + 1) * w;
        let (ix, iy) = (&mut out.ix[row.clone()], &mut out.iy[row.clone()]);
        let (u1, u2) = (&u1[row.clone()], &u2[row.clone()]);
        // Gather: one bicubic sample of the packed planes per pixel.
        for (x, ((((i1w, ix), iy), &u1), &u2)) in i1w
            .iter_mut()
            .zip(ix.iter_mut())
            .zip(iy.iter_mut())
            .zip(u1)
            .zip(u2)
            .enumerate()
        {
            [*i1w, *ix, *iy, _] =
                bicubic_packed(packed, w, h, x as f32 + u1, y as f32 + u2).to_array();
        }
        // The rest, four pixels at a time. Dividing by |grad|^2 once here instead of in every
        // iteration; where the gradient vanishes the thresholding step saturates (or gives 0
        // if rho is 0), which is what OpenCV's three-way test does there.
        let ig = &mut out.inv_grad[row.clone()];
        let rc = &mut out.rho_c[row.clone()];
        let i0 = &i0[row];
        let (igv, igt) = ig.as_chunks_mut::<4>();
        let (rcv, rct) = rc.as_chunks_mut::<4>();
        let [i1wc, ixc, iyc, u1c, u2c, i0c] =
            [&*i1w, &*ix, &*iy, u1, u2, i0].map(|s| s.as_chunks::<4>());
        for (((((((g, r), &a), &b), &c), &p), &q), &z) in igv
            .iter_mut()
            .zip(rcv)
            .zip(i1wc.0)
            .zip(ixc.0)
            .zip(iyc.0)
            .zip(u1c.0)
            .zip(u2c.0)
            .zip(i0c.0)
        {
            let (gr, rh) = linearise(
                f32x4::new(a),
                f32x4::new(b),
                f32x4::new(c),
                f32x4::new(p),
                f32x4::new(q),
                f32x4::new(z),
            );
            (*g, *r) = (gr.to_array(), rh.to_array());
        }
        for (((((((g, r), &a), &b), &c), &p), &q), &z) in igt
            .iter_mut()
            .zip(rct)
            .zip(i1wc.1)
            .zip(ixc.1)
            .zip(iyc.1)
            .zip(u1c.1)
            .zip(u2c.1)
            .zip(i0c.1)
        {
            (*g, *r) = linearise(a, b, c, p, q, z);
        }
    }
}

/// `1 / |grad|^2` and `rho_c = I1w - grad . u - I0` from the warped values.
#[inline(always)]
fn linearise<T: Lane>(i1w: T, ix: T, iy: T, u1: T, u2: T, i0: T) -> (T, T) {
    let inv_grad = T::splat(1.0) / (ix * ix + iy * iy).lmax(T::splat(f32::MIN_POSITIVE));
    (inv_grad, i1w - ix * u1 - iy * u2 - i0)
}

/// Keys' cubic convolution weights (a = -0.75, as OpenCV) of the taps at -1, 0, 1, 2 for a
/// sample at fraction `t` in [0, 1): the kernel at distances `1 + t`, `t`, `1 - t`, `2 - t`.
#[inline(always)]
fn cubic_weights(t: f32) -> f32x4 {
    const A: f32 = -0.75;
    let d = f32x4::splat(t) * f32x4::new([1.0, 1.0, -1.0, -1.0]) + f32x4::new([1.0, 0.0, 1.0, 2.0]);
    let (a, one) = (f32x4::splat(A), f32x4::splat(1.0));
    // |d| <= 1: ((A + 2) d - (A + 3)) d^2 + 1; 1 < |d| < 2: ((A d - 5 A) d + 8 A) d - 4 A.
    let near = ((f32x4::splat(A + 2.0) * d - f32x4::splat(A + 3.0)) * d) * d + one;
    let far =
        ((a * d - f32x4::splat(5.0 * A)) * d + f32x4::splat(8.0 * A)) * d - f32x4::splat(4.0 * A);
    let outer = f32x4::new([1.0, 0.0, 0.0, 1.0]);
    far * outer + near * (one - outer)
}

/// Floor of a value known to be in a small range (here [-2, side + 1)), without the libm call
/// that `f32::floor` costs on plain SSE2.
#[inline(always)]
fn floor_small(x: f32) -> isize {
    let t = x as isize;
    if t as f32 > x {
        t - 1
    } else {
        t
    }
}

/// Bicubic sample at (`x`, `y`) of a `w` x `h` image of packed pixels (all four lanes at
/// once), taps outside the image counting as zero. A position whose taps are all outside
/// (or NaN) gives zero.
#[inline]
fn bicubic_packed(planes: &[[f32; 4]], w: usize, h: usize, x: f32, y: f32) -> f32x4 {
    // Taps are columns floor(x) - 1 ..= floor(x) + 2: at least one is inside iff
    // -2 <= x < w + 1.
    if !(x >= -2.0 && x < (w + 1) as f32 && y >= -2.0 && y < (h + 1) as f32) {
        return f32x4::ZERO;
    }
    let (xf, yf) = (floor_small(x), floor_small(y));
    let wx = cubic_weights(x - xf as f32).to_array();
    let wy = cubic_weights(y - yf as f32).to_array();
    let (x0, y0) = (xf - 1, yf - 1);
    let (wi, hi) = (w as isize, h as isize);
    let mut acc = f32x4::ZERO;
    if x0 >= 0 && x0 + 4 <= wi && y0 >= 0 && y0 + 4 <= hi {
        let (x0, y0) = (x0 as usize, y0 as usize);
        let wxv = wx.map(f32x4::splat);
        for (j, &wyj) in wy.iter().enumerate() {
            let t = &planes[(y0 + j) * w + x0..][..4];
            let row = f32x4::new(t[0]) * wxv[0]
                + f32x4::new(t[1]) * wxv[1]
                + f32x4::new(t[2]) * wxv[2]
                + f32x4::new(t[3]) * wxv[3];
            acc += row * f32x4::splat(wyj);
        }
    } else {
        for (j, &wyj) in wy.iter().enumerate() {
            let yy = y0 + j as isize;
            if yy < 0 || yy >= hi {
                continue;
            }
            for (i, &wxi) in wx.iter().enumerate() {
                let xx = x0 + i as isize;
                if xx < 0 || xx >= wi {
                    continue;
                }
                acc += f32x4::new(planes[yy as usize * w + xx as usize]) * f32x4::splat(wyj * wxi);
            }
        }
    }
    acc
}

/// One inner iteration over the level, fused into a single pass over the rows: for row `y`,
/// the thresholding step, the divergence of `p` and the primal step update `u` in place;
/// then the dual step updates `p` on row `y - 1`, whose forward differences need the new
/// `u` of rows `y - 1` and `y` (and whose old `p` row `y` no longer needs). Returns the
/// squared change of `u` summed over the level.
fn iterate(
    w: usize,
    h: usize,
    comps: usize,
    steps: &Steps,
    u: &mut [Vec<f32>; 3],
    work: &mut Work,
) -> f32 {
    let n = w * h;
    let Work {
        ix,
        iy,
        inv_grad,
        rho_c,
        gamma_plane,
        p1,
        p2,
        fi,
        rho_row,
        zero,
        ..
    } = work;
    let (ix, iy, inv_grad, rho_c) = (&ix[..n], &iy[..n], &inv_grad[..n], &rho_c[..n]);
    let (fi, rho_row, zero) = (&mut fi[..w], &mut rho_row[..w], &zero[..w]);
    let mut error = 0.0f32;
    for y in 0..h {
        let row = y * w..(y + 1) * w;
        if comps == 3 {
            for ((r, &c), &u3) in rho_row
                .iter_mut()
                .zip(&rho_c[row.clone()])
                .zip(&u[2][row.clone()])
            {
                *r = c + steps.gamma * u3;
            }
        }
        let rho = if comps == 3 {
            &*rho_row
        } else {
            &rho_c[row.clone()]
        };
        threshold_row(
            [
                &ix[row.clone()],
                &iy[row.clone()],
                &inv_grad[row.clone()],
                rho,
            ],
            [&u[0][row.clone()], &u[1][row.clone()]],
            steps.lt,
            fi,
        );
        for k in 0..comps {
            let coef = match k {
                0 => ix,
                1 => iy,
                _ => &gamma_plane[..n],
            };
            let (uk, p1k, p2k) = (&mut u[k][..n], &mut p1[k][..n], &mut p2[k][..n]);
            let p2_up = if y == 0 {
                zero
            } else {
                &p2k[row.start - w..row.start]
            };
            error += primal_row(
                &mut uk[row.clone()],
                &coef[row.clone()],
                fi,
                &p1k[row.clone()],
                &p2k[row.clone()],
                p2_up,
                steps.theta,
            );
            if y > 0 {
                let above = row.start - w..row.start;
                dual_row(
                    &uk[above.clone()],
                    &uk[row.clone()],
                    &mut p1k[above.clone()],
                    &mut p2k[above],
                    steps.taut,
                );
            }
        }
    }
    // The last row: no row below, so the vertical difference is zero.
    let last = n - w..n;
    for k in 0..comps {
        let uk = &u[k][last.clone()];
        dual_row(
            uk,
            uk,
            &mut p1[k][last.clone()],
            &mut p2[k][last.clone()],
            steps.taut,
        );
    }
    error
}

/// Thresholding factor: `v = u + fi * grad` with `fi = clamp(-rho / |grad|^2, -lt, lt)` and
/// `rho = rho_c + grad . u` (the three cases of the paper's thresholding step at once).
#[inline(always)]
fn threshold<T: Lane>(ix: T, iy: T, inv_grad: T, rho_c: T, u1: T, u2: T, lt: T) -> T {
    let rho = rho_c + (ix * u1 + iy * u2);
    (T::splat(0.0) - rho * inv_grad)
        .lmax(T::splat(0.0) - lt)
        .lmin(lt)
}

/// [`threshold`] over a row: `data` is (ix, iy, 1 / |grad|^2, rho_c), `u` is (u1, u2).
fn threshold_row(data: [&[f32]; 4], u: [&[f32]; 2], lt: f32, fi: &mut [f32]) {
    let [ix, iy, ig, rc] = data.map(|s| s.as_chunks::<4>());
    let [u1, u2] = u.map(|s| s.as_chunks::<4>());
    let (fv, ft) = fi.as_chunks_mut::<4>();
    let ltv = f32x4::splat(lt);
    for ((((((f, a), b), g), r), p), q) in fv
        .iter_mut()
        .zip(ix.0)
        .zip(iy.0)
        .zip(ig.0)
        .zip(rc.0)
        .zip(u1.0)
        .zip(u2.0)
    {
        *f = threshold(
            f32x4::new(*a),
            f32x4::new(*b),
            f32x4::new(*g),
            f32x4::new(*r),
            f32x4::new(*p),
            f32x4::new(*q),
            ltv,
        )
        .to_array();
    }
    for ((((((f, &a), &b), &g), &r), &p), &q) in ft
        .iter_mut()
        .zip(ix.1)
        .zip(iy.1)
        .zip(ig.1)
        .zip(rc.1)
        .zip(u1.1)
        .zip(u2.1)
    {
        *f = threshold(a, b, g, r, p, q, lt);
    }
}

/// Primal step for one pixel: `u' = (u + fi * coef) + theta * div p`, with the divergence
/// `(p1 - p1_left) + (p2 - p2_up)`. Returns `u'` and its squared change.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn primal<T: Lane>(u: T, coef: T, fi: T, p1: T, p1_left: T, p2: T, p2_up: T, theta: T) -> (T, T) {
    let div = (p1 - p1_left) + (p2 - p2_up);
    let new = (u + fi * coef) + theta * div;
    let d = new - u;
    (new, d * d)
}

/// [`primal`] over a row of one flow component; `p2_up` is the row above of `p2` (zeros on
/// the first row) and `p1` is taken as zero left of the first column. Returns the summed
/// squared change.
fn primal_row(
    u: &mut [f32],
    coef: &[f32],
    fi: &[f32],
    p1: &[f32],
    p2: &[f32],
    p2_up: &[f32],
    theta: f32,
) -> f32 {
    let w = u.len();
    if w == 0 {
        return 0.0;
    }
    let (new, mut error) = primal(u[0], coef[0], fi[0], p1[0], 0.0, p2[0], p2_up[0], theta);
    u[0] = new;
    // Columns 1.. with their left neighbours.
    let (u, coef, fi) = (&mut u[1..], &coef[1..w], &fi[1..w]);
    let (p1, p1_left, p2, p2_up) = (&p1[1..w], &p1[..w - 1], &p2[1..w], &p2_up[1..w]);
    let (uv, ut) = u.as_chunks_mut::<4>();
    let [c, f, a, l, b, d] = [coef, fi, p1, p1_left, p2, p2_up].map(|s| s.as_chunks::<4>());
    let thv = f32x4::splat(theta);
    let mut acc = f32x4::ZERO;
    for ((((((uu, &c), &f), &a), &l), &b), &d) in uv
        .iter_mut()
        .zip(c.0)
        .zip(f.0)
        .zip(a.0)
        .zip(l.0)
        .zip(b.0)
        .zip(d.0)
    {
        let (new, sq) = primal(
            f32x4::new(*uu),
            f32x4::new(c),
            f32x4::new(f),
            f32x4::new(a),
            f32x4::new(l),
            f32x4::new(b),
            f32x4::new(d),
            thv,
        );
        *uu = new.to_array();
        acc += sq;
    }
    error += acc.reduce_add();
    for ((((((uu, &c), &f), &a), &l), &b), &d) in ut
        .iter_mut()
        .zip(c.1)
        .zip(f.1)
        .zip(a.1)
        .zip(l.1)
        .zip(b.1)
        .zip(d.1)
    {
        let (new, sq) = primal(*uu, c, f, a, l, b, d, theta);
        *uu = new;
        error += sq;
    }
    error
}

/// Dual step for one pixel: `p = (p + taut grad u) / (1 + taut |grad u|)`.
#[inline(always)]
fn dual<T: Lane>(p1: T, p2: T, ux: T, uy: T, taut: T) -> (T, T) {
    let norm = (ux * ux + uy * uy).sqrt();
    let r = T::splat(1.0) / (T::splat(1.0) + taut * norm);
    ((p1 + taut * ux) * r, (p2 + taut * uy) * r)
}

/// [`dual`] over a row of one flow component, with forward differences of the (already
/// updated) `u` row and the row below it (`u_down`; pass `u` itself on the last row, where
/// the difference is zero). The difference to the right is zero on the last column.
fn dual_row(u: &[f32], u_down: &[f32], p1: &mut [f32], p2: &mut [f32], taut: f32) {
    let w = p1.len();
    if w == 0 {
        return;
    }
    let last = w - 1;
    let (p1_last, p2_last) = (p1[last], p2[last]);
    (p1[last], p2[last]) = dual(p1_last, p2_last, 0.0, u_down[last] - u[last], taut);
    let (u_here, u_right, u_down) = (&u[..last], &u[1..w], &u_down[..last]);
    let (p1, p2) = (&mut p1[..last], &mut p2[..last]);
    let (p1v, p1t) = p1.as_chunks_mut::<4>();
    let (p2v, p2t) = p2.as_chunks_mut::<4>();
    let [c, r, d] = [u_here, u_right, u_down].map(|s| s.as_chunks::<4>());
    let tv = f32x4::splat(taut);
    for ((((a, b), &c), &r), &d) in p1v.iter_mut().zip(p2v).zip(c.0).zip(r.0).zip(d.0) {
        let (c, r, d) = (f32x4::new(c), f32x4::new(r), f32x4::new(d));
        let (na, nb) = dual(f32x4::new(*a), f32x4::new(*b), r - c, d - c, tv);
        *a = na.to_array();
        *b = nb.to_array();
    }
    for ((((a, b), &c), &r), &d) in p1t.iter_mut().zip(p2t).zip(c.1).zip(r.1).zip(d.1) {
        (*a, *b) = dual(*a, *b, r - c, d - c, taut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth texture shifted by (`dx`, `dy`).
    fn texture(w: usize, h: usize, dx: f32, dy: f32) -> Vec<f32> {
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 - dx, (i / w) as f32 - dy);
                128.0
                    + 40.0 * (0.31 * x + 0.17 * y).sin()
                    + 30.0 * (0.23 * y - 0.41 * x + 1.0).sin()
                    + 20.0 * (0.67 * x + 0.53 * y + 2.0).sin()
            })
            .collect()
    }

    fn flow_with(params: TvL1Params, prev: &[f32], next: &[f32], w: usize, h: usize) -> FlowField {
        let mut est = TvL1Flow::new(params).map_err(|e| e.to_string());
        let mut out = FlowField::new(0, 0);
        if let Ok(est) = est.as_mut() {
            assert!(est.compute(prev, next, w, h, &mut out).is_ok());
        }
        let want = if params == TvL1Params::default() {
            "tvl1"
        } else {
            "tvl1-custom"
        };
        assert_eq!(est.map(|e| e.name()), Ok(want));
        out
    }

    fn flow(prev: &[f32], next: &[f32], w: usize, h: usize) -> FlowField {
        flow_with(TvL1Params::default(), prev, next, w, h)
    }

    /// Mean end-point error against a constant flow, 6 px away from the border.
    fn epe(out: &FlowField, (du, dv): (f32, f32)) -> f32 {
        let (w, h) = (out.width, out.height);
        let (mut sum, mut count) = (0.0f32, 0);
        for y in 6..h - 6 {
            for x in 6..w - 6 {
                let (u, v) = out.at(x, y).unwrap_or((f32::NAN, f32::NAN));
                sum += ((u - du).powi(2) + (v - dv).powi(2)).sqrt();
                count += 1;
            }
        }
        sum / count as f32
    }

    #[test]
    fn zero_motion_gives_zero_flow() {
        let img = texture(48, 40, 0.0, 0.0);
        let out = flow(&img, &img, 48, 40);
        assert!(out.uv.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn a_translation_is_recovered() {
        let (w, h) = (64, 48);
        let out = flow(&texture(w, h, 0.0, 0.0), &texture(w, h, 1.5, -0.75), w, h);
        let e = epe(&out, (1.5, -0.75));
        assert!(e < 0.05, "mean EPE {e}");
    }

    #[test]
    fn other_settings_recover_a_translation_too() {
        let (w, h) = (64, 48);
        let (prev, next) = (texture(w, h, 0.0, 0.0), texture(w, h, 1.5, -0.75));
        let default = TvL1Params::default();
        let settings = [
            TvL1Params {
                gamma: 0.3,
                ..default
            },
            TvL1Params {
                median_filtering: 3,
                ..default
            },
            TvL1Params {
                median_filtering: 0,
                ..default
            },
            TvL1Params {
                scales: 1,
                warps: 10,
                ..default
            },
            TvL1Params {
                epsilon: 0.0,
                outer_iterations: 3,
                ..default
            },
        ];
        for params in settings {
            let e = epe(&flow_with(params, &prev, &next, w, h), (1.5, -0.75));
            assert!(e < 0.06, "{params:?}: mean EPE {e}");
            let still = flow_with(params, &prev, &prev, w, h);
            assert!(
                still.uv.iter().all(|&x| x == 0.0),
                "{params:?}: zero motion"
            );
        }
    }

    #[test]
    fn bad_params_and_small_frames_are_errors() {
        let bad = [
            TvL1Params {
                tau: 0.0,
                ..Default::default()
            },
            TvL1Params {
                tau: 0.3,
                ..Default::default()
            },
            TvL1Params {
                lambda: f64::NAN,
                ..Default::default()
            },
            TvL1Params {
                theta: -1.0,
                ..Default::default()
            },
            TvL1Params {
                gamma: -0.1,
                ..Default::default()
            },
            TvL1Params {
                scales: 0,
                ..Default::default()
            },
            TvL1Params {
                warps: 0,
                ..Default::default()
            },
            TvL1Params {
                epsilon: f64::INFINITY,
                ..Default::default()
            },
            TvL1Params {
                inner_iterations: 0,
                ..Default::default()
            },
            TvL1Params {
                outer_iterations: 1001,
                ..Default::default()
            },
            TvL1Params {
                scale_step: 1.0,
                ..Default::default()
            },
            TvL1Params {
                median_filtering: 4,
                ..Default::default()
            },
        ];
        for params in bad {
            let err = TvL1Flow::new(params).err().map(|e| e.to_string());
            assert!(err.is_some_and(|e| e.contains("TV-L1")), "{params:?}");
        }
        let mut est = TvL1Flow::new(TvL1Params::default()).map_err(|e| e.to_string());
        let mut out = FlowField::new(0, 0);
        let img = vec![0.0f32; 7 * 20];
        if let Ok(est) = est.as_mut() {
            assert!(est.compute(&img, &img, 7, 20, &mut out).is_err());
            assert!(est.compute(&img, &img, 20, 7, &mut out).is_err());
            assert!(est.compute(&img, &img[1..], 20, 7, &mut out).is_err());
        }
        assert!(est.is_ok());
    }

    #[test]
    fn params_parse_from_config_with_defaults() {
        let p: Result<TvL1Params, _> = serde_json::from_str(r#"{"lambda": 0.3, "warps": 3}"#);
        let p = p.map_err(|e| e.to_string());
        assert_eq!(
            p,
            Ok(TvL1Params {
                lambda: 0.3,
                warps: 3,
                ..Default::default()
            })
        );
        let bad: Result<TvL1Params, _> = serde_json::from_str(r#"{"lamda": 0.3}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn bicubic_is_exact_on_pixels_and_zero_outside() {
        let (w, h) = (6, 5);
        let img: Vec<[f32; 4]> = (0..w * h)
            .map(|i| [(i * 7 % 11) as f32, i as f32, -(i as f32), 0.0])
            .collect();
        let at = |x: f32, y: f32| bicubic_packed(&img, w, h, x, y).to_array();
        for (x, y) in [(0, 0), (3, 2), (5, 4), (1, 4)] {
            assert_eq!(at(x as f32, y as f32), img[y * w + x]);
        }
        assert_eq!(at(-3.5, 1.0), [0.0; 4]);
        assert_eq!(at(2.0, f32::NAN), [0.0; 4]);
        assert_eq!(at(1e30, 1.0), [0.0; 4]);
        // Weights sum to one; halfway between pixels they are symmetric (with a = -0.75 the
        // kernel does not reproduce ramps elsewhere: 2.25 on this ramp gives 4.59375).
        let ramp: Vec<[f32; 4]> = (0..w * h)
            .map(|i| [(i % w) as f32 * 2.0 + 7.0; 4])
            .collect();
        let at = |x: f32, y: f32| bicubic_packed(&ramp, w, h, x, y).to_array()[0];
        assert!((at(2.5, 2.5) - 12.0).abs() < 1e-5);
        assert!((at(2.25, 1.5) - 11.59375).abs() < 1e-5);
        // Next to the border, taps outside count as zero: at x = -0.5 only columns 0 and 1
        // contribute, with the kernel at distances 0.5 and 1.5 (0.59375 and -0.09375).
        assert!((at(-0.5, 2.0) - (0.59375 * 7.0 - 0.09375 * 9.0)).abs() < 1e-5);
    }
}
