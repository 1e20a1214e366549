//! Model-input image preprocessing: packed RGB bytes (already scaled to the model size by
//! GStreamer) to normalised planar CHW floats, `(px / 255 - mean) / std` per channel.

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
