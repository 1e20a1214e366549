//! (temporary, replaced by the capture branch)
#![allow(missing_docs)]
use super::{CaptureEvent, CaptureStats, VideoSource};
use crate::clock::Timeline;
use std::sync::{mpsc::SyncSender, Arc};
#[derive(Debug, Clone)]
pub struct VideoConfig {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub realtime: bool,
    pub audio_rate: Option<u32>,
    pub live_max_buffers: u32,
}
pub struct VideoCapture;
impl VideoCapture {
    pub fn start(
        _s: &VideoSource,
        _c: &VideoConfig,
        _t: Timeline,
        _tx: SyncSender<CaptureEvent>,
        _st: Arc<CaptureStats>,
    ) -> crate::Result<VideoCapture> {
        Err(crate::err!(Video, "not built"))
    }
    pub fn stop(&mut self) {}
    pub fn has_audio(&self) -> bool {
        false
    }
}
pub fn list_cameras() -> Vec<String> {
    Vec::new()
}
