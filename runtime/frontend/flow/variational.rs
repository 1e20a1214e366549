//! Variational refinement of a dense flow field (the last stage of DIS, after Brox et al. and
//! Zimmer et al.): normalised brightness + gradient constancy with a TV smoothness term,
//! solved by lagged-diffusivity fixed-point iterations and Gauss-Seidel SOR sweeps.
//!
//! Energy (Charbonnier penalty `psi(s2) = sqrt(s2 + eps^2)`):
//! `delta * psi((I_t + grad I . dw)^2 / |grad I|^2) + gamma * psi(gradient constancy)
//!  + alpha * psi(|grad (w + dw)|^2)`, linearised around the current flow `w`.

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

/// Reusable buffers for [`refine`](VariationalRefinement::refine). Unpadded planes are
/// `w * h`; planes used by the SOR solver have a one-pixel border, `(w + 2) * (h + 2)`, so
/// every pixel has four neighbours and border edges simply carry zero weight.
#[derive(Default)]
pub(crate) struct VariationalRefinement {
    warped: Vec<f32>,
    average: Vec<f32>,
    it: Vec<f32>,
    ix: Vec<f32>,
    iy: Vec<f32>,
    ixt: Vec<f32>,
    iyt: Vec<f32>,
    ixx: Vec<f32>,
    ixy: Vec<f32>,
    iyy: Vec<f32>,
    scratch: Vec<f32>,
    // Padded planes.
    flow_u: Vec<f32>,
    flow_v: Vec<f32>,
    du: Vec<f32>,
    dv: Vec<f32>,
    inv_diag_u: Vec<f32>,
    inv_diag_v: Vec<f32>,
    a12: Vec<f32>,
    b1: Vec<f32>,
    b2: Vec<f32>,
    weight_right: Vec<f32>,
    weight_down: Vec<f32>,
}

impl VariationalRefinement {
    /// Reserves buffers for images up to `w` x `h` so later calls do not allocate.
    pub(crate) fn reserve(&mut self, w: usize, h: usize) {
        self.resize(w, h);
    }

    fn resize(&mut self, w: usize, h: usize) {
        let n = w * h;
        for buf in [
            &mut self.warped,
            &mut self.average,
            &mut self.it,
            &mut self.ix,
            &mut self.iy,
            &mut self.ixt,
            &mut self.iyt,
            &mut self.ixx,
            &mut self.ixy,
            &mut self.iyy,
            &mut self.scratch,
        ] {
            buf.resize(n, 0.0);
        }
        let np = (w + 2) * (h + 2);
        for buf in [
            &mut self.flow_u,
            &mut self.flow_v,
            &mut self.du,
            &mut self.dv,
            &mut self.inv_diag_u,
            &mut self.inv_diag_v,
            &mut self.a12,
            &mut self.b1,
            &mut self.b2,
            &mut self.weight_right,
            &mut self.weight_down,
        ] {
            buf.resize(np, 0.0);
        }
    }

    /// Refines the flow (`u`, `v`, each `w * h`) from `i0` to `i1` in place.
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
        self.resize(w, h);
        let n = w * h;
        let (i0, i1) = (&i0[..n], &i1[..n]);
        self.prepare_derivatives(i0, i1, w, h, u, v);

        let pw = w + 2;
        pad_into(&u[..n], w, h, &mut self.flow_u);
        pad_into(&v[..n], w, h, &mut self.flow_v);
        self.du.fill(0.0);
        self.dv.fill(0.0);
        self.weight_right.fill(0.0);
        self.weight_down.fill(0.0);

        for _ in 0..params.fixed_point_iters {
            self.build_data_term(params, w, h);
            self.build_smoothness_term(params, w, h);
            for _ in 0..params.sor_iters {
                self.sor_sweep(params.omega, w, h);
            }
        }

        for y in 0..h {
            let q = (y + 1) * pw + 1;
            let du = &self.du[q..q + w];
            let dv = &self.dv[q..q + w];
            for (o, d) in u[y * w..][..w].iter_mut().zip(du) {
                *o += d;
            }
            for (o, d) in v[y * w..][..w].iter_mut().zip(dv) {
                *o += d;
            }
        }
    }

    /// Warps `i1` by the flow and computes the (averaged) spatial and temporal derivatives.
    fn prepare_derivatives(
        &mut self,
        i0: &[f32],
        i1: &[f32],
        w: usize,
        h: usize,
        u: &[f32],
        v: &[f32],
    ) {
        warp_bilinear(i1, w, h, u, v, &mut self.warped);
        for (((avg, it), &a), &b) in self
            .average
            .iter_mut()
            .zip(self.it.iter_mut())
            .zip(i0)
            .zip(self.warped.iter())
        {
            *avg = 0.5 * (a + b);
            *it = b - a;
        }
        central_gradients(&self.average, w, h, &mut self.ix, &mut self.iy);
        central_gradients(&self.it, w, h, &mut self.ixt, &mut self.iyt);
        central_gradients(&self.ix, w, h, &mut self.ixx, &mut self.ixy);
        central_gradients(&self.iy, w, h, &mut self.scratch, &mut self.iyy);
    }

    /// Data term (brightness and gradient constancy) linearised at the current increment:
    /// fills the 2x2 per-pixel system `a11 a12; a12 a22` and right-hand side `b1, b2`.
    /// The diagonal is stored without the smoothness part; see `build_smoothness_term`.
    fn build_data_term(&mut self, params: &VariationalParams, w: usize, h: usize) {
        let pw = w + 2;
        let half_delta = 0.5 * params.delta;
        let half_gamma = 0.5 * params.gamma;
        for y in 0..h {
            let p0 = y * w;
            let q0 = (y + 1) * pw + 1;
            let ix = &self.ix[p0..p0 + w];
            let iy = &self.iy[p0..p0 + w];
            let it = &self.it[p0..p0 + w];
            let ixx = &self.ixx[p0..p0 + w];
            let ixy = &self.ixy[p0..p0 + w];
            let iyy = &self.iyy[p0..p0 + w];
            let ixt = &self.ixt[p0..p0 + w];
            let iyt = &self.iyt[p0..p0 + w];
            let du = &self.du[q0..q0 + w];
            let dv = &self.dv[q0..q0 + w];
            let a11 = &mut self.inv_diag_u[q0..q0 + w];
            let a22 = &mut self.inv_diag_v[q0..q0 + w];
            let a12 = &mut self.a12[q0..q0 + w];
            let b1 = &mut self.b1[q0..q0 + w];
            let b2 = &mut self.b2[q0..q0 + w];
            for x in 0..w {
                let (gx, gy, gt) = (ix[x], iy[x], it[x]);
                // Brightness constancy, normalised by the gradient magnitude.
                let norm = gx * gx + gy * gy + ZETA_SQ;
                let r = gt + gx * du[x] + gy * dv[x];
                let wgt = half_delta / ((r * r / norm + EPS_SQ).sqrt() * norm);
                let mut s11 = wgt * gx * gx + ZETA_SQ;
                let mut s12 = wgt * gx * gy;
                let mut s22 = wgt * gy * gy + ZETA_SQ;
                let mut r1 = -wgt * gt * gx;
                let mut r2 = -wgt * gt * gy;
                // Gradient constancy, each component normalised.
                let (hxx, hxy, hyy) = (ixx[x], ixy[x], iyy[x]);
                let inv_nx = 1.0 / (hxx * hxx + hxy * hxy + ZETA_SQ);
                let inv_ny = 1.0 / (hyy * hyy + hxy * hxy + ZETA_SQ);
                let rx = ixt[x] + hxx * du[x] + hxy * dv[x];
                let ry = iyt[x] + hxy * du[x] + hyy * dv[x];
                let wg = half_gamma / (rx * rx * inv_nx + ry * ry * inv_ny + EPS_SQ).sqrt();
                s11 += wg * (hxx * hxx * inv_nx + hxy * hxy * inv_ny);
                s12 += wg * (hxx * hxy * inv_nx + hxy * hyy * inv_ny);
                s22 += wg * (hxy * hxy * inv_nx + hyy * hyy * inv_ny);
                r1 -= wg * (hxx * ixt[x] * inv_nx + hxy * iyt[x] * inv_ny);
                r2 -= wg * (hxy * ixt[x] * inv_nx + hyy * iyt[x] * inv_ny);
                a11[x] = s11;
                a12[x] = s12;
                a22[x] = s22;
                b1[x] = r1;
                b2[x] = r2;
            }
        }
    }

    /// Smoothness weights from the current flow `w + dw` (forward differences), their
    /// contribution to the right-hand side, and the final inverted diagonals.
    fn build_smoothness_term(&mut self, params: &VariationalParams, w: usize, h: usize) {
        let pw = w + 2;
        let half_alpha = 0.5 * params.alpha;
        for y in 0..h {
            let q0 = (y + 1) * pw + 1;
            // Current flow on this row and the next (the next is unused on the last row).
            let below = if y + 1 < h { q0 + pw } else { q0 };
            let fu = &self.flow_u[q0..q0 + w + 1];
            let fv = &self.flow_v[q0..q0 + w + 1];
            let du = &self.du[q0..q0 + w + 1];
            let dv = &self.dv[q0..q0 + w + 1];
            let fu_b = &self.flow_u[below..below + w];
            let fv_b = &self.flow_v[below..below + w];
            let du_b = &self.du[below..below + w];
            let dv_b = &self.dv[below..below + w];
            let right = &mut self.weight_right[q0..q0 + w];
            let down = &mut self.weight_down[q0..q0 + w];
            for x in 0..w {
                let cu = fu[x] + du[x];
                let cv = fv[x] + dv[x];
                // The padded column right of the last pixel is excluded below.
                let ux = fu[x + 1] + du[x + 1] - cu;
                let vx = fv[x + 1] + dv[x + 1] - cv;
                let uy = fu_b[x] + du_b[x] - cu;
                let vy = fv_b[x] + dv_b[x] - cv;
                let wgt = half_alpha / (ux * ux + uy * uy + vx * vx + vy * vy + EPS_SQ).sqrt();
                right[x] = wgt;
                down[x] = wgt;
            }
            // Border pixels: the forward difference leaving the image is zero and that edge
            // does not exist (on the last row `below` is the row itself, so uy = vy = 0).
            let last = w - 1;
            let cu = fu[last] + du[last];
            let cv = fv[last] + dv[last];
            let uy = fu_b[last] + du_b[last] - cu;
            let vy = fv_b[last] + dv_b[last] - cv;
            let wgt = half_alpha / (uy * uy + vy * vy + EPS_SQ).sqrt();
            right[last] = 0.0;
            down[last] = wgt;
            if y + 1 == h {
                down.fill(0.0);
            }
        }
        // Right-hand side of the smoothness term (pulls w + dw towards its neighbours) and
        // the diagonal, inverted once for all SOR sweeps.
        for y in 0..h {
            let q0 = (y + 1) * pw + 1;
            let wr = &self.weight_right[q0 - 1..q0 + w];
            let wd = &self.weight_down[q0..q0 + w];
            let wu = &self.weight_down[q0 - pw..q0 - pw + w];
            let fu = &self.flow_u[q0 - pw - 1..q0 + pw + w + 1];
            let fv = &self.flow_v[q0 - pw - 1..q0 + pw + w + 1];
            let b1 = &mut self.b1[q0..q0 + w];
            let b2 = &mut self.b2[q0..q0 + w];
            let d1 = &mut self.inv_diag_u[q0..q0 + w];
            let d2 = &mut self.inv_diag_v[q0..q0 + w];
            // In `fu`/`fv`, the pixel x of this row is at c = pw + 1 + x.
            for x in 0..w {
                let c = pw + 1 + x;
                let (r, l, d, u) = (wr[x + 1], wr[x], wd[x], wu[x]);
                b1[x] += r * (fu[c + 1] - fu[c])
                    + l * (fu[c - 1] - fu[c])
                    + d * (fu[c + pw] - fu[c])
                    + u * (fu[c - pw] - fu[c]);
                b2[x] += r * (fv[c + 1] - fv[c])
                    + l * (fv[c - 1] - fv[c])
                    + d * (fv[c + pw] - fv[c])
                    + u * (fv[c - pw] - fv[c]);
                let sum = r + l + d + u;
                d1[x] = 1.0 / (d1[x] + sum);
                d2[x] = 1.0 / (d2[x] + sum);
            }
        }
    }

    /// One red-black sweep with over-relaxation over the increment (`du`, `dv`): first the
    /// pixels with even `x + y`, then the odd ones. Pixels of one colour only depend on the
    /// other colour, so each half-sweep has no dependency chain.
    fn sor_sweep(&mut self, omega: f32, w: usize, h: usize) {
        let pw = w + 2;
        for colour in 0..2 {
            for y in 0..h {
                let q0 = (y + 1) * pw + 1;
                // Windows of the padded planes around this row; pixel x is at c = pw + 1 + x.
                let du = &mut self.du[q0 - pw - 1..q0 + pw + w + 1];
                let dv = &mut self.dv[q0 - pw - 1..q0 + pw + w + 1];
                let wr = &self.weight_right[q0 - 1..q0 + w];
                let wd = &self.weight_down[q0..q0 + w];
                let wu = &self.weight_down[q0 - pw..q0 - pw + w];
                let a12 = &self.a12[q0..q0 + w];
                let b1 = &self.b1[q0..q0 + w];
                let b2 = &self.b2[q0..q0 + w];
                let d1 = &self.inv_diag_u[q0..q0 + w];
                let d2 = &self.inv_diag_v[q0..q0 + w];
                for x in ((y + colour) % 2..w).step_by(2) {
                    let c = pw + 1 + x;
                    let (r, l, d, u) = (wr[x + 1], wr[x], wd[x], wu[x]);
                    let nu = r * du[c + 1] + l * du[c - 1] + d * du[c + pw] + u * du[c - pw];
                    let nv = r * dv[c + 1] + l * dv[c - 1] + d * dv[c + pw] + u * dv[c - pw];
                    let new_u = (b1[x] + nu - a12[x] * dv[c]) * d1[x];
                    let cu = du[c] + omega * (new_u - du[c]);
                    du[c] = cu;
                    let new_v = (b2[x] + nv - a12[x] * cu) * d2[x];
                    dv[c] += omega * (new_v - dv[c]);
                }
            }
        }
    }
}

/// Copies a `w` x `h` plane into the interior of a `(w + 2)` x `(h + 2)` plane and
/// replicates its edges into the border.
fn pad_into(src: &[f32], w: usize, h: usize, dst: &mut [f32]) {
    super::ops::pad_replicate(src, w, h, 1, dst);
}
