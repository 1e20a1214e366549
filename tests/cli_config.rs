//! `avaction run --config FILE` and `avaction config check FILE`
//! (`runtime/cli/config.rs`): every key of `run` is documented and set in
//! `examples/configs/reference.toml`, the shipped examples are valid, the command line
//! wins over the file, a wrong key names the key and the file, and log lines carry
//! journald priorities when stderr is the journal (`runtime/cli/logging.rs`).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

/// The keys the binary accepts, read off its refusal of an unknown one ("expected one
/// of `model`, `video`, …"): the parser itself, not a list kept by hand.
fn accepted_keys(table: &str) -> BTreeSet<String> {
    let dir = common::temp_dir(&format!("config-keys-{table}"));
    let file = dir.join("probe.toml");
    let text = if table.is_empty() {
        "not_a_key = 1\n".to_string()
    } else {
        format!("[{table}]\nnot_a_key = 1\n")
    };
    std::fs::write(&file, text).unwrap();
    let run = common::avaction(&["config", "check", file.to_str().unwrap()], T);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let list = run
        .stderr
        .split_once("expected one of")
        .unwrap_or_else(|| panic!("no key list in {}", run.stderr))
        .1;
    let keys: BTreeSet<String> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect();
    assert!(keys.len() > 3, "{}", run.stderr);
    keys
}

#[test]
fn the_reference_config_sets_and_documents_every_key() {
    let path = common::repo("examples/configs/reference.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: toml::Table = toml::from_str(&text).expect("reference.toml is TOML");
    let top: BTreeSet<String> = doc.keys().cloned().collect();
    assert_eq!(top, accepted_keys(""), "top-level keys of reference.toml");
    let supervision: BTreeSet<String> = doc["supervision"]
        .as_table()
        .expect("[supervision]")
        .keys()
        .cloned()
        .collect();
    assert_eq!(supervision, accepted_keys("supervision"));
    // Documented: a comment right above each key.
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        if line.starts_with('#') {
            continue;
        }
        assert!(
            i > 0 && lines[i - 1].starts_with('#'),
            "{}: `{}` has no comment above it",
            path.display(),
            key.trim()
        );
    }
    // Every run flag has its key (the flag with `-` written `_`).
    let help = common::avaction(&["run", "--help"], T).stdout;
    for flag in help.split_whitespace().filter_map(|w| w.strip_prefix("--")) {
        let flag: String = flag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let flag = flag.as_str();
        if ["help", "config"].contains(&flag) || flag.is_empty() {
            continue;
        }
        assert!(
            top.contains(&flag.replace('-', "_")),
            "--{flag} has no config key"
        );
    }
}

#[test]
fn the_example_configs_are_valid() {
    for name in ["reference", "robot", "moderation"] {
        let path = common::repo(&format!("examples/configs/{name}.toml"));
        let run = common::avaction(&["config", "check", path.to_str().unwrap()], T);
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
        assert!(run.stdout.contains("valid"), "{}", run.stdout);
        // The effective config is itself a valid config.
        let dir = common::temp_dir(&format!("config-effective-{name}"));
        let again = dir.join("effective.toml");
        std::fs::write(&again, &run.stdout).unwrap();
        let run2 = common::avaction(&["config", "check", again.to_str().unwrap()], T);
        assert_eq!(run2.code, Some(0), "{name} effective: {}", run2.stderr);
    }
    // The reference's relative label file is found beside it, from any directory.
    let run = common::avaction(
        &[
            "config",
            "check",
            common::repo("examples/configs/reference.toml")
                .to_str()
                .unwrap(),
        ],
        T,
    );
    let expected = common::repo("examples/configs/labels.txt");
    assert!(
        run.stdout.contains(expected.to_str().unwrap()),
        "{}",
        run.stdout
    );
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = common::temp_dir(&format!("config-{name}"));
    let path = dir.join("avaction.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn run_reads_the_file_and_the_command_line_wins() {
    let path = write_config(
        "run",
        "model = \"cavnet-small\"\nvideo = \"/no/such/file.mkv\"\naudio = \"none\"\n\
         json = true\nevents_only = true\nduration = 30\n[supervision]\nstall_after_s = 3\n",
    );
    let run = common::avaction(
        &[
            "run",
            "--config",
            path.to_str().unwrap(),
            "--video",
            "test:ball",
            "--model",
            "cavnet-ov-small",
            "--duration",
            "2",
            "--events-only=false",
        ],
        T,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(25), "--duration 2 won");
    assert!(
        run.stdout.contains(r#""type":"prediction""#),
        "--events-only=false won: {}",
        run.stdout
    );
    let first = run.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with('{'), "json from the file: {first}");
    // cavnet-ov-small (from the command line) scores sentences, not cavnet-small's classes.
    assert!(run.stdout.contains("a square"), "{}", run.stdout);
}

#[test]
fn wrong_keys_and_values_name_the_key_and_the_file() {
    for (name, text, key) in [
        ("unknown", "vidoe = \"camera\"\n", "vidoe"),
        ("table", "[supervision]\nstall = 1\n", "stall"),
        ("value", "threads = 0\n", "threads"),
        ("type", "json = \"yes\"\n", "json"),
        ("syntax", "video = camera\n", "line 1"),
    ] {
        let path = write_config(name, text);
        for args in [
            vec!["config", "check", path.to_str().unwrap()],
            vec!["run", "--config", path.to_str().unwrap()],
        ] {
            let run = common::avaction(&args, T);
            assert_eq!(run.code, Some(1), "{name} {args:?}: {}", run.stderr);
            assert!(
                run.stderr.contains(key) && run.stderr.contains(path.to_str().unwrap()),
                "{name} {args:?}: {}",
                run.stderr
            );
        }
    }
    let run = common::avaction(&["config", "check", "/no/such/avaction.toml"], T);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("/no/such/avaction.toml"),
        "{}",
        run.stderr
    );
    let path = write_config("model", "model = \"no-such-model\"\n");
    let run = common::avaction(&["config", "check", path.to_str().unwrap()], T);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("no-such-model"), "{}", run.stderr);
}

/// Runs `avaction args…` with stderr into a file that `$JOURNAL_STREAM` names, as
/// systemd does for a service whose stderr is the journal; returns (exit code, stderr).
fn as_journal(name: &str, args: &[&str]) -> (Option<i32>, String) {
    use std::os::unix::fs::MetadataExt;
    let log = common::temp_dir(name).join("stderr");
    let file = std::fs::File::create(&log).unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let status = common::avaction_command(args)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .status()
        .expect("run");
    (status.code(), std::fs::read_to_string(&log).unwrap())
}

#[test]
fn log_lines_carry_journald_priorities_when_stderr_is_the_journal() {
    let quick = [
        "run",
        "--video",
        "test:ball",
        "--audio",
        "none",
        "--duration",
        "1",
    ];
    let (code, text) = as_journal("journal-ok", &[&quick[..], &["--log", "info"]].concat());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.lines().any(|l| l.starts_with("<6>avaction")), "{text}");
    for line in text.lines() {
        let prio = line.strip_prefix('<').and_then(|l| l.split_once('>'));
        assert!(
            prio.is_some_and(|(p, _)| matches!(p, "3" | "4" | "6" | "7")),
            "no priority prefix: {line}"
        );
    }
    let (code, text) = as_journal(
        "journal-fail",
        &[&quick[..], &["--model", "no-such-model"]].concat(),
    );
    assert_eq!(code, Some(1));
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("<3>avaction: ") && last.contains("no-such-model"),
        "{text}"
    );
    // Not the journal (another device and inode): plain lines with timestamps.
    let run = common::avaction_env(
        &[&quick[..], &["--log", "info"]].concat(),
        &[("JOURNAL_STREAM", "1:1"), ("RUST_LOG", "")],
        T,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("[20") && l.contains(" INFO ")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("<6>"), "{}", run.stderr);
}
