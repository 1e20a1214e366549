//! Checks of the command-line values that clap's types do not make: seconds that are
//! finite and positive, counts of at least one, sentences that say something, label
//! files that are regular files of bounded size. A bad value is refused by clap with
//! the option's name, the value and the rule (exit code 2), never a panic.

use std::path::Path;

/// Longest `--duration`: 10 years (`Duration::from_secs_f64` panics past ~5.8e11 years).
pub const MAX_SECONDS: f64 = 10.0 * 365.25 * 24.0 * 3600.0;
/// Largest label file read by `--label-file`.
pub const MAX_LABEL_FILE_BYTES: u64 = 1 << 20;
/// Most scene seeds `--seeds` may name.
pub const MAX_SEEDS: u64 = 100_000;

/// A number of seconds: finite, above zero, at most [`MAX_SECONDS`].
pub fn seconds(text: &str) -> Result<f64, String> {
    parse_number(text, "seconds", seconds_value)
}

/// A clip's pre-roll or post-roll: seconds from 0 to 120.
pub fn roll(text: &str) -> Result<f64, String> {
    parse_number(text, "seconds", roll_value)
}

/// A number of days: finite, above zero.
pub fn days(text: &str) -> Result<f64, String> {
    parse_number(text, "days", days_value)
}

/// [`days`] for a number already parsed.
pub fn days_value(v: f64) -> Result<f64, String> {
    if !v.is_finite() || v <= 0.0 || v > 36_500.0 {
        return Err(format!(
            "{v}: must be a number of days above 0 (at most 36500)"
        ));
    }
    Ok(v)
}

/// A number of `unit`, checked by `check`; errors quote the text.
fn parse_number(
    text: &str,
    unit: &str,
    check: fn(f64) -> Result<f64, String>,
) -> Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of {unit}"))?;
    check(v).map_err(|why| format!("{text:?}: {why}"))
}

/// [`roll`] for a number already parsed.
pub fn roll_value(v: f64) -> Result<f64, String> {
    if !(0.0..=120.0).contains(&v) {
        return Err(format!("{v}: must be from 0 to 120 seconds"));
    }
    Ok(v)
}

/// [`seconds`] for a number already parsed (e.g. from a config file).
pub fn seconds_value(v: f64) -> Result<f64, String> {
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("{v}: must be a finite number of seconds above 0"));
    }
    if v > MAX_SECONDS {
        return Err(format!("{v}: at most {MAX_SECONDS} seconds (10 years)"));
    }
    Ok(v)
}

/// A count between 1 and `max`.
fn count(text: &str, max: usize) -> Result<usize, String> {
    let v: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if v == 0 || v > max {
        return Err(format!("{text:?}: must be between 1 and {max}"));
    }
    Ok(v)
}

/// Threads per inference: 1 to the runtime's maximum.
pub fn threads(text: &str) -> Result<usize, String> {
    count(text, avaction::api::MAX_THREADS)
}

/// Frames between windows: 1 to the runtime's maximum.
pub fn hop(text: &str) -> Result<usize, String> {
    count(text, avaction::api::MAX_HOP_FRAMES)
}

/// A label sentence: not empty, at most the runtime's maximum length.
pub fn sentence(text: &str) -> Result<String, String> {
    avaction::api::check_sentences(&[text.to_string()])
        .map(|()| text.to_string())
        .map_err(|e| e.message().to_string())
}

/// The sentences of a label file: a regular file (not a FIFO or device, which could
/// block or never end) of at most [`MAX_LABEL_FILE_BYTES`], UTF-8, one sentence per
/// line; blank lines are skipped.
pub fn label_file(path: &Path) -> avaction::Result<Vec<String>> {
    use std::io::Read;
    let io = |e: std::io::Error| {
        avaction::Error::new(
            avaction::ErrorKind::Io,
            format!("--label-file {}", path.display()),
        )
        .caused_by(e)
    };
    let fail = |what: String| {
        avaction::Error::new(
            avaction::ErrorKind::Config,
            format!("--label-file {}: {what}", path.display()),
        )
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > MAX_LABEL_FILE_BYTES {
        return Err(fail(format!(
            "{} bytes, at most {MAX_LABEL_FILE_BYTES}",
            meta.len()
        )));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_LABEL_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_LABEL_FILE_BYTES {
        return Err(fail(format!("more than {MAX_LABEL_FILE_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// `--seeds`: comma-separated numbers or ranges (`1-8,20`), at most [`MAX_SEEDS`] in all.
pub fn seeds(s: &str) -> avaction::Result<Vec<u64>> {
    let fail = |what: String| avaction::Error::new(avaction::ErrorKind::Config, what);
    let mut seeds = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parse = |x: &str| {
            x.trim()
                .parse::<u64>()
                .map_err(|_| fail(format!("--seeds: {x:?} is not a number")))
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let v = parse(part)?;
                (v, v)
            }
        };
        if b < a {
            return Err(fail(format!(
                "--seeds: range {part:?} is empty (ends before it starts)"
            )));
        }
        if (b - a).saturating_add(1).saturating_add(seeds.len() as u64) > MAX_SEEDS {
            return Err(fail(format!("--seeds: more than {MAX_SEEDS} seeds")));
        }
        seeds.extend(a..=b);
    }
    if seeds.is_empty() {
        return Err(fail("--seeds: no seeds given".into()));
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_values_users_tried_are_refused() {
        for bad in ["inf", "-inf", "NaN", "1e300", "0", "-1", "", "abc"] {
            assert!(seconds(bad).is_err(), "--duration {bad}");
        }
        assert_eq!(seconds("2.5"), Ok(2.5));
        for bad in ["0", "-1", "", "1e3", "257", "99999999999999999999999"] {
            assert!(threads(bad).is_err(), "--threads {bad}");
        }
        assert_eq!(threads("2"), Ok(2));
        assert!(hop("0").is_err() && hop("10001").is_err() && hop("4") == Ok(4));
        assert!(sentence("").is_err() && sentence("   ").is_err());
        assert_eq!(sentence("a disc falls").as_deref(), Ok("a disc falls"));
        assert!(seeds("1-18446744073709551615").is_err());
        assert!(seeds("5-1").is_err());
        assert_eq!(seeds("1-3,7").expect("seeds"), vec![1, 2, 3, 7]);
    }

    #[test]
    fn label_files_must_be_small_regular_files() {
        let dir = std::env::temp_dir().join(format!("avaction-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(label_file(Path::new("/dev/zero")).is_err());
        assert!(label_file(&dir).is_err(), "a folder");
        let big = dir.join("big.txt");
        std::fs::write(&big, vec![b'a'; MAX_LABEL_FILE_BYTES as usize + 1]).unwrap();
        assert!(label_file(&big).is_err());
        let ok = dir.join("ok.txt");
        std::fs::write(&ok, "a disc falls\n\n  a square slides left \n").unwrap();
        assert_eq!(
            label_file(&ok).expect("labels"),
            vec![
                "a disc falls".to_string(),
                "a square slides left".to_string()
            ]
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        /// Any text: a value in range or a message, never a panic.
        #[test]
        fn any_text_is_checked_without_panic(text in "\\PC{0,24}") {
            if let Ok(v) = seconds(&text) {
                prop_assert!(v.is_finite() && v > 0.0 && v <= MAX_SECONDS);
                let _ = std::time::Duration::from_secs_f64(v);
            }
            if let Ok(v) = threads(&text) {
                prop_assert!((1..=avaction::api::MAX_THREADS).contains(&v));
            }
            if let Ok(v) = hop(&text) {
                prop_assert!(v >= 1);
            }
            if let Ok(s) = sentence(&text) {
                prop_assert!(!s.trim().is_empty());
            }
            if let Ok(v) = seeds(&text) {
                prop_assert!(!v.is_empty() && v.len() as u64 <= MAX_SEEDS);
            }
        }

        /// Any float as text, including the extremes.
        #[test]
        fn any_float_duration(v in proptest::num::f64::ANY) {
            if let Ok(s) = seconds(&v.to_string()) {
                let _ = std::time::Duration::from_secs_f64(s);
            }
        }
    }
}
