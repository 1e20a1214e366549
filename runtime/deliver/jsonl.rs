//! `jsonl:PATH`: records as JSON lines appended to a file. Events are fsynced as they
//! are written (an event in the file survives a power cut); predictions and health
//! changes (when asked for with `?predictions`, `?health`) are flushed but not synced.
//! Past `max_bytes` (default 64 MiB) the file is rotated: `PATH` becomes `PATH.1`,
//! `PATH.1` becomes `PATH.2`, … up to `keep` old files (default 5).

use super::Output;
use super::{known_keys, split_query, Record, Sink, SinkStats};
use crate::{err, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// The JSON-lines file sink.
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
    predictions: bool,
    health: bool,
    written: u64,
}

impl JsonlSink {
    /// Opens `PATH[?predictions&health&max_bytes=N&keep=N]` for appending (creating the
    /// folder).
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for an unknown or bad option;
    /// [`Io`](crate::ErrorKind::Io) when the file cannot be opened.
    pub fn open(spec: &str) -> Result<JsonlSink> {
        let settings = Settings::parse(spec)?;
        let (file, size) = append(&settings.path)?;
        Ok(JsonlSink {
            path: settings.path,
            file,
            size,
            max_bytes: settings.max_bytes,
            keep: settings.keep,
            predictions: settings.predictions,
            health: settings.health,
            written: 0,
        })
    }

    fn rotate(&mut self) -> Result<()> {
        let name = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            for i in (1..self.keep).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            std::fs::rename(&self.path, name(1)).map_err(|e| {
                err!(Io, "sink jsonl:{}: rotating", self.path.display()).caused_by(e)
            })?;
        }
        let (file, size) = append(&self.path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }
}

/// What a `jsonl:` spec says.
pub(crate) struct Settings {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    predictions: bool,
    health: bool,
}

impl Settings {
    pub(crate) fn parse(spec: &str) -> Result<Settings> {
        let (path, query) = split_query(spec);
        known_keys(
            spec,
            &query,
            &["predictions", "health", "max_bytes", "keep"],
        )?;
        if path.is_empty() {
            return Err(err!(Config, "sink jsonl:{spec}: no file path"));
        }
        let flag = |key: &str| -> Result<bool> {
            match query
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
            {
                None | Some("false") => Ok(false),
                Some("true") => Ok(true),
                Some(other) => Err(err!(
                    Config,
                    "sink jsonl:{spec}: {key}={other:?} is not true or false"
                )),
            }
        };
        let number = |key: &str, default: u64, min: u64| -> Result<u64> {
            match query.iter().find(|(k, _)| k == key) {
                None => Ok(default),
                Some((_, v)) => v.parse::<u64>().ok().filter(|n| *n >= min).ok_or_else(|| {
                    err!(
                        Config,
                        "sink jsonl:{spec}: {key}={v:?} must be a whole number of at least {min}"
                    )
                }),
            }
        };
        Ok(Settings {
            path: PathBuf::from(path),
            max_bytes: number("max_bytes", 64 << 20, 4096)?,
            keep: number("keep", 5, 0)?.min(1000) as u32,
            predictions: flag("predictions")?,
            health: flag("health")?,
        })
    }
}

fn append(path: &std::path::Path) -> Result<(File, u64)> {
    let io = |e: std::io::Error| err!(Io, "sink jsonl:{}", path.display()).caused_by(e);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    Ok((file, size))
}

impl Sink for JsonlSink {
    fn name(&self) -> String {
        format!("jsonl:{}", self.path.display())
    }

    fn deliver(&mut self, record: &Record) -> Result<()> {
        let wanted = match record.output {
            Output::Event(_) | Output::End(_) => true,
            Output::Prediction(_) => self.predictions,
            Output::Health(_) => self.health,
        };
        if !wanted {
            return Ok(());
        }
        let mut line = record.to_json().to_string();
        line.push('\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let io = |e: std::io::Error| err!(Io, "sink jsonl:{}", self.path.display()).caused_by(e);
        self.file.write_all(line.as_bytes()).map_err(io)?;
        if matches!(record.output, Output::Event(_) | Output::End(_)) {
            self.file.sync_data().map_err(io)?;
        }
        self.size += line.len() as u64;
        self.written += 1;
        Ok(())
    }

    fn close(&mut self, _within: Duration) {
        let _ = self.file.sync_all();
    }

    fn stats(&self) -> SinkStats {
        SinkStats {
            name: self.name(),
            delivered: self.written,
            connected: true,
            ..SinkStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Event, EventKind};

    #[test]
    fn events_are_written_and_the_file_rotates() {
        let dir = std::env::temp_dir().join(format!("avaction-jsonl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/events.jsonl");
        let mut sink =
            JsonlSink::open(&format!("{}?max_bytes=4096&keep=2", path.display())).unwrap();
        let event = Output::Event(Event {
            kind: EventKind::Onset,
            label: "a disc falls".into(),
            time_s: 1.5,
            duration_s: None,
            score: 0.9,
        });
        for i in 0..100 {
            let id = format!("run-{i}");
            sink.deliver(&Record {
                output: &event,
                id: Some(&id),
                model: "m",
            })
            .unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["id"], "run-99");
        assert_eq!(last["label"], "a disc falls");
        assert!(path.with_extension("jsonl.1").exists() && path.with_extension("jsonl.2").exists());
        assert!(!path.with_extension("jsonl.3").exists());
        assert!(JsonlSink::open(&format!("{}?bogus", path.display())).is_err());
        assert!(JsonlSink::open(&format!("{}?keep=x", path.display())).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
