//! The decoder: class scores per window become [`Prediction`]s (smoothed top-k) and
//! [`Event`]s (onset/offset with enter/exit hysteresis and a minimum duration), for
//! single-label (softmax) and multi-label (sigmoid) heads.

mod config;
pub mod vocabulary;

pub use config::{DecoderConfig, DecoderKind};

use crate::clock::{Nanos, TimeSpan};
use serde::Serialize;

/// One window's raw model scores with the facts a [`Prediction`] reports about it:
/// what [`Decoder::push`] takes.
#[derive(Debug, Clone, Copy)]
pub struct WindowScores<'a> {
    /// Window sequence number.
    pub window: u64,
    /// The window's video span on the timeline.
    pub span: TimeSpan,
    /// The model's output for the window: raw scores (logits), one per label in label
    /// order; or, for a decoder with a [`LabelScorer`](vocabulary::LabelScorer) (an
    /// open-vocabulary model), the window embeddings it matches to the labels.
    pub output: &'a [f32],
    /// Latency of the window in milliseconds (see [`Prediction::latency_ms`]).
    pub latency_ms: f64,
    /// Measured audio-video skew, if the window has audio.
    pub skew_ns: Option<Nanos>,
    /// Log-mel frames of the window that had no audio.
    pub audio_missing: usize,
}

/// One label and its score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    /// Class label.
    pub label: String,
    /// Smoothed probability in [0, 1].
    pub score: f32,
}

/// The decoded output of one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// Window sequence number.
    pub window: u64,
    /// Start of the window's video span, seconds on the runtime timeline.
    pub start_s: f64,
    /// End of the window's video span, seconds.
    pub end_s: f64,
    /// The top-k labels by smoothed score, best first.
    pub top: Vec<LabelScore>,
    /// Latency in milliseconds: for live sources from the capture of the window's
    /// last frame to this prediction; for files, from the window's completion.
    pub latency_ms: f64,
    /// Measured audio-video skew of the window (audio start - video start), ms.
    pub skew_ms: Option<f64>,
    /// Log-mel frames of the window that had no audio.
    pub audio_missing: usize,
}

/// Whether an event starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The label became active at `time_s`.
    Onset,
    /// The label stopped being active at `time_s`.
    Offset,
}

/// An onset or offset of a label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Onset or offset.
    pub kind: EventKind,
    /// The label.
    pub label: String,
    /// When it happened, seconds on the runtime timeline (window centre).
    pub time_s: f64,
    /// For offsets: the event's duration in seconds.
    pub duration_s: Option<f64>,
    /// The smoothed score at the decision.
    pub score: f32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LabelState {
    Idle,
    /// Above `enter` since this time, not yet long enough.
    Rising(f64),
    /// Reported active since this time.
    Active(f64),
}

/// Turns per-window scores into predictions and events.
#[derive(Debug)]
pub struct Decoder {
    cfg: DecoderConfig,
    labels: Vec<String>,
    background: Option<usize>,
    history: Vec<Vec<f32>>,
    next: usize,
    filled: usize,
    smoothed: Vec<f32>,
    probs: Vec<f32>,
    order: Vec<usize>,
    states: Vec<LabelState>,
    /// Open vocabulary: turns the model's embeddings into label scores.
    scorer: Option<vocabulary::LabelScorer>,
    /// The scorer's label scores (allocated once).
    scored: Vec<f32>,
}

impl Decoder {
    /// A decoder for `labels` (model output order).
    pub fn new(cfg: &DecoderConfig, labels: &[String]) -> Decoder {
        let n = labels.len();
        Decoder {
            background: cfg
                .background
                .as_ref()
                .and_then(|b| labels.iter().position(|l| l == b)),
            history: vec![vec![0.0; n]; cfg.smoothing.max(1)],
            next: 0,
            filled: 0,
            smoothed: vec![0.0; n],
            probs: vec![0.0; n],
            order: (0..n).collect(),
            states: vec![LabelState::Idle; n],
            labels: labels.to_vec(),
            cfg: cfg.clone(),
            scorer: None,
            scored: Vec::with_capacity(n),
        }
    }

    /// The same decoder for an open-vocabulary model: `scorer` turns each window's
    /// embeddings into one score per label (its labels must be this decoder's, in order).
    pub fn with_scorer(mut self, scorer: vocabulary::LabelScorer) -> Decoder {
        self.scorer = Some(scorer);
        self
    }

    /// Current smoothed scores, in label order.
    pub fn smoothed(&self) -> &[f32] {
        &self.smoothed
    }

    /// Decodes one window's output (see [`WindowScores::output`]). Events are appended
    /// to `events`.
    ///
    /// # Errors
    /// [`Model`](crate::ErrorKind::Model) when an open-vocabulary model's output is not
    /// one embedding per branch ([`LabelScorer::logits`](vocabulary::LabelScorer::logits)).
    pub fn push(
        &mut self,
        scores: &WindowScores<'_>,
        events: &mut Vec<Event>,
    ) -> crate::Result<Prediction> {
        let WindowScores {
            window,
            span,
            output,
            latency_ms,
            skew_ns,
            audio_missing,
        } = *scores;
        let n = self.labels.len();
        let logits = match self.scorer.as_mut() {
            Some(scorer) => {
                scorer.logits(output, &mut self.scored)?;
                &self.scored[..]
            }
            None => output,
        };
        let logits = &logits[..logits.len().min(n)];
        match self.cfg.kind {
            DecoderKind::Softmax => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for (p, &l) in self.probs.iter_mut().zip(logits) {
                    *p = if l.is_finite() { (l - max).exp() } else { 0.0 };
                    sum += *p;
                }
                let norm = if sum > 0.0 { 1.0 / sum } else { 0.0 };
                self.probs.iter_mut().for_each(|p| *p *= norm);
            }
            DecoderKind::Sigmoid => {
                for (p, &l) in self.probs.iter_mut().zip(logits) {
                    *p = if l.is_nan() {
                        0.0
                    } else {
                        1.0 / (1.0 + (-l).exp())
                    };
                }
            }
        }
        // moving average over the last `smoothing` windows
        self.history[self.next].copy_from_slice(&self.probs);
        self.next = (self.next + 1) % self.history.len();
        self.filled = (self.filled + 1).min(self.history.len());
        self.smoothed.fill(0.0);
        for h in self.history.iter().take(self.filled) {
            for (s, v) in self.smoothed.iter_mut().zip(h) {
                *s += v;
            }
        }
        let k = 1.0 / self.filled as f32;
        self.smoothed.iter_mut().for_each(|s| *s *= k);

        let (t_start, t_end) = (span.start, span.end);
        let t_mid = (t_start.as_secs_f64() + t_end.as_secs_f64()) / 2.0;
        self.update_events(t_mid, events);

        let smoothed = &self.smoothed;
        self.order
            .sort_by(|&a, &b| smoothed[b].total_cmp(&smoothed[a]));
        let top = self
            .order
            .iter()
            .take(self.cfg.top_k)
            .map(|&i| LabelScore {
                label: self.labels[i].clone(),
                score: self.smoothed[i],
            })
            .collect();
        Ok(Prediction {
            window,
            start_s: t_start.as_secs_f64(),
            end_s: t_end.as_secs_f64(),
            top,
            latency_ms,
            skew_ms: skew_ns.map(Nanos::as_millis_f64),
            audio_missing,
        })
    }

    fn update_events(&mut self, t: f64, events: &mut Vec<Event>) {
        for i in 0..self.labels.len() {
            if Some(i) == self.background {
                continue;
            }
            let s = self.smoothed[i];
            let state = self.states[i];
            self.states[i] = match state {
                LabelState::Idle if s >= self.cfg.enter => self.rise(i, t, t, s, events),
                LabelState::Idle => LabelState::Idle,
                LabelState::Rising(_) if s < self.cfg.exit => LabelState::Idle,
                LabelState::Rising(since) => self.rise(i, since, t, s, events),
                LabelState::Active(since) if s < self.cfg.exit => {
                    events.push(self.offset(i, since, t));
                    LabelState::Idle
                }
                active @ LabelState::Active(_) => active,
            };
        }
    }

    fn rise(
        &self,
        i: usize,
        since: f64,
        now: f64,
        score: f32,
        events: &mut Vec<Event>,
    ) -> LabelState {
        if now - since >= self.cfg.min_duration_s {
            events.push(Event {
                kind: EventKind::Onset,
                label: self.labels[i].clone(),
                time_s: since,
                duration_s: None,
                score,
            });
            LabelState::Active(since)
        } else {
            LabelState::Rising(since)
        }
    }

    /// The offset of label `i`, active since `since`, at `t`.
    fn offset(&self, i: usize, since: f64, t: f64) -> Event {
        Event {
            kind: EventKind::Offset,
            label: self.labels[i].clone(),
            time_s: t,
            duration_s: Some(t - since),
            score: self.smoothed[i],
        }
    }

    /// Ends every active event at `t` (end of stream).
    pub fn finish(&mut self, t: Nanos, events: &mut Vec<Event>) {
        let t = t.as_secs_f64();
        for i in 0..self.labels.len() {
            if let LabelState::Active(since) = self.states[i] {
                events.push(self.offset(i, since, t));
            }
            self.states[i] = LabelState::Idle;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: DecoderKind, smoothing: usize, min: f64) -> DecoderConfig {
        DecoderConfig {
            kind,
            background: Some("bg".into()),
            top_k: 2,
            smoothing,
            enter: 0.6,
            exit: 0.4,
            min_duration_s: min,
        }
    }

    fn labels() -> Vec<String> {
        vec!["bg".into(), "a".into(), "b".into()]
    }

    /// Scores of window `window` spanning `t_start..t_end` with no skew or latency.
    fn scores(window: u64, t_start: Nanos, t_end: Nanos, output: &[f32]) -> WindowScores<'_> {
        WindowScores {
            window,
            span: TimeSpan::new(t_start, t_end),
            output,
            latency_ms: 0.0,
            skew_ns: None,
            audio_missing: 0,
        }
    }

    fn run(d: &mut Decoder, seq: &[[f32; 3]]) -> Vec<Event> {
        let mut events = Vec::new();
        for (i, l) in seq.iter().enumerate() {
            let t = Nanos::SECOND / 10 * i as i64;
            let s = WindowScores {
                latency_ms: 1.0,
                ..scores(i as u64, t, t + Nanos::SECOND / 10, l)
            };
            d.push(&s, &mut events).expect("decoded");
        }
        events
    }

    #[test]
    fn softmax_top_k_sorted_and_normalised() {
        let mut d = Decoder::new(&cfg(DecoderKind::Softmax, 1, 0.0), &labels());
        let mut ev = Vec::new();
        let s = WindowScores {
            skew_ns: Some(Nanos::MILLISECOND),
            ..scores(
                0,
                Nanos::from_nanos(0),
                Nanos::from_nanos(1),
                &[0.0, 2.0, 1.0],
            )
        };
        let p = d.push(&s, &mut ev).expect("decoded");
        assert_eq!(p.top.len(), 2);
        assert_eq!(p.top[0].label, "a");
        assert_eq!(p.top[1].label, "b");
        let sum: f32 = d.smoothed().iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
        assert_eq!(p.skew_ms, Some(1.0));
    }

    #[test]
    fn hysteresis_gives_one_onset_and_one_offset() {
        let mut d = Decoder::new(&cfg(DecoderKind::Sigmoid, 1, 0.0), &labels());
        let hi = 3.0; // sigmoid 0.95
        let mid = 0.0; // 0.5: between exit and enter
        let lo = -3.0;
        let ev = run(
            &mut d,
            &[
                [0., lo, lo],
                [0., hi, lo],
                [0., mid, lo],
                [0., hi, lo],
                [0., mid, lo],
                [0., lo, lo],
            ],
        );
        let kinds: Vec<_> = ev.iter().map(|e| (e.kind, e.label.as_str())).collect();
        assert_eq!(
            kinds,
            vec![(EventKind::Onset, "a"), (EventKind::Offset, "a")]
        );
        assert!((ev[0].time_s - 0.15).abs() < 1e-9);
        assert!((ev[1].duration_s.unwrap() - 0.4).abs() < 1e-9);
    }

    #[test]
    fn min_duration_suppresses_blips_and_background_is_silent() {
        let mut d = Decoder::new(&cfg(DecoderKind::Sigmoid, 1, 0.25), &labels());
        let ev = run(
            &mut d,
            &[
                [5., 5., -5.],
                [5., -5., -5.],
                [5., -5., 5.],
                [5., -5., 5.],
                [5., -5., 5.],
                [5., -5., 5.],
            ],
        );
        let kinds: Vec<_> = ev.iter().map(|e| (e.kind, e.label.as_str())).collect();
        assert_eq!(kinds, vec![(EventKind::Onset, "b")]);
        assert!(
            (ev[0].time_s - 0.25).abs() < 1e-9,
            "onset is back-dated to the first crossing"
        );
        let mut end = Vec::new();
        d.finish(Nanos::SECOND, &mut end);
        assert_eq!(end.len(), 1);
        assert_eq!(end[0].kind, EventKind::Offset);
    }

    #[test]
    fn smoothing_averages_windows() {
        let mut d = Decoder::new(&cfg(DecoderKind::Sigmoid, 2, 0.0), &labels());
        let mut ev = Vec::new();
        d.push(
            &scores(
                0,
                Nanos::from_nanos(0),
                Nanos::from_nanos(1),
                &[0.0, 100.0, -100.0],
            ),
            &mut ev,
        )
        .expect("decoded");
        d.push(
            &scores(
                1,
                Nanos::from_nanos(1),
                Nanos::from_nanos(2),
                &[0.0, -100.0, -100.0],
            ),
            &mut ev,
        )
        .expect("decoded");
        assert!((d.smoothed()[1] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn nan_logits_do_not_panic() {
        let mut d = Decoder::new(&cfg(DecoderKind::Softmax, 3, 0.0), &labels());
        let mut ev = Vec::new();
        let p = d
            .push(
                &scores(
                    0,
                    Nanos::from_nanos(0),
                    Nanos::from_nanos(1),
                    &[f32::NAN, f32::INFINITY, 1.0],
                ),
                &mut ev,
            )
            .expect("decoded");
        assert_eq!(p.top.len(), 2);
    }
}
