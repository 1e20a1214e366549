//! A minimal streaming writer of NumPy `.npy` files (version 1.0): rows are
//! appended and the header (with the final row count) is rewritten on close.

use avaction::{Error, ErrorKind, Result};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER_LEN: usize = 128;

/// Appends rows of a fixed shape to an `.npy` file.
pub struct NpyWriter {
    path: PathBuf,
    file: BufWriter<File>,
    descr: &'static str,
    row_shape: Vec<usize>,
    rows: usize,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{}: {e}", path.display()))
}

impl NpyWriter {
    /// `descr` is the NumPy dtype string (`|u1`, `<f4`, `<i8`, `<f8`).
    pub fn create(path: &Path, descr: &'static str, row_shape: &[usize]) -> Result<NpyWriter> {
        let file = File::create(path).map_err(|e| io(path, e))?;
        let mut w = NpyWriter {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
            descr,
            row_shape: row_shape.to_vec(),
            rows: 0,
        };
        let header = w.header();
        w.file.write_all(&header).map_err(|e| io(path, e))?;
        Ok(w)
    }

    fn header(&self) -> Vec<u8> {
        let mut shape = format!("({}, ", self.rows);
        for d in &self.row_shape {
            shape.push_str(&format!("{d}, "));
        }
        let shape = shape.trim_end_matches(", ").to_string()
            + if self.row_shape.is_empty() { ",)" } else { ")" };
        let dict = format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
            self.descr
        );
        let mut h = b"\x93NUMPY\x01\x00".to_vec();
        let body_len = HEADER_LEN - 10;
        h.extend_from_slice(&(body_len as u16).to_le_bytes());
        let mut body = dict.into_bytes();
        body.resize(body_len - 1, b' ');
        body.push(b'\n');
        h.extend_from_slice(&body);
        h
    }

    /// Appends one row given as raw little-endian bytes.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).map_err(|e| io(&self.path, e))?;
        self.rows += 1;
        Ok(())
    }

    /// Appends one row of f32 values.
    pub fn push_f32(&mut self, values: &[f32]) -> Result<()> {
        for v in values {
            self.file
                .write_all(&v.to_le_bytes())
                .map_err(|e| io(&self.path, e))?;
        }
        self.rows += 1;
        Ok(())
    }

    /// Writes the final header and flushes.
    pub fn finish(mut self) -> Result<usize> {
        let header = self.header();
        let path = self.path.clone();
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| io(&path, e))?;
        self.file.write_all(&header).map_err(|e| io(&path, e))?;
        self.file.flush().map_err(|e| io(&path, e))?;
        Ok(self.rows)
    }
}
