//! (temporary, replaced by the capture branch)
#![allow(missing_docs)]
use super::{AudioSource, CaptureEvent, CaptureStats};
use crate::clock::Timeline;
use std::sync::{mpsc::SyncSender, Arc};
pub struct Microphone;
impl Microphone {
    pub fn start(
        _s: &AudioSource,
        _r: u32,
        _t: Timeline,
        _tx: SyncSender<CaptureEvent>,
        _st: Arc<CaptureStats>,
    ) -> crate::Result<Microphone> {
        Err(crate::err!(Audio, "not built"))
    }
    pub fn device_name(&self) -> &str {
        ""
    }
    pub fn stop(&mut self) {}
}
pub fn list_microphones() -> Vec<String> {
    Vec::new()
}
