//! Dense optical flow between consecutive frames (the fast DIS family, see [`DisFlow`], and
//! TV-L1 as OpenCV computes it, see [`TvL1Flow`]) and MOV's 8-bit flow encoding
//! ([`mov_encode`]) that turns a flow field into a model input.

mod dis;
mod ops;
mod tvl1;
mod variational;

pub use dis::{DisFlow, DisParams, MIN_FINEST_SIDE, MIN_SIDE};
pub use tvl1::{TvL1Flow, TvL1Params};

/// A dense flow field: for each pixel (row-major), the (u, v) displacement in pixels
/// from the previous frame to the next one (u to the right, v downwards).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowField {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Interleaved displacements `u0, v0, u1, v1, ...`, length `2 * width * height`.
    pub uv: Vec<f32>,
}

impl FlowField {
    /// A zero flow field of `width` x `height` pixels.
    pub fn new(width: usize, height: usize) -> Self {
        FlowField {
            width,
            height,
            uv: vec![0.0; 2 * width * height],
        }
    }

    /// The (u, v) displacement at pixel (`x`, `y`), or `None` outside the field.
    pub fn at(&self, x: usize, y: usize) -> Option<(f32, f32)> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = 2 * (y * self.width + x);
        Some((*self.uv.get(i)?, *self.uv.get(i + 1)?))
    }

    /// Makes the field `width` x `height`, reusing its buffer (allocates only when it grows).
    pub fn reshape(&mut self, width: usize, height: usize) {
        self.width = width;
        self.height = height;
        self.uv.resize(2 * width * height, 0.0);
    }
}

/// Grey values every estimator accepts, `(lowest, highest)`: frames are nominally grey in
/// 0..=255 ([`rgb_to_gray`]); up to one full range of slack on either side is accepted
/// (sensor noise, filtered or sharpened frames), anything further out is refused as a unit
/// mistake (and would overflow the estimators' sums of squares).
pub const GRAY_LIMITS: (f32, f32) = (-255.0, 510.0);

/// Estimates dense optical flow between two grayscale images.
///
/// # Accepted input
/// Every estimator checks its frames before touching them, on every call (a fresh
/// estimator too), and refuses with a [`Video`](crate::ErrorKind::Video) error whose
/// message names the estimator and the rule:
/// - `width` and `height` below [`MIN_SIDE`] (0x0, 1x1, 1xN, 7x64, ...);
/// - `prev` or `next` not holding `width * height` values;
/// - a non-finite value (NaN, +-inf) in either frame (the message gives the pixel);
/// - a value outside [`GRAY_LIMITS`];
/// - TV-L1 only (its parameters assume grey in 0..=255): a pair whose values all lie at or
///   below 1 and are not all equal, i.e. grey scaled to 0..1, which would give near-zero
///   flow; scale such frames by 255.
///
/// Any other size from `MIN_SIDE` up (odd sizes included) and any values within the limits
/// give `Ok` and a finite field.
pub trait FlowEstimator: Send {
    /// The name this estimator was built from (e.g. `"dis-fast"`).
    fn name(&self) -> &'static str;

    /// Computes the flow from `prev` to `next`: both are grayscale `f32` images with values
    /// in 0..255, row-major, `width` x `height`. `out` is reshaped to that size if needed.
    /// After the first call at a given size no memory is allocated.
    ///
    /// # Errors
    /// [`Video`](crate::ErrorKind::Video) for frames the trait's rules refuse (see
    /// [`FlowEstimator`]): too small, not `width * height` values, a non-finite value, a
    /// value outside [`GRAY_LIMITS`], and for TV-L1 grey scaled to 0..1.
    fn compute(
        &mut self,
        prev: &[f32],
        next: &[f32],
        width: usize,
        height: usize,
        out: &mut FlowField,
    ) -> crate::Result<()>;
}

/// Lowest and highest value of a frame, or the index of its first value that is non-finite
/// or outside [`GRAY_LIMITS`].
fn scan_gray(frame: &[f32]) -> std::result::Result<(f32, f32), usize> {
    let (lo, hi) = GRAY_LIMITS;
    let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
    for (i, &x) in frame.iter().enumerate() {
        // NaN fails both comparisons.
        if !(x >= lo && x <= hi) {
            return Err(i);
        }
        min = min.min(x);
        max = max.max(x);
    }
    Ok((min, max))
}

/// Checks the frames of a [`FlowEstimator::compute`] call against the trait's rules (sizes,
/// lengths, finite values within [`GRAY_LIMITS`]); `name` is the estimator's, for the
/// message. Returns the lowest and highest value over both frames.
pub(crate) fn check_frames(
    name: &str,
    prev: &[f32],
    next: &[f32],
    width: usize,
    height: usize,
) -> crate::Result<(f32, f32)> {
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(crate::err!(
            Video,
            "{name} optical flow: frames must be at least {MIN_SIDE}x{MIN_SIDE} pixels, got {width}x{height}"
        ));
    }
    let n = width.checked_mul(height).ok_or_else(|| {
        crate::err!(
            Video,
            "{name} optical flow: frame size {width}x{height} overflows"
        )
    })?;
    if prev.len() != n || next.len() != n {
        return Err(crate::err!(
            Video,
            "{name} optical flow: frames must hold {width}x{height} = {n} gray values, got {} (prev) and {} (next)",
            prev.len(),
            next.len()
        ));
    }
    let mut range = (f32::INFINITY, f32::NEG_INFINITY);
    for (which, frame) in [("prev", prev), ("next", next)] {
        match scan_gray(frame) {
            Ok((min, max)) => range = (range.0.min(min), range.1.max(max)),
            Err(i) => {
                let x = frame[i];
                let (px, py) = (i % width, i / width);
                let (lo, hi) = GRAY_LIMITS;
                return Err(if x.is_finite() {
                    crate::err!(
                        Video,
                        "{name} optical flow: gray value {x} at pixel ({px}, {py}) of {which} is outside {lo}..={hi} (grey is 0..=255)"
                    )
                } else {
                    crate::err!(
                        Video,
                        "{name} optical flow: gray value {x} at pixel ({px}, {py}) of {which}; values must be finite"
                    )
                });
            }
        }
    }
    Ok(range)
}

/// The estimator names [`estimator`] accepts, fastest first.
pub const ESTIMATOR_NAMES: [&str; 4] = ["dis-ultrafast", "dis-fast", "dis-medium", "tvl1"];

/// Builds a flow estimator by name: `"dis-ultrafast"`, `"dis-fast"` or `"dis-medium"` (see
/// [`DisParams`] for what each preset does), or `"tvl1"` (TV-L1 with OpenCV's default
/// parameters; build a [`TvL1Flow`] directly for others). Any other name is a
/// [`Config`](crate::ErrorKind::Config) error that lists the valid names.
///
/// # Errors
/// [`Config`](crate::ErrorKind::Config) for an unknown name (the message lists the valid
/// ones).
pub fn estimator(name: &str) -> crate::Result<Box<dyn FlowEstimator>> {
    let params = match name {
        "dis-ultrafast" => DisParams::ultrafast(),
        "dis-fast" => DisParams::fast(),
        "dis-medium" => DisParams::medium(),
        "tvl1" => return Ok(Box::new(TvL1Flow::new(TvL1Params::default())?)),
        _ => {
            return Err(crate::err!(
                Config,
                "unknown optical flow estimator {name:?}; valid names: {}",
                ESTIMATOR_NAMES.join(", ")
            ))
        }
    };
    Ok(Box::new(DisFlow::new(params)?))
}

/// Converts packed RGB `u8` pixels to grayscale `f32` in 0..255 with the ITU-R BT.601 weights
/// OpenCV's `COLOR_RGB2GRAY` uses (0.299 R + 0.587 G + 0.114 B), without rounding.
/// Converts `min(rgb.len() / 3, out.len())` pixels; the rest of `out` is left untouched.
pub fn rgb_to_gray(rgb: &[u8], out: &mut [f32]) {
    for (px, y) in rgb.chunks_exact(3).zip(out.iter_mut()) {
        *y = 0.299 * f32::from(px[0]) + 0.587 * f32::from(px[1]) + 0.114 * f32::from(px[2]);
    }
}

/// The flow bound MOV uses when it stores flow as 8-bit images, in pixels.
pub const MOV_FLOW_BOUND: f32 = 20.0;

/// How a flow field becomes a model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FlowEncoding {
    /// MOV's 8-bit images ([`mov_encode`]): 3 planes (u, v, zeros), clipped to `bound` px.
    Mov {
        /// Clip bound in pixels (MOV: [`MOV_FLOW_BOUND`]).
        bound: f32,
    },
    /// The displacements themselves in pixels ([`write_planar_uv`]): 2 planes (u, v).
    Float,
}

impl FlowEncoding {
    /// Planes per field in the model input: 3 for MOV, 2 for float.
    pub fn channels(&self) -> usize {
        match self {
            FlowEncoding::Mov { .. } => 3,
            FlowEncoding::Float => 2,
        }
    }
}

/// Everything the window scheduler needs to turn frames into a model's flow input.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSettings {
    /// Estimator name (one of [`ESTIMATOR_NAMES`]).
    pub estimator: String,
    /// TV-L1 parameters other than the defaults (only with `estimator = "tvl1"`).
    pub tvl1: Option<TvL1Params>,
    /// How each field is encoded for the model.
    pub encoding: FlowEncoding,
}

impl FlowSettings {
    /// Builds the estimator: [`estimator`] by name, or TV-L1 with the given parameters.
    ///
    /// # Errors
    /// As [`estimator`] or [`TvL1Flow::new`].
    pub fn build(&self) -> crate::Result<Box<dyn FlowEstimator>> {
        match (&self.tvl1, self.estimator.as_str()) {
            (None, name) => estimator(name),
            (Some(params), "tvl1") => Ok(Box::new(TvL1Flow::new(*params)?)),
            (Some(_), other) => Err(crate::err!(
                Config,
                "TV-L1 parameters were given for flow estimator {other:?}; they apply only to \"tvl1\""
            )),
        }
    }
}

/// Writes the field as planar `f32` displacements in pixels: plane 0 is u, plane 1 is v
/// (`out_chw` should hold `2 * width * height` values). If `out_chw` or `flow.uv` is
/// shorter than the field's size says, each plane gets only the pixels that exist in both.
pub fn write_planar_uv(flow: &FlowField, out_chw: &mut [f32]) {
    let plane = flow.width * flow.height;
    let (u_plane, rest) = out_chw.split_at_mut(plane.min(out_chw.len()));
    let v_len = plane.min(rest.len());
    let v_plane = &mut rest[..v_len];
    for (uv, u) in flow.uv.chunks_exact(2).zip(u_plane.iter_mut()) {
        *u = uv[0];
    }
    for (uv, v) in flow.uv.chunks_exact(2).zip(v_plane.iter_mut()) {
        *v = uv[1];
    }
}

/// MOV's flow encoding (as in its TV-L1 flow images): clips u and v to `[-bound, bound]`,
/// maps them linearly to `[0, 255]` (`255 * (x + bound) / (2 * bound)`) and rounds half to
/// even like OpenCV's `cvRound`, so zero flow becomes 128. Writes planar CHW `u8`:
/// plane 0 is u, plane 1 is v, plane 2 is all zeros; `out_chw` should hold
/// `3 * width * height` bytes. NaN displacements encode as zero flow. If `out_chw` or
/// `flow.uv` is shorter than the field's size says, each plane gets only the pixels that
/// exist in both; nothing panics.
pub fn mov_encode(flow: &FlowField, bound: f32, out_chw: &mut [u8]) {
    let plane = flow.width * flow.height;
    let bound = if bound.is_finite() && bound > 0.0 {
        bound
    } else {
        MOV_FLOW_BOUND
    };
    let scale = 255.0 / (2.0 * bound);
    let encode = |x: f32| -> u8 {
        let x = if x.is_nan() { 0.0 } else { x };
        let x = x.clamp(-bound, bound);
        // In range 0..=255 by construction; `as` saturates anyway.
        ((x + bound) * scale).round_ties_even() as u8
    };
    let (u_plane, rest) = out_chw.split_at_mut(plane.min(out_chw.len()));
    let (v_plane, zero_plane) = rest.split_at_mut(plane.min(rest.len()));
    for (uv, u_out) in flow.uv.chunks_exact(2).zip(u_plane.iter_mut()) {
        *u_out = encode(uv[0]);
    }
    for (uv, v_out) in flow.uv.chunks_exact(2).zip(v_plane.iter_mut()) {
        *v_out = encode(uv[1]);
    }
    let zero_len = plane.min(zero_plane.len());
    zero_plane[..zero_len].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimator_names_build_and_unknown_lists_valid_names() {
        for name in ESTIMATOR_NAMES {
            let est = estimator(name).map_err(|e| e.to_string());
            assert_eq!(est.map(|e| e.name()), Ok(name));
        }
        let err = estimator("farneback").err().map(|e| e.to_string());
        let msg = err.unwrap_or_default();
        assert!(
            msg.contains("dis-ultrafast") && msg.contains("dis-medium"),
            "{msg}"
        );
    }

    #[test]
    fn rgb_to_gray_uses_bt601_weights() {
        let rgb = [255u8, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30];
        let mut gray = [0.0f32; 4];
        rgb_to_gray(&rgb, &mut gray);
        let want = [
            76.245,
            149.685,
            29.07,
            0.299 * 10.0 + 0.587 * 20.0 + 0.114 * 30.0,
        ];
        for (g, w) in gray.iter().zip(want) {
            assert!((g - w).abs() < 1e-3, "{g} vs {w}");
        }
    }

    #[test]
    fn planar_uv_splits_the_interleaved_field() {
        let mut flow = FlowField::new(2, 1);
        flow.uv.copy_from_slice(&[1.0, -2.0, 3.5, 0.25]);
        let mut out = [0.0f32; 4];
        write_planar_uv(&flow, &mut out);
        assert_eq!(out, [1.0, 3.5, -2.0, 0.25]);
        let mut short = [9.0f32; 3];
        write_planar_uv(&flow, &mut short);
        assert_eq!(short, [1.0, 3.5, -2.0]);
    }

    #[test]
    fn mov_encode_tolerates_short_buffers() {
        let flow = FlowField::new(4, 4);
        let mut out = vec![7u8; 10];
        mov_encode(&flow, 20.0, &mut out);
        assert!(out.iter().all(|&b| b == 128));
    }
}
