//! Variational refinement of a dense flow field (the last stage of DIS, after Brox et al. and
//! Zimmer et al.): normalised brightness + gradient constancy with a TV smoothness term,
//! solved by lagged-diffusivity fixed-point iterations and red-black SOR sweeps.
//!
//! Energy (Charbonnier penalty `psi(s2) = sqrt(s2 + eps^2)`), linearised around the current
//! flow `w` for an increment `dw`:
//! `delta * psi((I_t + grad I . dw)^2 / |grad I|^2) + gamma * psi(gradient constancy)
//!  + alpha * psi(|grad (w + dw)|^2)`.
//!
//! All solver planes use a checkerboard layout: the pixels with even `x + y` ("red") and odd
//! `x + y` ("black") are stored in two separate planes, pixel (x, y) at row `y + 1`, column
//! `x / 2 + 1` of its colour's plane, with a zero border. The four neighbours of a pixel are
//! then contiguous runs of the other plane, so a half-sweep over one colour is a plain
//! vectorisable loop with no dependency chain.

use super::ops::{central_gradients, warp_bilinear};

/// Weights and iteration counts of the refinement (OpenCV's defaults for DIS).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VariationalParams {
    /// Smoothness weight.
    pub alpha: f32,
    /// Brightness constancy weight.
    pub delta: f32,
    /// Gradient constancy weight.
    pub gamma: f32,
    /// Outer (lagged nonlinearity) iterations; 0 disables the refinement.
    pub fixed_point_iters: usize,
    /// SOR sweeps per fixed-point iteration.
    pub sor_iters: usize,
    /// SOR relaxation factor in (0, 2).
    pub omega: f32,
}

impl VariationalParams {
    pub(crate) fn opencv_like(fixed_point_iters: usize) -> Self {
        VariationalParams {
            alpha: 20.0,
            delta: 5.0,
            gamma: 10.0,
            fixed_point_iters,
            sor_iters: 5,
            omega: 1.6,
        }
    }
}

/// Normalisation regulariser of the data terms (squared), per OpenCV.
const ZETA_SQ: f32 = 0.1 * 0.1;
/// Charbonnier epsilon (squared).
const EPS_SQ: f32 = 0.001 * 0.001;

/// Geometry of the checkerboard layout for a `w` x `h` image.
#[derive(Debug, Clone, Copy, Default)]
struct Checker {
    w: usize,
    h: usize,
    /// Stored row length: `(w + 1) / 2` pixels plus one border column on each side.
    stride: usize,
}

impl Checker {
    fn new(w: usize, h: usize) -> Self {
        Checker {
            w,
            h,
            stride: w.div_ceil(2) + 2,
        }
    }

    fn plane_len(&self) -> usize {
        self.stride * (self.h + 2)
    }

    /// For colour `c` on image row `y`: the first x of that colour and the pixel count.
    fn run(&self, y: usize, c: usize) -> (usize, usize) {
        let first = (y + c) % 2;
        (first, (self.w + 1 - first.min(self.w)) / 2)
    }

    /// Start of image row `y` in a plane (the border column), so pixel j of the run is at
    /// `row_start(y) + 1 + j`.
    fn row_start(&self, y: usize) -> usize {
        (y + 1) * self.stride
    }
}

/// A plane in checkerboard layout: `[red, black]`.
#[derive(Default)]
struct CheckerPlane([Vec<f32>; 2]);

impl CheckerPlane {
    fn resize(&mut self, len: usize) {
        for p in &mut self.0 {
            p.resize(len, 0.0);
        }
    }

    fn fill(&mut self, value: f32) {
        for p in &mut self.0 {
            p.fill(value);
        }
    }

    /// Scatters a row-major `w` x `h` image into the two colour planes (borders untouched).
    fn split_from(&mut self, g: &Checker, src: &[f32]) {
        for y in 0..g.h {
            let row = &src[y * g.w..][..g.w];
            for c in 0..2 {
                let (first, n) = g.run(y, c);
                let dst = &mut self.0[c][g.row_start(y) + 1..][..n];
                for (d, s) in dst.iter_mut().zip(row[first..].iter().step_by(2)) {
                    *d = *s;
                }
            }
        }
    }

    /// Adds the planes back onto a row-major image: `dst[x, y] += plane value`.
    fn add_into(&self, g: &Checker, dst: &mut [f32]) {
        for y in 0..g.h {
            let row = &mut dst[y * g.w..][..g.w];
            for c in 0..2 {
                let (first, n) = g.run(y, c);
                let src = &self.0[c][g.row_start(y) + 1..][..n];
                for (d, s) in row[first..].iter_mut().step_by(2).zip(src) {
                    *d += *s;
                }
            }
        }
    }
}

/// Reusable buffers for [`refine`](VariationalRefinement::refine).
#[derive(Default)]
pub(crate) struct VariationalRefinement {
    // Row-major scratch planes.
    warped: Vec<f32>,
    average: Vec<f32>,
    temporal: Vec<f32>,
    grad_x: Vec<f32>,
    grad_y: Vec<f32>,
    scratch_a: Vec<f32>,
    scratch_b: Vec<f32>,
    // Checkerboard planes: image derivatives, flow, increment, linear system.
    ix: CheckerPlane,
    iy: CheckerPlane,
    it: CheckerPlane,
    ixx: CheckerPlane,
    ixy: CheckerPlane,
    iyy: CheckerPlane,
    ixt: CheckerPlane,
    iyt: CheckerPlane,
    flow_u: CheckerPlane,
    flow_v: CheckerPlane,
    du: CheckerPlane,
    dv: CheckerPlane,
    a12: CheckerPlane,
    inv_diag_u: CheckerPlane,
    inv_diag_v: CheckerPlane,
    b1: CheckerPlane,
    b2: CheckerPlane,
    /// Smoothness weight of the edge to the right / downward neighbour (0 at the border).
    weight_right: CheckerPlane,
    weight_down: CheckerPlane,
}

impl VariationalRefinement {
    /// Reserves buffers for images up to `w` x `h` so later calls do not allocate.
    pub(crate) fn reserve(&mut self, w: usize, h: usize) {
        self.resize(w, h);
    }

    fn resize(&mut self, w: usize, h: usize) -> Checker {
        let n = w * h;
        for buf in [
            &mut self.warped,
            &mut self.average,
            &mut self.temporal,
            &mut self.grad_x,
            &mut self.grad_y,
            &mut self.scratch_a,
            &mut self.scratch_b,
        ] {
            buf.resize(n, 0.0);
        }
        let g = Checker::new(w, h);
        for plane in [
            &mut self.ix,
            &mut self.iy,
            &mut self.it,
            &mut self.ixx,
            &mut self.ixy,
            &mut self.iyy,
            &mut self.ixt,
            &mut self.iyt,
            &mut self.flow_u,
            &mut self.flow_v,
            &mut self.du,
            &mut self.dv,
            &mut self.a12,
            &mut self.inv_diag_u,
            &mut self.inv_diag_v,
            &mut self.b1,
            &mut self.b2,
            &mut self.weight_right,
            &mut self.weight_down,
        ] {
            plane.resize(g.plane_len());
        }
        g
    }

    /// Refines the flow (`u`, `v`, each `w * h`, row-major) from `i0` to `i1` in place.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn refine(
        &mut self,
        params: &VariationalParams,
        i0: &[f32],
        i1: &[f32],
        w: usize,
        h: usize,
        u: &mut [f32],
        v: &mut [f32],
    ) {
        if params.fixed_point_iters == 0 || w < 2 || h < 2 {
            return;
        }
        let g = self.resize(w, h);
        let n = w * h;
        self.prepare_derivatives(&g, &i0[..n], &i1[..n], &u[..n], &v[..n]);
        // Borders of the flow planes are read with zero weight; keep them finite.
        self.flow_u.fill(0.0);
        self.flow_v.fill(0.0);
        self.flow_u.split_from(&g, u);
        self.flow_v.split_from(&g, v);
        self.du.fill(0.0);
        self.dv.fill(0.0);
        self.weight_right.fill(0.0);
        self.weight_down.fill(0.0);

        for _ in 0..params.fixed_point_iters {
            self.build_data_term(params, &g);
            self.build_smoothness_weights(params, &g);
            self.add_smoothness_term(&g);
            for _ in 0..params.sor_iters {
                self.sor_half_sweep(params.omega, &g, 0);
                self.sor_half_sweep(params.omega, &g, 1);
            }
        }
        self.du.add_into(&g, u);
        self.dv.add_into(&g, v);
    }

    /// Warps `i1` by the flow, then splits the averaged spatial derivatives, the temporal
    /// difference and their derivatives into checkerboard planes.
    fn prepare_derivatives(&mut self, g: &Checker, i0: &[f32], i1: &[f32], u: &[f32], v: &[f32]) {
        let (w, h) = (g.w, g.h);
        warp_bilinear(i1, w, h, u, v, &mut self.warped);
        for (((avg, it), &a), &b) in self
            .average
            .iter_mut()
            .zip(self.temporal.iter_mut())
            .zip(i0)
            .zip(self.warped.iter())
        {
            *avg = 0.5 * (a + b);
            *it = b - a;
        }
        central_gradients(&self.average, w, h, &mut self.grad_x, &mut self.grad_y);
        self.ix.split_from(g, &self.grad_x);
        self.iy.split_from(g, &self.grad_y);
        self.it.split_from(g, &self.temporal);
        central_gradients(
            &self.temporal,
            w,
            h,
            &mut self.scratch_a,
            &mut self.scratch_b,
        );
        self.ixt.split_from(g, &self.scratch_a);
        self.iyt.split_from(g, &self.scratch_b);
        central_gradients(&self.grad_x, w, h, &mut self.scratch_a, &mut self.scratch_b);
        self.ixx.split_from(g, &self.scratch_a);
        self.ixy.split_from(g, &self.scratch_b);
        central_gradients(&self.grad_y, w, h, &mut self.scratch_a, &mut self.scratch_b);
        self.iyy.split_from(g, &self.scratch_b);
    }

    /// Data term (brightness and gradient constancy) linearised at the current increment:
    /// the 2x2 per-pixel system `[a11 a12; a12 a22]` (a11, a22 stored in the diagonal planes,
    /// completed by `add_smoothness_term`) and right-hand side `b1, b2`. Pointwise, so it
    /// runs over whole planes, borders included (they hold zeros and stay harmless).
    fn build_data_term(&mut self, params: &VariationalParams, g: &Checker) {
        let half_delta = 0.5 * params.delta;
        let half_gamma = 0.5 * params.gamma;
        let len = g.plane_len();
        for c in 0..2 {
            let ix = &self.ix.0[c][..len];
            let iy = &self.iy.0[c][..len];
            let it = &self.it.0[c][..len];
            let ixx = &self.ixx.0[c][..len];
            let ixy = &self.ixy.0[c][..len];
            let iyy = &self.iyy.0[c][..len];
            let ixt = &self.ixt.0[c][..len];
            let iyt = &self.iyt.0[c][..len];
            let du = &self.du.0[c][..len];
            let dv = &self.dv.0[c][..len];
            let a11 = &mut self.inv_diag_u.0[c][..len];
            let a22 = &mut self.inv_diag_v.0[c][..len];
            let a12 = &mut self.a12.0[c][..len];
            let b1 = &mut self.b1.0[c][..len];
            let b2 = &mut self.b2.0[c][..len];
            for k in 0..len {
                let (gx, gy, gt) = (ix[k], iy[k], it[k]);
                // Brightness constancy, normalised by the gradient magnitude.
                let norm = gx * gx + gy * gy + ZETA_SQ;
                let r = gt + gx * du[k] + gy * dv[k];
                let wgt = half_delta / ((r * r / norm + EPS_SQ).sqrt() * norm);
                // Gradient constancy, each component normalised.
                let (hxx, hxy, hyy) = (ixx[k], ixy[k], iyy[k]);
                let inv_nx = 1.0 / (hxx * hxx + hxy * hxy + ZETA_SQ);
                let inv_ny = 1.0 / (hyy * hyy + hxy * hxy + ZETA_SQ);
                let rx = ixt[k] + hxx * du[k] + hxy * dv[k];
                let ry = iyt[k] + hxy * du[k] + hyy * dv[k];
                let wg = half_gamma / (rx * rx * inv_nx + ry * ry * inv_ny + EPS_SQ).sqrt();
                let (gx_x, gx_y) = (wg * inv_nx, wg * inv_ny);
                a11[k] = wgt * gx * gx + ZETA_SQ + gx_x * hxx * hxx + gx_y * hxy * hxy;
                a12[k] = wgt * gx * gy + gx_x * hxx * hxy + gx_y * hxy * hyy;
                a22[k] = wgt * gy * gy + ZETA_SQ + gx_x * hxy * hxy + gx_y * hyy * hyy;
                b1[k] = -wgt * gt * gx - gx_x * hxx * ixt[k] - gx_y * hxy * iyt[k];
                b2[k] = -wgt * gt * gy - gx_x * hxy * ixt[k] - gx_y * hyy * iyt[k];
            }
        }
    }

    /// Smoothness weights `alpha/2 / psi'` from the forward differences of the current flow
    /// `w + dw`, stored per pixel for its right and downward edges (0 where the edge would
    /// leave the image).
    fn build_smoothness_weights(&mut self, params: &VariationalParams, g: &Checker) {
        let half_alpha = 0.5 * params.alpha;
        for y in 0..g.h {
            let last_row = y + 1 == g.h;
            let row = g.row_start(y);
            // On the last row there is no row below: use the row itself (zero difference).
            let below = if last_row { row } else { g.row_start(y + 1) };
            for c in 0..2 {
                let o = 1 - c;
                let (first, n) = g.run(y, c);
                // Own pixels at row + 1 + j; right neighbours (other colour) at
                // row + 1 + first + j; below neighbours (other colour) at below + 1 + j.
                let below_plane = if last_row { c } else { o };
                let fu = &self.flow_u.0[c][row + 1..][..n];
                let fv = &self.flow_v.0[c][row + 1..][..n];
                let du = &self.du.0[c][row + 1..][..n];
                let dv = &self.dv.0[c][row + 1..][..n];
                let fu_r = &self.flow_u.0[o][row + 1 + first..][..n];
                let fv_r = &self.flow_v.0[o][row + 1 + first..][..n];
                let du_r = &self.du.0[o][row + 1 + first..][..n];
                let dv_r = &self.dv.0[o][row + 1 + first..][..n];
                let fu_b = &self.flow_u.0[below_plane][below + 1..][..n];
                let fv_b = &self.flow_v.0[below_plane][below + 1..][..n];
                let du_b = &self.du.0[below_plane][below + 1..][..n];
                let dv_b = &self.dv.0[below_plane][below + 1..][..n];
                let right = &mut self.weight_right.0[c][row + 1..][..n];
                let down = &mut self.weight_down.0[c][row + 1..][..n];
                for j in 0..n {
                    let cu = fu[j] + du[j];
                    let cv = fv[j] + dv[j];
                    let ux = fu_r[j] + du_r[j] - cu;
                    let vx = fv_r[j] + dv_r[j] - cv;
                    let uy = fu_b[j] + du_b[j] - cu;
                    let vy = fv_b[j] + dv_b[j] - cv;
                    let wgt = half_alpha / (ux * ux + uy * uy + vx * vx + vy * vy + EPS_SQ).sqrt();
                    right[j] = wgt;
                    down[j] = wgt;
                }
                // The last pixel of the image row has no right edge; its weight only
                // measures the vertical difference.
                if n > 0 && first + 2 * (n - 1) == g.w - 1 {
                    let j = n - 1;
                    let cu = fu[j] + du[j];
                    let cv = fv[j] + dv[j];
                    let uy = fu_b[j] + du_b[j] - cu;
                    let vy = fv_b[j] + dv_b[j] - cv;
                    right[j] = 0.0;
                    down[j] = half_alpha / (uy * uy + vy * vy + EPS_SQ).sqrt();
                }
                if last_row {
                    down.fill(0.0);
                }
            }
        }
    }

    /// Adds the smoothness term to the system: the right-hand side pulls `w + dw` towards
    /// the neighbours' flow, and the diagonal gains the edge weights (then gets inverted once
    /// for all SOR sweeps).
    fn add_smoothness_term(&mut self, g: &Checker) {
        for y in 0..g.h {
            let row = g.row_start(y);
            let above = row - g.stride; // border row when y == 0
            let below = row + g.stride; // border row when y == h - 1
            for c in 0..2 {
                let o = 1 - c;
                let (first, n) = g.run(y, c);
                let own = row + 1;
                let left = row + first; // left neighbour of pixel j: other plane
                let right = row + first + 1;
                let wr = &self.weight_right.0[c][own..][..n];
                let wd = &self.weight_down.0[c][own..][..n];
                let wl = &self.weight_right.0[o][left..][..n];
                let wu = &self.weight_down.0[o][above + 1..][..n];
                let b1 = &mut self.b1.0[c][own..][..n];
                let b2 = &mut self.b2.0[c][own..][..n];
                let d1 = &mut self.inv_diag_u.0[c][own..][..n];
                let d2 = &mut self.inv_diag_v.0[c][own..][..n];
                for (plane, b) in [(&self.flow_u, b1), (&self.flow_v, b2)] {
                    let f = &plane.0[c][own..][..n];
                    let fl = &plane.0[o][left..][..n];
                    let fr = &plane.0[o][right..][..n];
                    let fa = &plane.0[o][above + 1..][..n];
                    let fb = &plane.0[o][below + 1..][..n];
                    for j in 0..n {
                        b[j] += wr[j] * (fr[j] - f[j])
                            + wl[j] * (fl[j] - f[j])
                            + wd[j] * (fb[j] - f[j])
                            + wu[j] * (fa[j] - f[j]);
                    }
                }
                for j in 0..n {
                    let sum = wr[j] + wl[j] + wd[j] + wu[j];
                    d1[j] = 1.0 / (d1[j] + sum);
                    d2[j] = 1.0 / (d2[j] + sum);
                }
            }
        }
    }

    /// Over-relaxed Gauss-Seidel update of all pixels of colour `c` from the other colour.
    fn sor_half_sweep(&mut self, omega: f32, g: &Checker, c: usize) {
        let o = 1 - c;
        let [du_red, du_black] = &mut self.du.0;
        let [dv_red, dv_black] = &mut self.dv.0;
        let (du_c, du_o) = if c == 0 {
            (du_red, &*du_black)
        } else {
            (du_black, &*du_red)
        };
        let (dv_c, dv_o) = if c == 0 {
            (dv_red, &*dv_black)
        } else {
            (dv_black, &*dv_red)
        };
        for y in 0..g.h {
            let row = g.row_start(y);
            let (above, below) = (row - g.stride, row + g.stride);
            let (first, n) = g.run(y, c);
            let own = row + 1;
            let (left, right) = (row + first, row + first + 1);
            let wr = &self.weight_right.0[c][own..][..n];
            let wd = &self.weight_down.0[c][own..][..n];
            let wl = &self.weight_right.0[o][left..][..n];
            let wu = &self.weight_down.0[o][above + 1..][..n];
            let a12 = &self.a12.0[c][own..][..n];
            let b1 = &self.b1.0[c][own..][..n];
            let b2 = &self.b2.0[c][own..][..n];
            let d1 = &self.inv_diag_u.0[c][own..][..n];
            let d2 = &self.inv_diag_v.0[c][own..][..n];
            let (ul, ur) = (&du_o[left..][..n], &du_o[right..][..n]);
            let (ua, ub) = (&du_o[above + 1..][..n], &du_o[below + 1..][..n]);
            let (vl, vr) = (&dv_o[left..][..n], &dv_o[right..][..n]);
            let (va, vb) = (&dv_o[above + 1..][..n], &dv_o[below + 1..][..n]);
            let uc = &mut du_c[own..][..n];
            let vc = &mut dv_c[own..][..n];
            for j in 0..n {
                let nu = wr[j] * ur[j] + wl[j] * ul[j] + wd[j] * ub[j] + wu[j] * ua[j];
                let nv = wr[j] * vr[j] + wl[j] * vl[j] + wd[j] * vb[j] + wu[j] * va[j];
                let new_u = (b1[j] + nu - a12[j] * vc[j]) * d1[j];
                let cu = uc[j] + omega * (new_u - uc[j]);
                uc[j] = cu;
                let new_v = (b2[j] + nv - a12[j] * cu) * d2[j];
                vc[j] += omega * (new_v - vc[j]);
            }
        }
    }
}
