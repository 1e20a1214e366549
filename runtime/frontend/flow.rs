//! (temporary, replaced by the flow branch)
#![allow(missing_docs)]
pub struct FlowField {
    pub width: usize,
    pub height: usize,
    pub uv: Vec<f32>,
}
impl FlowField {
    pub fn new(width: usize, height: usize) -> Self {
        FlowField {
            width,
            height,
            uv: vec![0.0; 2 * width * height],
        }
    }
}
pub trait FlowEstimator: Send {
    fn name(&self) -> &'static str;
    fn compute(
        &mut self,
        prev: &[f32],
        next: &[f32],
        width: usize,
        height: usize,
        out: &mut FlowField,
    ) -> crate::Result<()>;
}
struct Zero;
impl FlowEstimator for Zero {
    fn name(&self) -> &'static str {
        "zero"
    }
    fn compute(
        &mut self,
        _: &[f32],
        _: &[f32],
        _: usize,
        _: usize,
        _: &mut FlowField,
    ) -> crate::Result<()> {
        Ok(())
    }
}
pub fn estimator(_name: &str) -> crate::Result<Box<dyn FlowEstimator>> {
    Ok(Box::new(Zero))
}
pub fn rgb_to_gray(rgb: &[u8], out: &mut [f32]) {
    for (o, p) in out.iter_mut().zip(rgb.chunks_exact(3)) {
        *o = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
    }
}
pub fn mov_encode(flow: &FlowField, bound: f32, out_chw: &mut [u8]) {
    let n = flow.width * flow.height;
    for i in 0..n {
        for c in 0..2 {
            let v = flow.uv[2 * i + c].clamp(-bound, bound);
            out_chw[c * n + i] = ((v + bound) / (2.0 * bound) * 255.0).round() as u8;
        }
        out_chw[2 * n + i] = 0;
    }
}
