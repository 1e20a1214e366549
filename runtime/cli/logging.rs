//! Log lines on stderr. In a terminal or a file: env_logger's usual lines with a
//! timestamp. Under systemd, when stderr is the journal (`$JOURNAL_STREAM` names the
//! device and inode of stderr, as systemd sets it), each line starts with its syslog
//! priority (`<3>` error … `<7>` trace) and has no timestamp: journald reads the prefix
//! as the priority (so `journalctl -p warning` filters) and stamps the line itself.
//!
//! The filter is `$RUST_LOG` when set (and not empty), else the `log` option (`--log`, or `log` in the
//! config file), else `warn`.

use std::io::Write;

/// Whether stderr is connected to the journal.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat writes into the zeroed struct we own; fd 2 may be closed, which
    // fstat reports as an error.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

/// The syslog priority of a log level (sd-daemon(3) prefixes).
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Starts the logger with `filter` (see the module docs).
pub fn init(filter: Option<&str>) {
    let mut builder = env_logger::Builder::new();
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    builder.parse_filters(env.as_deref().or(filter).unwrap_or("warn"));
    if let Ok(style) = std::env::var("RUST_LOG_STYLE") {
        builder.parse_write_style(&style);
    }
    if stderr_is_journal() {
        builder.format(|buf, record| {
            writeln!(
                buf,
                "<{}>{}: {}",
                priority(record.level()),
                record.target(),
                record.args()
            )
        });
    }
    builder.init();
}

/// Reports the error that ends the command (priority `err` in the journal).
pub fn fatal(e: &avaction::Error) {
    let prefix = if stderr_is_journal() { "<3>" } else { "" };
    eprintln!("{prefix}avaction: {e}");
}
