//! What the model sees and hears, for the live view (`avaction run --ui`): the
//! capture's picture ([`PreviewTap`]), the audio level, the log-mel the model gets (a
//! column per mel frame, each once) and the newest optical flow field on a coarse
//! grid. The window stream fills it as windows complete; a reader takes what is new
//! with a [`ViewCursor`]. Everything is bounded: the mel keeps its last
//! [`MEL_KEEP`] columns, the flow only its newest field.

use super::{Window, WindowConfig, WindowFlow};
use crate::capture::preview::PreviewTap;
use crate::frontend::flow::FlowEncoding;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Log-mel columns kept for readers (10 s at the usual 10 ms hop).
pub const MEL_KEEP: usize = 1000;

/// Cells of the flow grid across the picture's longer side.
const FLOW_CELLS: usize = 16;

/// The newest flow field, averaged over cells: displacements in pixels of the model's
/// frame (`u` right, `v` down), row by row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowGrid {
    /// Cells across.
    pub width: usize,
    /// Cells down.
    pub height: usize,
    /// Horizontal displacement per cell.
    pub u: Vec<f32>,
    /// Vertical displacement per cell.
    pub v: Vec<f32>,
}

/// What changed since a reader's last [`LiveView::take`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ViewUpdate {
    /// Mel bins per column (0 when the model takes no audio).
    pub bins: usize,
    /// New log-mel columns, oldest first, `bins` values each, quantised to 0..=255
    /// between `mel_lo` and `mel_hi` (the smallest and largest value among them).
    pub mel: Vec<u8>,
    /// The value 0 stands for.
    pub mel_lo: f32,
    /// The value 255 stands for.
    pub mel_hi: f32,
    /// Level of the newest audio chunk, dBFS (RMS); `None` before any audio.
    pub level_db: Option<f32>,
    /// The newest flow field, when it changed.
    pub flow: Option<FlowGrid>,
}

impl ViewUpdate {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.mel.is_empty() && self.flow.is_none()
    }
}

/// Where a reader is: the next mel column and flow field it has not seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewCursor {
    mel: u64,
    flow: u64,
}

#[derive(Debug, Default)]
struct Shape {
    bins: usize,
    width: usize,
    height: usize,
    flow: Option<FlowEncoding>,
}

#[derive(Debug, Default)]
struct State {
    shape: Shape,
    /// Columns kept, `bins` values each.
    mel: VecDeque<f32>,
    /// Number of the column after the newest kept (columns are numbered from 0).
    mel_end: u64,
    /// Stream number of the next mel frame not yet taken from a window.
    next_mel_frame: Option<u64>,
    flow: Option<FlowGrid>,
    /// Counts flow fields kept (the newest is number `flow_seq`).
    flow_seq: u64,
}

/// The live view's data; see the module docs.
#[derive(Debug)]
pub struct LiveView {
    preview: Arc<PreviewTap>,
    level_bits: AtomicU32,
    state: Mutex<State>,
}

impl LiveView {
    /// A view whose picture comes through `preview`.
    pub fn new(preview: Arc<PreviewTap>) -> LiveView {
        LiveView {
            preview,
            level_bits: AtomicU32::new(f32::NAN.to_bits()),
            state: Mutex::new(State::default()),
        }
    }

    /// The picture's tap (the capture's live view branch fills it).
    pub fn preview(&self) -> &Arc<PreviewTap> {
        &self.preview
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the windows' shape: frame size, flow encoding, mel bins.
    pub fn configure(&self, cfg: &WindowConfig) {
        let mut s = self.lock();
        s.shape = Shape {
            bins: cfg
                .logmel
                .as_ref()
                .map_or(0, |(fbank, _)| fbank.num_mel_bins),
            width: cfg.width,
            height: cfg.height,
            flow: cfg.flow.as_ref().map(|f| f.encoding),
        };
        let keep = MEL_KEEP * s.shape.bins;
        s.mel = VecDeque::with_capacity(keep);
    }

    /// Notes the level of an audio chunk (lock-free).
    pub fn push_audio(&self, samples: &[f32]) {
        if samples.is_empty() {
            return;
        }
        let power = samples
            .iter()
            .map(|x| if x.is_finite() { x * x } else { 0.0 })
            .sum::<f32>()
            / samples.len() as f32;
        let db = (10.0 * power.max(1e-10).log10()).max(-100.0);
        self.level_bits.store(db.to_bits(), Ordering::Relaxed);
    }

    /// Keeps the window's mel columns not seen before and its newest flow field.
    pub fn push_window(&self, w: &Window) {
        let mut guard = self.lock();
        let s = &mut *guard;
        let bins = s.shape.bins;
        if bins > 0 && !w.audio_slots.is_empty() && w.logmel.len() >= w.audio_slots.end * bins {
            let first = w.audio_index;
            let from = s
                .next_mel_frame
                .map_or(0, |next| next.saturating_sub(first));
            let start = w.audio_slots.start + usize::try_from(from).unwrap_or(usize::MAX);
            let keep = MEL_KEEP * bins;
            for slot in start.min(w.audio_slots.end)..w.audio_slots.end {
                if s.mel.len() + bins > keep {
                    s.mel.drain(..bins);
                }
                s.mel.extend(&w.logmel[slot * bins..(slot + 1) * bins]);
                s.mel_end += 1;
            }
            let end = first + (w.audio_slots.end - w.audio_slots.start) as u64;
            s.next_mel_frame = Some(s.next_mel_frame.map_or(end, |n| n.max(end)));
        }
        if let Some(grid) = flow_grid(&w.flow, &s.shape) {
            s.flow = Some(grid);
            s.flow_seq += 1;
        }
    }

    /// Moves `cursor` past everything kept now, without handing anything out (nobody
    /// is reading).
    pub fn skip(&self, cursor: &mut ViewCursor) {
        let s = self.lock();
        cursor.mel = s.mel_end;
        cursor.flow = s.flow_seq;
    }

    /// What is new since `cursor` (which moves on): at most the last [`MEL_KEEP`] mel
    /// columns, the newest flow field, the level now.
    pub fn take(&self, cursor: &mut ViewCursor) -> ViewUpdate {
        let s = self.lock();
        let bins = s.shape.bins;
        let mut update = ViewUpdate {
            bins,
            ..ViewUpdate::default()
        };
        if let Some(kept) = s.mel.len().checked_div(bins) {
            let kept = kept as u64;
            let first_kept = s.mel_end - kept;
            let from = cursor.mel.max(first_kept);
            if from < s.mel_end {
                let skip = usize::try_from(from - first_kept).unwrap_or(0) * bins;
                let values: Vec<f32> = s.mel.range(skip..).copied().collect();
                let (lo, hi) = values
                    .iter()
                    .filter(|v| v.is_finite())
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                        (lo.min(v), hi.max(v))
                    });
                if lo.is_finite() {
                    let span = (hi - lo).max(1e-6);
                    update.mel = values
                        .iter()
                        .map(|v| {
                            if v.is_finite() {
                                ((v - lo) / span * 255.0).round().clamp(0.0, 255.0) as u8
                            } else {
                                0
                            }
                        })
                        .collect();
                    (update.mel_lo, update.mel_hi) = (lo, hi);
                }
            }
            cursor.mel = s.mel_end;
        }
        if s.flow_seq > cursor.flow {
            update.flow = s.flow.clone();
            cursor.flow = s.flow_seq;
        }
        let level = f32::from_bits(self.level_bits.load(Ordering::Relaxed));
        update.level_db = level.is_finite().then_some(level);
        update
    }
}

/// The newest field of `flow` averaged over a grid of at most [`FLOW_CELLS`] cells
/// across, in pixels (MOV's 8-bit encoding decoded back).
fn flow_grid(flow: &WindowFlow, shape: &Shape) -> Option<FlowGrid> {
    let (w, h) = (shape.width, shape.height);
    let plane = w * h;
    if plane == 0 {
        return None;
    }
    match (flow, shape.flow?) {
        (WindowFlow::Mov(bytes), FlowEncoding::Mov { bound }) if bytes.len() >= 3 * plane => {
            let field = &bytes[bytes.len() - 3 * plane..];
            let decode = |b: u8| f32::from(b) / 255.0 * 2.0 * bound - bound;
            Some(average_cells(w, h, |i| {
                (decode(field[i]), decode(field[plane + i]))
            }))
        }
        (WindowFlow::Float(values), FlowEncoding::Float) if values.len() >= 2 * plane => {
            let field = &values[values.len() - 2 * plane..];
            Some(average_cells(w, h, |i| (field[i], field[plane + i])))
        }
        _ => None,
    }
}

/// The mean of the finite displacements `at(pixel)` of a `w` x `h` field over a grid
/// of at most [`FLOW_CELLS`] cells across (read in place: no copy of the field).
fn average_cells(w: usize, h: usize, at: impl Fn(usize) -> (f32, f32)) -> FlowGrid {
    let cell = w.max(h).div_ceil(FLOW_CELLS).max(1);
    let (gw, gh) = (w.div_ceil(cell), h.div_ceil(cell));
    let mut grid = FlowGrid {
        width: gw,
        height: gh,
        u: vec![0.0; gw * gh],
        v: vec![0.0; gw * gh],
    };
    let mut counts = vec![0u32; gw * gh];
    for y in 0..h {
        for x in 0..w {
            let (u, v) = at(y * w + x);
            if u.is_finite() && v.is_finite() {
                let g = (y / cell) * gw + x / cell;
                grid.u[g] += u;
                grid.v[g] += v;
                counts[g] += 1;
            }
        }
    }
    for (g, &n) in counts.iter().enumerate() {
        if n > 0 {
            grid.u[g] /= n as f32;
            grid.v[g] /= n as f32;
        }
    }
    grid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Nanos;
    use crate::frontend::logmel::FbankConfig;

    fn config(bins: usize) -> WindowConfig {
        let fbank = FbankConfig {
            num_mel_bins: bins,
            ..FbankConfig::default()
        };
        WindowConfig {
            frames: 2,
            hop_frames: 1,
            stride: 1,
            fps: 10,
            width: 4,
            height: 2,
            preprocess: None,
            flow: None,
            logmel: Some((fbank, 4)),
            expect_audio: true,
            audio_wait_ns: None,
            mel_history: 100,
            max_pending: 4,
        }
    }

    fn window(audio_index: u64, slots: std::ops::Range<usize>, logmel: Vec<f32>) -> Window {
        Window {
            index: 0,
            t_start: Nanos::ZERO,
            t_end: Nanos::ZERO,
            t_last_frame: Nanos::ZERO,
            frames: Vec::new(),
            flow: WindowFlow::None,
            logmel,
            audio_start: None,
            skew_ns: None,
            audio_missing: 0,
            invalid_audio: 0,
            first_frame: 0,
            stride: 1,
            audio_slots: slots,
            audio_index,
            video_complete_at: std::time::Instant::now(),
        }
    }

    #[test]
    fn each_mel_column_is_handed_out_once() {
        let view = LiveView::new(Arc::new(PreviewTap::new(100, 10)));
        view.configure(&config(2));
        // frames 0..4, then frames 2..6: only 4 and 5 are new
        view.push_window(&window(0, 0..4, vec![0., 1., 2., 3., 4., 5., 6., 7.]));
        let mut cursor = ViewCursor::default();
        let first = view.take(&mut cursor);
        assert_eq!(first.bins, 2);
        assert_eq!(first.mel.len(), 8);
        assert_eq!((first.mel_lo, first.mel_hi), (0.0, 7.0));
        assert_eq!((first.mel[0], first.mel[7]), (0, 255));
        view.push_window(&window(2, 0..4, vec![4., 5., 6., 7., 8., 9., 10., 11.]));
        let second = view.take(&mut cursor);
        assert_eq!(second.mel.len(), 4, "two new columns of two bins");
        assert_eq!((second.mel_lo, second.mel_hi), (8.0, 11.0));
        assert!(view.take(&mut cursor).is_empty());
        view.push_window(&window(4, 0..4, vec![8., 9., 10., 11., 12., 13., 14., 15.]));
        view.skip(&mut cursor);
        assert!(
            view.take(&mut cursor).is_empty(),
            "skipped columns are not handed out"
        );
    }

    #[test]
    fn the_mel_is_bounded_and_a_late_reader_gets_the_newest() {
        let view = LiveView::new(Arc::new(PreviewTap::new(100, 10)));
        view.configure(&config(1));
        for k in 0..(MEL_KEEP as u64 + 50) {
            view.push_window(&window(k, 0..1, vec![k as f32]));
        }
        let update = view.take(&mut ViewCursor::default());
        assert_eq!(update.mel.len(), MEL_KEEP);
        assert_eq!(update.mel_hi, (MEL_KEEP + 49) as f32);
        assert_eq!(update.mel_lo, 50.0);
    }

    #[test]
    fn the_level_is_the_rms_in_dbfs() {
        let view = LiveView::new(Arc::new(PreviewTap::new(100, 10)));
        assert_eq!(view.take(&mut ViewCursor::default()).level_db, None);
        view.push_audio(&[0.5, -0.5, 0.5, -0.5]);
        let db = view
            .take(&mut ViewCursor::default())
            .level_db
            .expect("a level");
        assert!((db - -6.02).abs() < 0.01, "{db}");
        view.push_audio(&[0.0; 8]);
        assert_eq!(view.take(&mut ViewCursor::default()).level_db, Some(-100.0));
    }

    #[test]
    fn mov_flow_is_decoded_and_averaged_over_cells() {
        let shape = Shape {
            bins: 0,
            width: 4,
            height: 2,
            flow: Some(FlowEncoding::Mov { bound: 20.0 }),
        };
        // one field: u = +20 px everywhere (255), v = -20 px (0), zero plane
        let mut bytes = vec![255u8; 8];
        bytes.extend([0u8; 8]);
        bytes.extend([0u8; 8]);
        let grid = flow_grid(&WindowFlow::Mov(bytes), &shape).expect("a grid");
        assert_eq!((grid.width, grid.height), (4, 2));
        assert!(grid.u.iter().all(|&u| (u - 20.0).abs() < 1e-4));
        assert!(grid.v.iter().all(|&v| (v + 20.0).abs() < 1e-4));
        assert!(flow_grid(&WindowFlow::None, &shape).is_none());
        assert!(flow_grid(&WindowFlow::Mov(vec![1, 2]), &shape).is_none());
    }
}
