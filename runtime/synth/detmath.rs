//! Elementary functions (sin, cos, exp, ln) built only from IEEE-754 basic operations,
//! so scenes are bit-identical on every platform (libm results may differ in the last bit).

/// ln(2) split so that `k * LN2_HI` is exact for the exponents used (fdlibm's bits).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const INV_LN2: f64 = std::f64::consts::LOG2_E;
/// pi/2 split into three parts for Cody-Waite reduction (fdlibm's bits).
const PIO2_1: f64 = f64::from_bits(0x3ff9_21fb_5440_0000);
const PIO2_2: f64 = f64::from_bits(0x3dd0_b461_1a60_0000);
const PIO2_3: f64 = f64::from_bits(0x3ba3_198a_2e00_0000);
const TWO_OVER_PI: f64 = std::f64::consts::FRAC_2_PI;

/// 2^k as an f64, for k in the normal exponent range.
fn pow2(k: i64) -> f64 {
    let k = k.clamp(-1022, 1023);
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// e^x, accurate to about 1 ulp.
pub(crate) fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.7 {
        return f64::INFINITY;
    }
    if x < -745.2 {
        return 0.0;
    }
    let k = (x * INV_LN2).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // |r| <= 0.35: Taylor series to degree 14 (remainder below 1e-18), Horner form.
    let mut sum = 1.0;
    for n in (1..=14).rev() {
        sum = 1.0 + sum * r / f64::from(n);
    }
    let k = k as i64;
    if k > 1023 {
        sum * pow2(1023) * pow2(k - 1023)
    } else if k < -1022 {
        sum * pow2(-1022) * pow2(k + 1022)
    } else {
        sum * pow2(k)
    }
}

/// 2^x.
pub(crate) fn exp2(x: f64) -> f64 {
    exp(x * std::f64::consts::LN_2)
}

/// Natural logarithm; NaN for negative input, -inf for 0.
pub(crate) fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let (mut x, mut exponent) = (x, 0i64);
    if x < f64::MIN_POSITIVE {
        x *= pow2(54);
        exponent -= 54;
    }
    let bits = x.to_bits();
    exponent += ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut mantissa = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if mantissa > std::f64::consts::SQRT_2 {
        mantissa *= 0.5;
        exponent += 1;
    }
    // ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172.
    let s = (mantissa - 1.0) / (mantissa + 1.0);
    let s2 = s * s;
    let mut series = 0.0;
    for n in (0..12).rev() {
        series = 1.0 / f64::from(2 * n + 1) + s2 * series;
    }
    let k = exponent as f64;
    k * LN2_HI + (2.0 * s * series + k * LN2_LO)
}

/// sin(r) and cos(r) for |r| <= pi/4 by Taylor series (remainder below 1e-17).
fn sin_cos_reduced(r: f64) -> (f64, f64) {
    let r2 = r * r;
    let mut sin = 0.0;
    let mut cos = 0.0;
    // sin: sum (-1)^n r^(2n+1)/(2n+1)!, cos: sum (-1)^n r^(2n)/(2n)!, n = 0..=9.
    for n in (0..=9).rev() {
        let n = f64::from(n);
        sin = 1.0 - r2 * sin / ((2.0 * n + 2.0) * (2.0 * n + 3.0));
        cos = 1.0 - r2 * cos / ((2.0 * n + 1.0) * (2.0 * n + 2.0));
    }
    (r * sin, cos)
}

/// Reduces x to r in [-pi/4, pi/4] and the quadrant (x = r + q * pi/2).
fn reduce(x: f64) -> (f64, i64) {
    let q = (x * TWO_OVER_PI).round();
    let r = ((x - q * PIO2_1) - q * PIO2_2) - q * PIO2_3;
    (r, q as i64)
}

/// sin(x); accurate to about 1 ulp for |x| up to about 1e6 (enough for phases here).
pub(crate) fn sin(x: f64) -> f64 {
    if !x.is_finite() {
        return f64::NAN;
    }
    let (r, q) = reduce(x);
    let (s, c) = sin_cos_reduced(r);
    match q.rem_euclid(4) {
        0 => s,
        1 => c,
        2 => -s,
        _ => -c,
    }
}

/// cos(x); see [`sin`].
pub(crate) fn cos(x: f64) -> f64 {
    if !x.is_finite() {
        return f64::NAN;
    }
    let (r, q) = reduce(x);
    let (s, c) = sin_cos_reduced(r);
    match q.rem_euclid(4) {
        0 => c,
        1 => -s,
        2 => -c,
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1e-300) || (a - b).abs() < 1e-300
    }

    #[test]
    fn exp_and_ln_match_std() {
        let mut x = -700.0;
        while x < 700.0 {
            assert!(close(exp(x), x.exp(), 4e-16), "exp({x})");
            x += 0.731;
        }
        for &x in &[
            1e-310,
            1e-20,
            0.003,
            0.5,
            1.0,
            2.0,
            std::f64::consts::E,
            1e10,
            1e300,
        ] {
            assert!(
                (ln(x) - x.ln()).abs() <= 4e-16 * x.ln().abs().max(1.0),
                "ln({x})"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(ln(1.0), 0.0);
        assert!(ln(-1.0).is_nan());
        assert!((exp2(10.0) - 1024.0).abs() < 1e-12);
    }

    #[test]
    fn sin_and_cos_match_std() {
        let mut x = -20_000.0;
        while x < 20_000.0 {
            assert!((sin(x) - x.sin()).abs() < 1e-12, "sin({x})");
            assert!((cos(x) - x.cos()).abs() < 1e-12, "cos({x})");
            x += 0.377;
        }
        assert_eq!(sin(0.0), 0.0);
        assert_eq!(cos(0.0), 1.0);
        assert!(sin(f64::INFINITY).is_nan());
    }
}
