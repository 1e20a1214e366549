//! The ROS 2 messages of `avaction run --ros2`, from the Rust API, for a robot that has
//! a ROS 2 node of its own (rclrs, r2r, rclcpp through FFI) and wants to publish them
//! there: a [`Sink`] gets the run's labels and clock when it starts, and each output;
//! [`Messages`] turns them into `vision_msgs/Classification`, `vision_msgs/LabelInfo`,
//! event JSON and `diagnostic_msgs/DiagnosticArray`, as plain Rust structs
//! (`avaction::ros2::msg`). Here they are printed as JSON where a node would publish
//! them. Needs no ROS install and no `ros2` feature.
//!
//! `cargo run --example ros2_messages [-- --video FILE|camera|test:ball --seconds 5]`

use avaction::deliver::{Output, Record, RunInfo, Sink, SinkStats};
use avaction::ros2::Messages;
use avaction::{AudioSource, Runtime, VideoSource};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where an integrator's node would publish; this one prints. The messages of the run
/// are shared with the main loop, which publishes the diagnostics.
struct MyNode {
    messages: Arc<Mutex<Option<Arc<Messages>>>>,
    sent: u64,
}

impl MyNode {
    fn publish(&mut self, topic: &str, msg: impl serde::Serialize) {
        self.sent += 1;
        println!(
            "{topic}: {}",
            serde_json::to_string(&msg).unwrap_or_default()
        );
    }
}

impl Sink for MyNode {
    fn name(&self) -> String {
        "my-node".into()
    }

    fn start(&mut self, run: &RunInfo) {
        // The stamps are capture times: the run's start in Unix time plus each
        // output's time on the runtime timeline.
        let messages = Arc::new(Messages::new(run, "camera", "/my_robot/avaction"));
        self.publish("~/label_info (latched)", messages.label_info());
        *self.messages.lock().unwrap_or_else(|p| p.into_inner()) = Some(messages);
    }

    fn deliver(&mut self, record: &Record) -> avaction::Result<()> {
        let Some(m) = self.messages.lock().ok().and_then(|m| m.clone()) else {
            return Ok(());
        };
        match record.output {
            Output::Prediction(p) => self.publish("~/classification", m.classification(p)),
            Output::Event(e) => self.publish("~/events", m.event(e)),
            _ => {}
        }
        Ok(())
    }

    fn close(&mut self, _within: Duration) {}

    fn stats(&self) -> SinkStats {
        SinkStats {
            name: self.name(),
            delivered: self.sent,
            connected: true,
            ..SinkStats::default()
        }
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> avaction::Result<()> {
    let video = arg("--video").unwrap_or_else(|| "test:ball".into());
    let seconds: f64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let messages = Arc::new(Mutex::new(None));
    let mut runtime = Runtime::builder()
        .model("cavnet-ov-small")
        .video(VideoSource::parse(&video))
        .audio(AudioSource::None)
        .sink(Box::new(MyNode {
            messages: messages.clone(),
            sent: 0,
        }))
        .build()?;
    // Diagnostics: once a second from the runtime's health and stats.
    let observer = runtime.observer();
    let started = Instant::now();
    let mut next = 1.0;
    while started.elapsed().as_secs_f64() < seconds {
        std::thread::sleep(Duration::from_millis(50));
        while runtime.recv_timeout(Duration::ZERO).is_ok() {}
        let m = messages.lock().ok().and_then(|m| m.clone());
        if let Some(m) = m.filter(|_| started.elapsed().as_secs_f64() >= next) {
            next += 1.0;
            let array = m.diagnostics(&observer.health(), &observer.stats(), m.now_s());
            println!(
                "/diagnostics: {}",
                serde_json::to_string(&array).unwrap_or_default()
            );
        }
    }
    runtime.stop();
    Ok(())
}
