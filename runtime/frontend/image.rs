//! Model-input image preprocessing: [`ImageNormalize`] turns packed RGB bytes already at
//! the model size into normalised planar CHW floats, `(px / 255 - mean) / std` per channel;
//! [`Preprocess`] takes a frame of any size through resize, crop and normalisation in one
//! fused pass (torchvision `Resize(antialias=True)` + `CenterCrop` + `Normalize`, or OpenCV
//! `INTER_AREA`), the Python reference being
//! `models/train/avaction_train/preprocess.py`.

use wide::{f32x4, i16x8, i32x8, u8x16};

/// Per-channel normalisation in [0, 1] units, as torchvision's `ToTensor` + `Normalize`:
/// `out = (px / 255 - mean) / std`, channels in R, G, B order.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageNormalize {
    /// Mean of each channel (R, G, B) in [0, 1] units.
    pub mean: [f32; 3],
    /// Standard deviation of each channel (R, G, B) in [0, 1] units; must be > 0.
    pub std: [f32; 3],
}

impl ImageNormalize {
    /// ImageNet statistics, the usual choice of torchvision backbones.
    pub const IMAGENET: ImageNormalize = ImageNormalize {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    /// Checks that every mean is finite and every std finite and > 0.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for a non-finite mean or a std that is not
    /// finite and positive.
    pub fn validate(&self) -> crate::Result<()> {
        for (channel, (&mean, &std)) in self.mean.iter().zip(&self.std).enumerate() {
            if !mean.is_finite() {
                return Err(crate::err!(
                    Config,
                    "image normalisation: `mean[{channel}]` = {mean} must be finite"
                ));
            }
            if !(std.is_finite() && std > 0.0) {
                return Err(crate::err!(
                    Config,
                    "image normalisation: `std[{channel}]` = {std} must be finite and > 0"
                ));
            }
        }
        Ok(())
    }

    /// Converts packed RGB bytes (`height` rows of `width * 3` bytes, no padding) into
    /// planar CHW floats in `out` (`3 * height * width`: all R, then all G, then all B).
    /// One pass over the pixels through a 3 x 256 lookup table built on the stack, whose
    /// entries are computed exactly as `(px as f32 / 255.0 - mean) / std`; no allocation.
    ///
    /// # Errors
    /// [`Video`](crate::ErrorKind::Video) when `rgb` or `out` does not have the size
    /// `width` and `height` give.
    pub fn rgb_to_chw(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
        out: &mut [f32],
    ) -> crate::Result<()> {
        self.validate()?;
        let pixels = width
            .checked_mul(height)
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                crate::err!(
                    Config,
                    "image normalisation: image size {width} x {height} is empty or too large"
                )
            })?;
        let bytes = pixels.checked_mul(3).ok_or_else(|| {
            crate::err!(
                Config,
                "image normalisation: image size {width} x {height} is too large"
            )
        })?;
        if rgb.len() != bytes {
            return Err(crate::err!(
                Video,
                "image normalisation: RGB frame has {} bytes, expected {width} x {height} x 3 = {bytes}",
                rgb.len()
            ));
        }
        if out.len() != bytes {
            return Err(crate::err!(
                Config,
                "image normalisation: output buffer has {} floats, expected 3 x {height} x {width} = {bytes}",
                out.len()
            ));
        }

        let mut table = [[0.0f32; 256]; 3];
        for (channel, row) in table.iter_mut().enumerate() {
            let (mean, std) = (self.mean[channel], self.std[channel]);
            for (value, entry) in row.iter_mut().enumerate() {
                *entry = (value as f32 / 255.0 - mean) / std;
            }
        }
        let [red_table, green_table, blue_table] = &table;
        let (red, rest) = out.split_at_mut(pixels);
        let (green, blue) = rest.split_at_mut(pixels);
        // Equal lengths, checked above, let the compiler drop every bounds check.
        let (red, green, blue) = (
            &mut red[..pixels],
            &mut green[..pixels],
            &mut blue[..pixels],
        );
        let rgb = &rgb[..3 * pixels];
        for i in 0..pixels {
            red[i] = red_table[usize::from(rgb[3 * i])];
            green[i] = green_table[usize::from(rgb[3 * i + 1])];
            blue[i] = blue_table[usize::from(rgb[3 * i + 2])];
        }
        Ok(())
    }
}

/// Largest image side [`Preprocess`] accepts (input, resized or output), in pixels.
pub const MAX_SIDE: usize = 16384;

/// How [`Preprocess`] resamples a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeFilter {
    /// Antialiased bilinear, as torch `F.interpolate(mode="bilinear", antialias=True,
    /// align_corners=False)`, torchvision `Resize(antialias=True)` and PIL `BILINEAR`: a
    /// triangle filter centred on `(i + 0.5) * in / out`, whose half-width is one source pixel
    /// when upscaling and `in / out` source pixels when downscaling, with the weights of each
    /// output pixel renormalised to sum to 1 (which also handles the borders).
    #[default]
    Bilinear,
    /// OpenCV `cv2.resize(interpolation=cv2.INTER_AREA)`: when no side grows, each output
    /// pixel averages the source area it covers, source pixels cut by the cell border counting
    /// by the fraction inside (OpenCV's `computeResizeAreaTab`, fractions below 1e-3 dropped);
    /// when a side grows, OpenCV's INTER_AREA upscaling rule on both axes (a 2-tap filter that
    /// repeats the nearest source pixel and blends only across source pixel borders).
    Area,
}

/// Size of the resized frame, before the crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum ResizeTo {
    /// The shorter side becomes this many pixels and the longer side keeps the aspect ratio,
    /// rounded down, as torchvision `Resize(size: int)`.
    ShortSide(u32),
    /// Exactly `[width, height]` (torchvision's `Resize((height, width))`).
    Exact([u32; 2]),
}

/// Which part of the resized frame becomes the model input (torchvision `CenterCrop`, and
/// the corner crops of `FiveCrop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Crop {
    /// Centred: offsets `round((resized - output) / 2)`, rounding halves to even as Python's
    /// `round` in torchvision's `CenterCrop` does.
    #[default]
    Center,
    /// The top-left corner.
    TopLeft,
    /// The top-right corner.
    TopRight,
    /// The bottom-left corner.
    BottomLeft,
    /// The bottom-right corner.
    BottomRight,
    /// No crop: the resized frame must already be the output size.
    None,
}

/// Resize and crop settings of [`Preprocess`] (normalisation comes from [`ImageNormalize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    /// The resampling filter (default `bilinear`).
    #[serde(default)]
    pub resize: ResizeFilter,
    /// Size of the resized frame; `None` (the default): exactly the output size.
    #[serde(default)]
    pub resize_to: Option<ResizeTo>,
    /// Which part of the resized frame is kept (default `center`).
    #[serde(default)]
    pub crop: Crop,
}

/// Where the output comes from for one input size (see [`PreprocessConfig::geometry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Input frame `(width, height)`.
    pub input: (usize, usize),
    /// Resized frame `(width, height)`, before the crop.
    pub resized: (usize, usize),
    /// Top-left corner `(x, y)` of the crop in the resized frame.
    pub offset: (usize, usize),
    /// Output `(width, height)`.
    pub output: (usize, usize),
}

fn check_size(what: &str, (width, height): (usize, usize)) -> crate::Result<()> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(crate::err!(
            Config,
            "image preprocessing: {what} size {width} x {height} is invalid (1..={MAX_SIDE} each)"
        ));
    }
    Ok(())
}

/// `round(d / 2)` with Python's round-half-to-even, as torchvision's `CenterCrop`.
fn centre_offset(d: usize) -> usize {
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

impl PreprocessConfig {
    /// Resized size and crop offset for an `input` frame and an `output` size, both
    /// `(width, height)`. Fails when a size is empty or above [`MAX_SIDE`], when the resized
    /// frame is smaller than the output on either side, or when `crop = "none"` and the
    /// resized frame is not the output size.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) in each of those cases, naming the sizes.
    pub fn geometry(
        &self,
        input: (usize, usize),
        output: (usize, usize),
    ) -> crate::Result<Geometry> {
        check_size("input", input)?;
        check_size("output", output)?;
        let ((in_w, in_h), (out_w, out_h)) = (input, output);
        let resized = match self.resize_to {
            None => output,
            Some(ResizeTo::Exact([w, h])) => (w as usize, h as usize),
            Some(ResizeTo::ShortSide(side)) => {
                // Integer division is torchvision's int(side * long / short) for these sizes.
                let side = side as usize;
                let scaled = |long: usize, short: usize| {
                    side.checked_mul(long).map_or(usize::MAX, |p| p / short)
                };
                if in_w <= in_h {
                    (side, scaled(in_h, in_w))
                } else {
                    (scaled(in_w, in_h), side)
                }
            }
        };
        check_size("resized", resized)?;
        let (res_w, res_h) = resized;
        if res_w < out_w || res_h < out_h {
            return Err(crate::err!(
                Config,
                "image preprocessing: a {in_w} x {in_h} frame resized to {res_w} x {res_h} is smaller than the {out_w} x {out_h} output"
            ));
        }
        let (dx, dy) = (res_w - out_w, res_h - out_h);
        let offset = match self.crop {
            Crop::Center => (centre_offset(dx), centre_offset(dy)),
            Crop::TopLeft => (0, 0),
            Crop::TopRight => (dx, 0),
            Crop::BottomLeft => (0, dy),
            Crop::BottomRight => (dx, dy),
            Crop::None if dx == 0 && dy == 0 => (0, 0),
            Crop::None => {
                return Err(crate::err!(
                    Config,
                    "image preprocessing: crop = \"none\" but a {in_w} x {in_h} frame resized to {res_w} x {res_h} is not the {out_w} x {out_h} output"
                ))
            }
        };
        Ok(Geometry {
            input,
            resized,
            offset,
            output,
        })
    }
}

/// Tap counts the horizontal pass has an unrolled kernel for; filters are padded with zero
/// weights up to the next one.
const UNROLLED_TAPS: [usize; 10] = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16];

/// One axis of a separable resampling, for the output indices actually kept: output `i`
/// reads source indices `start[i] .. start[i] + taps` with `weights[i * taps ..][.. taps]`.
#[derive(Debug, Clone, Default)]
struct Axis {
    start: Vec<usize>,
    weights: Vec<f32>,
    taps: usize,
    /// First source index any output reads.
    lo: usize,
    /// One past the last source index any output reads.
    hi: usize,
}

impl Axis {
    /// Packs per-output `(first source index, weights)` filters of a `src`-long axis into
    /// equal-length rows, zero-padded to an unrolled tap count where it fits in the axis;
    /// filters that would run past the end start earlier (zero weights in front).
    fn pack(src: usize, filters: Vec<(usize, Vec<f64>)>) -> Axis {
        let longest = filters
            .iter()
            .map(|(_, w)| w.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let taps = UNROLLED_TAPS
            .iter()
            .copied()
            .find(|&n| n >= longest && n <= src)
            .unwrap_or(longest.min(src));
        let mut axis = Axis {
            start: Vec::with_capacity(filters.len()),
            weights: Vec::with_capacity(filters.len() * taps),
            taps,
            lo: usize::MAX,
            hi: 0,
        };
        for (first, w) in filters {
            let w = &w[..w.len().min(taps)];
            let first = first.min(src - w.len());
            let shift = (first + taps).saturating_sub(src);
            let start = first - shift;
            axis.start.push(start);
            axis.weights.extend(std::iter::repeat_n(0.0, shift));
            axis.weights.extend(w.iter().map(|&v| v as f32));
            axis.weights
                .extend(std::iter::repeat_n(0.0, taps - shift - w.len()));
            axis.lo = axis.lo.min(start);
            axis.hi = axis.hi.max(start + taps);
        }
        axis
    }

    /// torch's antialiased bilinear weights (`_compute_indices_min_size_weights_aa` with the
    /// triangle filter) for outputs `first .. first + count` of a `src` -> `dst` resize.
    fn bilinear(src: usize, dst: usize, first: usize, count: usize) -> Axis {
        let scale = src as f64 / dst as f64;
        let (support, invscale) = if scale >= 1.0 {
            (scale, 1.0 / scale)
        } else {
            (1.0, 1.0)
        };
        let filters = (first..first + count)
            .map(|i| {
                let center = scale * (i as f64 + 0.5);
                // `as` truncates toward zero, as the C++ int64 casts do.
                let xmin = ((center - support + 0.5) as i64).clamp(0, src as i64 - 1);
                let xmax = ((center + support + 0.5) as i64)
                    .min(src as i64)
                    .max(xmin + 1);
                let xmin = xmin as usize;
                let mut w: Vec<f64> = (xmin..xmax as usize)
                    .map(|x| (1.0 - ((x as f64 - center + 0.5) * invscale).abs()).max(0.0))
                    .collect();
                let total: f64 = w.iter().sum();
                if total != 0.0 {
                    w.iter_mut().for_each(|v| *v /= total);
                }
                (xmin, w)
            })
            .collect();
        Axis::pack(src, filters)
    }

    /// OpenCV's INTER_AREA weights for outputs `first .. first + count` of a `src` -> `dst`
    /// resize; `shrink` when neither axis of the image grows (true area averaging),
    /// otherwise OpenCV's INTER_AREA upscaling rule.
    fn area(src: usize, dst: usize, first: usize, count: usize, shrink: bool) -> Axis {
        // OpenCV works with inv_scale = dst / src and scale = 1 / inv_scale, in double.
        let inv = dst as f64 / src as f64;
        let scale = 1.0 / inv;
        let last = src as i64 - 1;
        let filters = (first..first + count)
            .map(|dx| {
                if !shrink {
                    let sx = (dx as f64 * scale).floor() as i64;
                    let fx = ((dx + 1) as f64 - (sx + 1) as f64 * inv) as f32;
                    let fx = if fx <= 0.0 { 0.0 } else { fx - fx.floor() };
                    return if sx >= last {
                        (last as usize, vec![1.0])
                    } else {
                        (sx as usize, vec![f64::from(1.0 - fx), f64::from(fx)])
                    };
                }
                let fsx1 = dx as f64 * scale;
                let fsx2 = fsx1 + scale;
                let cell = scale.min(src as f64 - fsx1);
                let sx2 = (fsx2.floor() as i64).min(last);
                let sx1 = (fsx1.ceil() as i64).min(sx2);
                let mut first_tap = sx1;
                let mut w = Vec::with_capacity(scale.ceil() as usize + 2);
                if sx1 as f64 - fsx1 > 1e-3 {
                    first_tap = sx1 - 1;
                    w.push((sx1 as f64 - fsx1) / cell);
                }
                w.extend((sx1..sx2).map(|_| 1.0 / cell));
                if fsx2 - sx2 as f64 > 1e-3 {
                    w.push((fsx2 - sx2 as f64).min(1.0).min(cell) / cell);
                }
                if w.is_empty() {
                    w.push(1.0);
                }
                // OpenCV stores the weights as float.
                let w = w.into_iter().map(|v| f64::from(v as f32)).collect();
                (first_tap.clamp(0, last) as usize, w)
            })
            .collect();
        Axis::pack(src, filters)
    }
}

/// Filter tables of one input size.
#[derive(Debug, Clone)]
struct Plan {
    geometry: Geometry,
    horizontal: Axis,
    vertical: Axis,
    /// Per output column: offset of its first tap in the vertical result row, in floats.
    row_offsets: Vec<usize>,
    /// The horizontal weights of output pixels `2k` and `2k + 1` for tap `j` at
    /// `k * taps + j`, each broadcast to 4 lanes: `[w0, w0, w0, w0, w1, w1, w1, w1]`.
    pair_weights: Vec<[f32; 8]>,
}

impl Plan {
    /// Floats per vertical result row: the interleaved RGB of the columns the crop reads.
    fn row_len(&self) -> usize {
        3 * (self.horizontal.hi - self.horizontal.lo)
    }

    fn new(config: &PreprocessConfig, geometry: Geometry) -> Plan {
        let Geometry {
            input: (in_w, in_h),
            resized: (res_w, res_h),
            offset: (x0, y0),
            output: (out_w, out_h),
        } = geometry;
        let (horizontal, vertical) = match config.resize {
            ResizeFilter::Bilinear => (
                Axis::bilinear(in_w, res_w, x0, out_w),
                Axis::bilinear(in_h, res_h, y0, out_h),
            ),
            ResizeFilter::Area => {
                // OpenCV decides per image: true area only when neither side grows.
                let shrink = res_w <= in_w && res_h <= in_h;
                (
                    Axis::area(in_w, res_w, x0, out_w, shrink),
                    Axis::area(in_h, res_h, y0, out_h, shrink),
                )
            }
        };
        Plan {
            geometry,
            row_offsets: horizontal
                .start
                .iter()
                .map(|&s| 3 * (s - horizontal.lo))
                .collect(),
            pair_weights: horizontal
                .weights
                .chunks_exact(2 * horizontal.taps)
                .flat_map(|pair| {
                    let (a, b) = pair.split_at(horizontal.taps);
                    a.iter().zip(b).map(|(&a, &b)| [a, a, a, a, b, b, b, b])
                })
                .collect(),
            horizontal,
            vertical,
        }
    }
}

/// Turns packed RGB frames of any size into a model's input: resize (antialiased bilinear
/// or area, see [`ResizeFilter`]), crop, then either normalise into planar CHW floats
/// ([`to_chw`](Preprocess::to_chw)) or round back to packed RGB bytes
/// ([`to_rgb`](Preprocess::to_rgb)).
///
/// One fused pass per output row, computing only the cropped pixels, all in f32 (no
/// rounding between the steps, so [`to_chw`](Preprocess::to_chw) matches the float reference
/// to ~1e-5): a vertical pass blends the source rows of that output row (bytes converted on
/// the fly, only the source columns the crop needs) into a reused float row, a horizontal
/// pass filters it into one RGB vector per output pixel (two pixels per 8-lane
/// multiply-add, weights pre-broadcast), and the output stage transposes four pixels at a
/// time into the three planes with `px * (1 / (255 * std)) - mean / std`, or packs them
/// into bytes. Filter weights are computed once per input size; after the first frame of a
/// size nothing is allocated. The loops are written for the compiler's vectoriser: the
/// portable build uses 4-lane SSE2 / NEON; on x86-64 CPUs with AVX2 and FMA (detected at
/// run time) the same code compiled for them runs instead, about 1.8x faster.
#[derive(Debug, Clone)]
pub struct Preprocess {
    config: PreprocessConfig,
    output: (usize, usize),
    scale: [f32; 3],
    bias: [f32; 3],
    plan: Option<Plan>,
    scratch: Scratch,
}

/// Buffers reused from frame to frame (sized when the plan is built).
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// Vertical result of one output row (interleaved RGB floats of the needed columns),
    /// plus one float read (and ignored) by the last pixel's 4-lane load.
    row: Vec<f32>,
    /// Horizontal result of one output row: one RGB vector per pixel, lane 3 unused.
    pixels: Vec<f32x4>,
}

impl Preprocess {
    /// A preprocessor producing `output` = `(width, height)` images with `config`'s resize
    /// and crop and `normalize`'s statistics (used by [`to_chw`](Preprocess::to_chw)).
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for an invalid `normalize` or an output size
    /// that is empty or too large.
    pub fn new(
        config: &PreprocessConfig,
        normalize: &ImageNormalize,
        output: (usize, usize),
    ) -> crate::Result<Preprocess> {
        normalize.validate()?;
        check_size("output", output)?;
        if let Some(ResizeTo::ShortSide(0) | ResizeTo::Exact([0, _] | [_, 0])) = config.resize_to {
            return Err(crate::err!(
                Config,
                "image preprocessing: `resize_to` must be > 0"
            ));
        }
        let scale = [0, 1, 2].map(|c| 1.0 / (255.0 * normalize.std[c]));
        let bias = [0, 1, 2].map(|c| -normalize.mean[c] / normalize.std[c]);
        Ok(Preprocess {
            config: *config,
            output,
            scale,
            bias,
            plan: None,
            scratch: Scratch::default(),
        })
    }

    /// Output `(width, height)`.
    pub fn output_size(&self) -> (usize, usize) {
        self.output
    }

    /// The geometry of the last frame processed, if any.
    pub fn geometry(&self) -> Option<Geometry> {
        self.plan.as_ref().map(|p| p.geometry)
    }

    /// Resizes, crops and normalises a packed RGB frame (`height` rows of `width * 3`
    /// bytes) into planar CHW floats `out` (`3 * out_h * out_w`).
    ///
    /// # Errors
    /// [`Video`](crate::ErrorKind::Video) when the frame or `out` has the wrong size, or as
    /// [`Geometry`] computation for a frame size that cannot give the output.
    pub fn to_chw(
        &mut self,
        rgb: &[u8],
        width: usize,
        height: usize,
        out: &mut [f32],
    ) -> crate::Result<()> {
        let (out_w, out_h) = self.output;
        let plane = out_w * out_h;
        if out.len() != 3 * plane {
            return Err(crate::err!(
                Config,
                "image preprocessing: output buffer has {} floats, expected 3 x {out_h} x {out_w} = {}",
                out.len(),
                3 * plane
            ));
        }
        let (scale, bias) = (self.scale.map(f32x4::splat), self.bias.map(f32x4::splat));
        let [sr, sg, sb] = self.scale;
        let [br, bg, bb] = self.bias;
        let (scale_rgb, bias_rgb) = (f32x4::new([sr, sg, sb, 0.0]), f32x4::new([br, bg, bb, 0.0]));
        let (red, rest) = out.split_at_mut(plane);
        let (green, blue) = rest.split_at_mut(plane);
        self.rows(rgb, width, height, |y, pixels| {
            let range = y * out_w..(y + 1) * out_w;
            let (r, g, b) = (
                &mut red[range.clone()],
                &mut green[range.clone()],
                &mut blue[range],
            );
            let mut quads = pixels.chunks_exact(4);
            let mut r4 = r.chunks_exact_mut(4);
            let mut g4 = g.chunks_exact_mut(4);
            let mut b4 = b.chunks_exact_mut(4);
            for (((quad, r), g), b) in (&mut quads).zip(&mut r4).zip(&mut g4).zip(&mut b4) {
                let [pr, pg, pb, _] = f32x4::transpose([quad[0], quad[1], quad[2], quad[3]]);
                r.copy_from_slice(pr.mul_add(scale[0], bias[0]).as_array());
                g.copy_from_slice(pg.mul_add(scale[1], bias[1]).as_array());
                b.copy_from_slice(pb.mul_add(scale[2], bias[2]).as_array());
            }
            let tail = quads.remainder();
            let (r, g, b) = (
                r4.into_remainder(),
                g4.into_remainder(),
                b4.into_remainder(),
            );
            for (((px, r), g), b) in tail.iter().zip(r).zip(g).zip(b) {
                let [pr, pg, pb, _] = px.mul_add(scale_rgb, bias_rgb).to_array();
                (*r, *g, *b) = (pr, pg, pb);
            }
        })
    }

    /// Resizes and crops a packed RGB frame into packed RGB bytes `out` (`out_h * out_w * 3`),
    /// each value rounded to the nearest byte (what PIL and torchvision's uint8 path give).
    ///
    /// # Errors
    /// As [`Preprocess::to_chw`].
    pub fn to_rgb(
        &mut self,
        rgb: &[u8],
        width: usize,
        height: usize,
        out: &mut [u8],
    ) -> crate::Result<()> {
        let (out_w, out_h) = self.output;
        if out.len() != 3 * out_w * out_h {
            return Err(crate::err!(
                Config,
                "image preprocessing: output buffer has {} bytes, expected {out_w} x {out_h} x 3 = {}",
                out.len(),
                3 * out_w * out_h
            ));
        }
        // Pixels written as 4 bytes (RGB + a byte the next pixel overwrites): all but the last.
        let quads = (out_w - 1) / 4;
        self.rows(rgb, width, height, |y, pixels| {
            let row = &mut out[y * out_w * 3..(y + 1) * out_w * 3];
            for (q, quad) in pixels[..4 * quads].chunks_exact(4).enumerate() {
                let bytes = round_to_bytes([quad[0], quad[1], quad[2], quad[3]]);
                for (k, rgbx) in bytes.chunks_exact(4).enumerate() {
                    let i = 3 * (4 * q + k);
                    row[i..i + 4].copy_from_slice(rgbx);
                }
            }
            for (i, &px) in pixels.iter().enumerate().skip(4 * quads) {
                let bytes = round_to_bytes([px; 4]);
                row[3 * i..3 * i + 3].copy_from_slice(&bytes[..3]);
            }
        })
    }

    /// Checks the frame, (re)builds the plan for its size, then hands every output row
    /// (one RGB vector per pixel, lane 3 unused) to `emit`.
    fn rows(
        &mut self,
        rgb: &[u8],
        width: usize,
        height: usize,
        emit: impl FnMut(usize, &[f32x4]),
    ) -> crate::Result<()> {
        check_size("input", (width, height))?;
        if rgb.len() != width * height * 3 {
            return Err(crate::err!(
                Video,
                "image preprocessing: RGB frame has {} bytes, expected {width} x {height} x 3 = {}",
                rgb.len(),
                width * height * 3
            ));
        }
        if self.plan.as_ref().map(|p| p.geometry.input) != Some((width, height)) {
            let geometry = self.config.geometry((width, height), self.output)?;
            let plan = Plan::new(&self.config, geometry);
            let len = plan.row_len();
            let scratch = &mut self.scratch;
            scratch.row.clear();
            scratch.row.resize(len + 1, 0.0);
            scratch.pixels.clear();
            scratch.pixels.resize(self.output.0, f32x4::splat(0.0));
            self.plan = Some(plan);
        }
        let Preprocess {
            plan: Some(plan),
            scratch,
            ..
        } = self
        else {
            return Ok(());
        };
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            unsafe { rows_avx2_fma(plan, rgb, scratch, emit) };
            return Ok(());
        }
        rows_with::<false>(plan, rgb, scratch, emit);
        Ok(())
    }
}

/// [`rows_with`] compiled for AVX2 + FMA (8-lane passes, fused multiply-adds).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rows_avx2_fma(
    plan: &Plan,
    rgb: &[u8],
    scratch: &mut Scratch,
    emit: impl FnMut(usize, &[f32x4]),
) {
    rows_with::<true>(plan, rgb, scratch, emit);
}

/// The per-row loop of [`Preprocess`]: blends the source rows of each output row
/// vertically into `scratch.row`, filters that horizontally into `scratch.pixels`, then
/// calls `emit(y, pixels)`. `FMA`: use fused multiply-adds (only where the CPU has them;
/// otherwise `f32::mul_add` is a slow library call).
#[inline(always)]
fn rows_with<const FMA: bool>(
    plan: &Plan,
    rgb: &[u8],
    scratch: &mut Scratch,
    mut emit: impl FnMut(usize, &[f32x4]),
) {
    let (h, v) = (&plan.horizontal, &plan.vertical);
    let (stride, col_lo, len) = (3 * plan.geometry.input.0, 3 * h.lo, plan.row_len());
    let Scratch { row, pixels } = scratch;
    for (y, (&first, weights)) in v
        .start
        .iter()
        .zip(v.weights.chunks_exact(v.taps))
        .enumerate()
    {
        let source = &rgb[first * stride + col_lo..(first + v.taps - 1) * stride + col_lo + len];
        if FMA {
            // 64 floats: 8 AVX registers of accumulators.
            vertical::<FMA, 64>(source, stride, weights, &mut row[..len]);
        } else {
            // 32 floats: 8 of the 16 SSE / NEON registers.
            vertical::<FMA, 32>(source, stride, weights, &mut row[..len]);
        }
        horizontal::<FMA>(row, plan, pixels);
        emit(y, pixels);
    }
}

/// Four RGB vectors (lane 3 ignored) rounded half up and clamped to bytes: `[r, g, b, x]` x 4.
#[inline(always)]
fn round_to_bytes(px: [f32x4; 4]) -> [u8; 16] {
    let half = f32x4::splat(0.5);
    // Truncation toward zero after adding a half rounds half up for values >= -0.5; the
    // saturating packs clamp to 0..=255.
    let [a, b, c, d] = px.map(|p| (p + half).fast_trunc_int().to_array());
    let pack = |x: [i32; 4], y: [i32; 4]| {
        i16x8::from_i32x8_saturate(i32x8::new([x[0], x[1], x[2], x[3], y[0], y[1], y[2], y[3]]))
    };
    u8x16::narrow_i16x8(pack(a, b), pack(c, d)).to_array()
}

/// `a * b + c`, fused when `FMA`.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `out[i] = sum_k weights[k] * rows[k * stride + i]` over the `weights.len()` source rows
/// in `rows` (bytes, converted on the fly); zero weights are skipped. Blocks of `BLOCK`
/// outputs accumulate over every tap in registers before they are stored. (Converting each
/// source row to floats once instead was measured slower: it reads four times the bytes.)
#[inline(always)]
fn vertical<const FMA: bool, const BLOCK: usize>(
    rows: &[u8],
    stride: usize,
    weights: &[f32],
    out: &mut [f32],
) {
    let len = out.len();
    let taps = || {
        weights
            .iter()
            .enumerate()
            .filter(|(_, &w)| w != 0.0)
            .map(|(k, &w)| (&rows[k * stride..k * stride + len], w))
    };
    let mut blocks = out.chunks_exact_mut(BLOCK);
    for (b, block) in (&mut blocks).enumerate() {
        let mut acc = [0.0f32; BLOCK];
        for (source, w) in taps() {
            let source = &source[b * BLOCK..(b + 1) * BLOCK];
            for (a, &px) in acc.iter_mut().zip(source) {
                *a = madd::<FMA>(w, f32::from(px), *a);
            }
        }
        block.copy_from_slice(&acc);
    }
    let tail = blocks.into_remainder();
    let done = len - tail.len();
    tail.fill(0.0);
    for (source, w) in taps() {
        for (a, &px) in tail.iter_mut().zip(&source[done..]) {
            *a = madd::<FMA>(w, f32::from(px), *a);
        }
    }
}

/// Filters the vertical result `row` (interleaved RGB floats from source column
/// `plan.horizontal.lo`) along the row: one RGB vector per output pixel into `out`.
#[inline(always)]
fn horizontal<const FMA: bool>(row: &[f32], plan: &Plan, out: &mut [f32x4]) {
    match plan.horizontal.taps {
        1 => horizontal_n::<1, FMA>(row, plan, out),
        2 => horizontal_n::<2, FMA>(row, plan, out),
        3 => horizontal_n::<3, FMA>(row, plan, out),
        4 => horizontal_n::<4, FMA>(row, plan, out),
        5 => horizontal_n::<5, FMA>(row, plan, out),
        6 => horizontal_n::<6, FMA>(row, plan, out),
        8 => horizontal_n::<8, FMA>(row, plan, out),
        10 => horizontal_n::<10, FMA>(row, plan, out),
        12 => horizontal_n::<12, FMA>(row, plan, out),
        16 => horizontal_n::<16, FMA>(row, plan, out),
        taps => {
            for ((px, &offset), w) in out
                .iter_mut()
                .zip(&plan.row_offsets)
                .zip(plan.horizontal.weights.chunks_exact(taps))
            {
                let p = &row[offset..];
                *px = w
                    .iter()
                    .enumerate()
                    .fold(f32x4::splat(0.0), |acc, (j, &w)| {
                        acc + w * load4(&p[3 * j..])
                    });
            }
        }
    }
}

/// [`horizontal`] with `N` taps known at compile time, two output pixels at a time: each
/// tap is one 8-lane multiply-add (weights pre-broadcast in `plan.pair_weights`), which
/// the compiler turns into one AVX instruction or two 4-lane ones.
#[inline(always)]
fn horizontal_n<const N: usize, const FMA: bool>(row: &[f32], plan: &Plan, out: &mut [f32x4]) {
    let done = out.len() / 2 * 2;
    let (paired, rest) = out.split_at_mut(done);
    for ((pair, offsets), w) in paired
        .chunks_exact_mut(2)
        .zip(plan.row_offsets.chunks_exact(2))
        .zip(plan.pair_weights.chunks_exact(N))
    {
        let (a, b) = (offsets[0], offsets[1]);
        let (pa, pb) = (&row[a..a + 3 * N + 1], &row[b..b + 3 * N + 1]);
        let mut acc = [0.0f32; 8];
        for j in 0..N {
            let (wj, sa, sb) = (&w[j], &pa[3 * j..3 * j + 4], &pb[3 * j..3 * j + 4]);
            for l in 0..4 {
                acc[l] = madd::<FMA>(wj[l], sa[l], acc[l]);
                acc[4 + l] = madd::<FMA>(wj[4 + l], sb[l], acc[4 + l]);
            }
        }
        pair[0] = f32x4::new([acc[0], acc[1], acc[2], acc[3]]);
        pair[1] = f32x4::new([acc[4], acc[5], acc[6], acc[7]]);
    }
    for ((px, &offset), w) in rest
        .iter_mut()
        .zip(&plan.row_offsets[done..])
        .zip(plan.horizontal.weights[done * N..].chunks_exact(N))
    {
        let p = &row[offset..offset + 3 * N + 1];
        let mut acc = f32x4::splat(0.0);
        for j in 0..N {
            acc += f32x4::splat(w[j]) * load4(&p[3 * j..3 * j + 4]);
        }
        *px = acc;
    }
}

/// The first four floats of `p` as a vector.
#[inline(always)]
fn load4(p: &[f32]) -> f32x4 {
    f32x4::new([p[0], p[1], p[2], p[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook computation, pixel by pixel, channel by channel.
    fn reference(norm: &ImageNormalize, rgb: &[u8], width: usize, height: usize) -> Vec<f32> {
        let mut out = vec![0.0; 3 * width * height];
        for y in 0..height {
            for x in 0..width {
                for c in 0..3 {
                    let px = rgb[(y * width + x) * 3 + c] as f32;
                    out[c * width * height + y * width + x] =
                        (px / 255.0 - norm.mean[c]) / norm.std[c];
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_reference_on_every_byte_value() {
        let (width, height) = (19, 7);
        let rgb: Vec<u8> = (0..width * height * 3)
            .map(|i| ((i * 151 + 7) % 256) as u8)
            .collect();
        assert!((0..=255u8).all(|v| rgb.contains(&v)));
        for norm in [
            ImageNormalize::IMAGENET,
            ImageNormalize {
                mean: [0.5, 0.5, 0.5],
                std: [0.5, 0.5, 0.5],
            },
            ImageNormalize {
                mean: [0.0, -0.25, 1.0],
                std: [1.0, 0.1, 3.0],
            },
        ] {
            let mut out = vec![f32::NAN; rgb.len()];
            norm.rgb_to_chw(&rgb, width, height, &mut out)
                .expect("valid");
            assert_eq!(out, reference(&norm, &rgb, width, height), "{norm:?}");
        }
    }

    #[test]
    fn puts_channels_in_planes() {
        // One red, one green, one blue, one white pixel; mean 0, std 1 gives px / 255.
        let rgb = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
        let norm = ImageNormalize {
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let mut out = [0.0; 12];
        norm.rgb_to_chw(&rgb, 2, 2, &mut out).expect("valid");
        let expected = [
            1.0, 0.0, 0.0, 1.0, // R plane
            0.0, 1.0, 0.0, 1.0, // G plane
            0.0, 0.0, 1.0, 1.0, // B plane
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn rejects_bad_sizes_and_statistics() {
        let norm = ImageNormalize::IMAGENET;
        let mut out = [0.0; 12];
        let short = norm
            .rgb_to_chw(&[0; 11], 2, 2, &mut out)
            .expect_err("short frame");
        assert!(short.message().contains("11 bytes"), "{short}");
        let wrong_out = norm
            .rgb_to_chw(&[0; 12], 2, 2, &mut out[..9])
            .expect_err("short output");
        assert!(wrong_out.message().contains("output buffer"), "{wrong_out}");
        assert!(norm.rgb_to_chw(&[], 0, 2, &mut []).is_err());
        assert!(norm.rgb_to_chw(&[], usize::MAX, 3, &mut []).is_err());

        for (bad, field) in [
            (
                ImageNormalize {
                    mean: [0.0; 3],
                    std: [1.0, 0.0, 1.0],
                },
                "std[1]",
            ),
            (
                ImageNormalize {
                    mean: [0.0; 3],
                    std: [1.0, 1.0, f32::INFINITY],
                },
                "std[2]",
            ),
            (
                ImageNormalize {
                    mean: [f32::NAN, 0.0, 0.0],
                    std: [1.0; 3],
                },
                "mean[0]",
            ),
        ] {
            let error = bad.validate().expect_err(field);
            assert!(error.message().contains(field), "{error}");
            assert!(bad.rgb_to_chw(&[0; 12], 2, 2, &mut out).is_err());
        }
    }

    fn rows_of(pre: &mut Preprocess, rgb: &[u8], w: usize, h: usize) -> Vec<[f32; 4]> {
        let mut rows = Vec::new();
        pre.rows(rgb, w, h, |_, px| {
            rows.extend(px.iter().map(|p| p.to_array()))
        })
        .expect("valid");
        rows
    }

    #[test]
    fn portable_kernels_match_the_dispatched_ones() {
        // On a machine with AVX2 the dispatched path is the AVX2 + FMA one; this keeps the
        // SSE / NEON path (what ARM boards run) tested here too.
        for (resize, resize_to, (w, h), out) in [
            (
                ResizeFilter::Bilinear,
                ResizeTo::ShortSide(40),
                (97, 61),
                (37, 33),
            ),
            (
                ResizeFilter::Area,
                ResizeTo::ShortSide(40),
                (97, 61),
                (37, 33),
            ),
            (
                ResizeFilter::Bilinear,
                ResizeTo::Exact([90, 70]),
                (31, 23),
                (81, 65),
            ),
            (
                ResizeFilter::Area,
                ResizeTo::Exact([90, 70]),
                (31, 23),
                (81, 65),
            ),
            (
                ResizeFilter::Bilinear,
                ResizeTo::ShortSide(24),
                (640, 480),
                (24, 24),
            ),
        ] {
            let config = PreprocessConfig {
                resize,
                resize_to: Some(resize_to),
                crop: Crop::Center,
            };
            let rgb: Vec<u8> = (0..w * h * 3).map(|i| ((i * 37) % 253) as u8).collect();
            let mut pre = Preprocess::new(&config, &ImageNormalize::IMAGENET, out).expect("valid");
            let dispatched = rows_of(&mut pre, &rgb, w, h);
            let plan = pre.plan.clone().expect("plan");
            let mut portable = Vec::new();
            rows_with::<false>(&plan, &rgb, &mut pre.scratch, |_, px| {
                portable.extend(px.iter().map(|p| p.to_array()))
            });
            assert_eq!(dispatched.len(), out.0 * out.1);
            assert_eq!(portable.len(), dispatched.len());
            let worst = dispatched
                .iter()
                .zip(&portable)
                .flat_map(|(a, b)| (0..3).map(move |c| (a[c] - b[c]).abs()))
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-3, "{resize:?} {w}x{h}: {worst}");
        }
    }

    #[test]
    fn geometry_follows_torchvision() {
        let config = |resize_to, crop| PreprocessConfig {
            resize: ResizeFilter::Bilinear,
            resize_to,
            crop,
        };
        let g = config(Some(ResizeTo::ShortSide(224)), Crop::Center)
            .geometry((640, 480), (224, 224))
            .expect("valid");
        assert_eq!((g.resized, g.offset), ((298, 224), (37, 0)));
        // Portrait frames keep the width as the short side.
        let g = config(Some(ResizeTo::ShortSide(256)), Crop::Center)
            .geometry((480, 640), (224, 224))
            .expect("valid");
        assert_eq!((g.resized, g.offset), ((256, 341), (16, 58)));
        // round((299 - 224) / 2) = round(37.5) = 38 and round(36.5) = 36: halves to even.
        for (resized, offset) in [(299, 38), (297, 36), (224, 0), (225, 0), (227, 2)] {
            let g = config(Some(ResizeTo::Exact([resized, 224])), Crop::Center)
                .geometry((640, 480), (224, 224))
                .expect("valid");
            assert_eq!(g.offset, (offset, 0), "{resized}");
        }
        let corners = [
            (Crop::TopLeft, (0, 0)),
            (Crop::TopRight, (74, 0)),
            (Crop::BottomLeft, (0, 20)),
            (Crop::BottomRight, (74, 20)),
        ];
        for (crop, offset) in corners {
            let g = config(Some(ResizeTo::Exact([298, 244])), crop)
                .geometry((640, 480), (224, 224))
                .expect("valid");
            assert_eq!(g.offset, offset, "{crop:?}");
        }
        let g = config(None, Crop::None)
            .geometry((640, 480), (224, 224))
            .expect("stretch");
        assert_eq!((g.resized, g.offset), ((224, 224), (0, 0)));
    }

    #[test]
    fn filters_are_normalised_and_stay_inside_the_source() {
        for (src, dst) in [(640, 298), (480, 224), (7, 16), (1, 5), (61, 61), (64, 32)] {
            for axis in [
                Axis::bilinear(src, dst, 0, dst),
                Axis::area(src, dst, 0, dst, dst <= src),
                Axis::area(src, dst, 0, dst, false),
            ] {
                assert_eq!(axis.start.len(), dst);
                assert!(axis.taps >= 1 && axis.taps <= src);
                assert!(axis.hi <= src && axis.lo < axis.hi);
                for (start, w) in axis.start.iter().zip(axis.weights.chunks_exact(axis.taps)) {
                    assert!(start + axis.taps <= src);
                    let sum: f32 = w.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5, "{src}->{dst}: {w:?}");
                    assert!(w.iter().all(|&v| v >= 0.0));
                }
            }
        }
        // Integer shrink by 2 in area mode: plain 2-pixel averages.
        let axis = Axis::area(8, 4, 0, 4, true);
        assert_eq!(axis.taps, 2);
        assert_eq!(axis.start, [0, 2, 4, 6]);
        assert!(axis.weights.iter().all(|&w| w == 0.5));
    }

    #[test]
    fn serde_reads_and_rejects() {
        let norm: ImageNormalize =
            toml::from_str("mean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]")
                .expect("valid");
        assert_eq!(norm, ImageNormalize::IMAGENET);
        assert!(toml::from_str::<ImageNormalize>("mean = [0.5, 0.5]\nstd = [1, 1, 1]").is_err());
        assert!(toml::from_str::<ImageNormalize>(
            "mean = [0.5, 0.5, 0.5]\nstd = [1.0, 1.0, 1.0]\nscale = 2"
        )
        .is_err());
    }
}
