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
            let last_row = y + 1 == h;
            for x in 0..w {
                let q = q0 + x;
                let cu = self.flow_u[q] + self.du[q];
                let cv = self.flow_v[q] + self.dv[q];
                let (ux, vx) = if x + 1 < w {
                    (
                        self.flow_u[q + 1] + self.du[q + 1] - cu,
                        self.flow_v[q + 1] + self.dv[q + 1] - cv,
                    )
                } else {
                    (0.0, 0.0)
                };
                let (uy, vy) = if !last_row {
                    (
                        self.flow_u[q + pw] + self.du[q + pw] - cu,
                        self.flow_v[q + pw] + self.dv[q + pw] - cv,
                    )
                } else {
                    (0.0, 0.0)
                };
                let wgt = half_alpha / (ux * ux + uy * uy + vx * vx + vy * vy + EPS_SQ).sqrt();
                self.weight_right[q] = if x + 1 < w { wgt } else { 0.0 };
                self.weight_down[q] = if !last_row { wgt } else { 0.0 };
            }
        }
        // Right-hand side of the smoothness term (pulls w + dw towards its neighbours) and
        // the diagonal, inverted once for all SOR sweeps.
        for y in 0..h {
            let q0 = (y + 1) * pw + 1;
            for q in q0..q0 + w {
                let (wr, wl) = (self.weight_right[q], self.weight_right[q - 1]);
                let (wd, wu) = (self.weight_down[q], self.weight_down[q - pw]);
                let fu = &self.flow_u;
                let fv = &self.flow_v;
                self.b1[q] += wr * (fu[q + 1] - fu[q])
                    + wl * (fu[q - 1] - fu[q])
                    + wd * (fu[q + pw] - fu[q])
                    + wu * (fu[q - pw] - fu[q]);
                self.b2[q] += wr * (fv[q + 1] - fv[q])
                    + wl * (fv[q - 1] - fv[q])
                    + wd * (fv[q + pw] - fv[q])
                    + wu * (fv[q - pw] - fv[q]);
                let sum = wr + wl + wd + wu;
                self.inv_diag_u[q] = 1.0 / (self.inv_diag_u[q] + sum);
                self.inv_diag_v[q] = 1.0 / (self.inv_diag_v[q] + sum);
            }
        }
    }

    /// One Gauss-Seidel sweep with over-relaxation over the increment (`du`, `dv`).
    fn sor_sweep(&mut self, omega: f32, w: usize, h: usize) {
        let pw = w + 2;
        let du = &mut self.du;
        let dv = &mut self.dv;
        for y in 0..h {
            let q0 = (y + 1) * pw + 1;
            for q in q0..q0 + w {
                let (wr, wl) = (self.weight_right[q], self.weight_right[q - 1]);
                let (wd, wu) = (self.weight_down[q], self.weight_down[q - pw]);
                let nu = wr * du[q + 1] + wl * du[q - 1] + wd * du[q + pw] + wu * du[q - pw];
                let nv = wr * dv[q + 1] + wl * dv[q - 1] + wd * dv[q + pw] + wu * dv[q - pw];
                let a12 = self.a12[q];
                let new_u = (self.b1[q] + nu - a12 * dv[q]) * self.inv_diag_u[q];
                du[q] += omega * (new_u - du[q]);
                let new_v = (self.b2[q] + nv - a12 * du[q]) * self.inv_diag_v[q];
                dv[q] += omega * (new_v - dv[q]);
            }
        }
    }
}

/// Copies a `w` x `h` plane into the interior of a `(w + 2)` x `(h + 2)` plane and
/// replicates its edges into the border.
fn pad_into(src: &[f32], w: usize, h: usize, dst: &mut [f32]) {
    super::ops::pad_replicate(src, w, h, 1, dst);
}
