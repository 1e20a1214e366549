//! The Debian package (`packaging/build-deb.sh`): it builds from this test's binary,
//! installs with `dpkg -i`, its systemd unit passes `systemd-analyze verify`, the
//! installed command runs the packaged config on a test source from `/` as the service
//! user, and `dpkg -r` / `dpkg -P` remove it cleanly. Needs root (CI runs as root);
//! elsewhere, or where a real avaction package is installed, it is reported as
//! skipped with the reason.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn sh(program: &str, args: &[&str]) -> (bool, String) {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (false, format!("{program}: {e}")),
    }
}

fn installed() -> bool {
    sh("dpkg-query", &["-W", "-f=${Status}", "avaction"])
        .1
        .contains("install ok installed")
}

/// Why the test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("dpkg -i needs root (CI runs as root)".into());
    }
    for tool in ["dpkg-deb", "dpkg-shlibdeps", "systemd-analyze", "runuser"] {
        if !sh("sh", &["-c", &format!("command -v {tool}")]).0 {
            return Some(format!(
                "{tool} not found (scripts/setup-debian.sh installs it)"
            ));
        }
    }
    if installed() {
        return Some("an avaction package is installed on this machine; not touching it".into());
    }
    None
}

/// Purges the package however the test ends.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        if installed() {
            let _ = sh("dpkg", &["-P", "avaction"]);
        }
    }
}

#[test]
fn the_package_installs_runs_and_uninstalls() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let out = common::temp_dir("deb");
    let built = Command::new(common::repo("packaging/build-deb.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_avaction"), "--out"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .expect("packaging/build-deb.sh");
    let log = String::from_utf8_lossy(&built.stderr).to_string();
    assert!(built.status.success(), "build-deb: {log}");
    let deb = String::from_utf8_lossy(&built.stdout).trim().to_string();
    assert!(deb.ends_with(".deb") && Path::new(&deb).is_file(), "{deb}");
    let (ok, contents) = sh("dpkg-deb", &["--contents", &deb]);
    assert!(ok, "{contents}");
    for path in [
        "./usr/bin/avaction",
        "./etc/avaction/avaction.toml",
        "./lib/systemd/system/avaction.service",
        "./usr/share/avaction/models/cavnet-ov-small/model.toml",
        "./usr/share/avaction/models/cavnet-small/model.toml",
        "./usr/share/avaction/models/mov-small/model.toml",
        "./usr/share/avaction/models/avt-moderation/model.toml",
        "./usr/share/doc/avaction/examples/configs/reference.toml",
    ] {
        assert!(contents.contains(path), "{path} not in the package");
    }
    let (_, info) = sh("dpkg-deb", &["--info", &deb]);
    assert!(info.contains("libgstreamer1.0-0"), "dependencies: {info}");

    let _purge = Purge;
    let started = Instant::now();
    let (ok, log) = sh("dpkg", &["-i", &deb]);
    assert!(ok, "dpkg -i: {log}");
    let installed_in = started.elapsed();

    let (ok, log) = sh(
        "systemd-analyze",
        &["verify", "/lib/systemd/system/avaction.service"],
    );
    assert!(ok, "systemd-analyze verify: {log}");
    assert!(
        !log.contains("avaction.service:"),
        "systemd-analyze has remarks on the unit: {log}"
    );

    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata("/etc/avaction/avaction.toml").expect("the config");
        assert_eq!(
            meta.mode() & 0o777,
            0o640,
            "the config is not world-readable"
        );
    }
    let (ok, version) = sh("/usr/bin/avaction", &["--version"]);
    assert!(ok && version.starts_with("avaction "), "{version}");
    let (ok, check) = sh(
        "/usr/bin/avaction",
        &["config", "check", "/etc/avaction/avaction.toml"],
    );
    assert!(ok, "{check}");
    assert!(
        check.contains("/usr/share/avaction/models/cavnet-ov-small"),
        "the packaged bundle is the one found: {check}"
    );

    // As the service would: the service user, from /, no environment but the basics.
    let mut child = Command::new("runuser")
        .args(["-u", "avaction", "--", "env", "-i"])
        .args(["PATH=/usr/bin:/bin", "HOME=/var/lib/avaction"])
        .args([
            "/usr/bin/avaction",
            "run",
            "--config",
            "/etc/avaction/avaction.toml",
            "--video",
            "test:ball",
            "--audio",
            "none",
            "--duration",
            "3",
            "--json",
            "--events-only=false",
        ])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runuser avaction");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first_label = None;
    let mut lines = Vec::new();
    for line in stdout.lines().map_while(|l| l.ok()) {
        if first_label.is_none() && line.contains(r#""type":"prediction""#) {
            first_label = Some(started.elapsed());
        }
        lines.push(line);
    }
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        lines.iter().any(|l| l.contains(r#""type":"health""#)),
        "{lines:?} {stderr}"
    );
    let first_label = first_label.unwrap_or_else(|| panic!("no label in 3 s: {lines:?} {stderr}"));
    eprintln!(
        "package: dpkg -i took {:.1} s; first label {:.1} s after dpkg -i began",
        installed_in.as_secs_f64(),
        first_label.as_secs_f64()
    );
    let (ok, log) = sh("dpkg", &["-r", "avaction"]);
    assert!(ok, "dpkg -r: {log}");
    for gone in [
        "/usr/bin/avaction",
        "/usr/share/avaction",
        "/lib/systemd/system/avaction.service",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left after dpkg -r");
    }
    assert!(
        Path::new("/etc/avaction/avaction.toml").exists(),
        "dpkg -r keeps the conffile until purge"
    );
    let (ok, log) = sh("dpkg", &["-P", "avaction"]);
    assert!(ok, "dpkg -P: {log}");
    for gone in ["/etc/avaction", "/var/lib/avaction", "/var/cache/avaction"] {
        assert!(!Path::new(gone).exists(), "{gone} left after dpkg -P");
    }
    std::fs::remove_dir_all(&out).ok();
}
