//! The ROS 2 node (feature `ros2`): a `ros2-client` context and node, the publishers of
//! the module's topics, the sink that feeds them and the 1 Hz diagnostics thread.

use super::msg::{Classification, DiagnosticArray, LabelInfo};
use super::{Messages, Ros2Options, TopicQos};
use crate::deliver::{Output, Record, RunInfo, Sink, SinkStats};
use crate::{err, Observer, Result};
use ros2_client::qos::{Durability, History, Reliability, WhenFull};
use ros2_client::{
    Context, ContextOptions, MessageTypeName, Name, Node, NodeName, NodeOptions, Publisher,
    QosProfile,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The ROS 2 profile of a topic's settings.
fn profile(qos: &TopicQos, durability: Durability) -> QosProfile {
    let reliability = if qos.reliable {
        // never wait on the deliverer's thread: a full window refuses (counted)
        Reliability::Reliable {
            when_full: WhenFull::Fail,
        }
    } else {
        Reliability::BestEffort
    };
    QosProfile::publisher_default()
        .reliability(reliability)
        .durability(durability)
        .history(History::KeepLast { depth: qos.depth })
}

/// What the sink and the diagnostics thread share.
struct Link {
    options: Ros2Options,
    node: Mutex<Node>,
    /// Set when the run starts (the sink's [`Sink::start`]), for the diagnostics.
    messages: Mutex<Option<Arc<Messages>>>,
    _context: Context,
}

/// A ROS 2 node publishing avaction's outputs; see the module docs.
pub struct Ros2 {
    link: Arc<Link>,
    fqn: String,
}

impl std::fmt::Debug for Ros2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ros2").field("node", &self.fqn).finish()
    }
}

fn dds_error(what: &str, e: impl std::fmt::Debug) -> crate::Error {
    err!(Io, "ros2: cannot create {what}: {e:?}")
}

impl Ros2 {
    /// Joins the DDS domain as node `options.namespace/options.node_name`.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for a bad namespace or name,
    /// [`Io`](crate::ErrorKind::Io) when DDS cannot start (no usable network
    /// interface, ports taken).
    pub fn new(options: Ros2Options) -> Result<Ros2> {
        let namespace = if options.namespace.starts_with('/') {
            options.namespace.clone()
        } else {
            format!("/{}", options.namespace)
        };
        let name = NodeName::new(&namespace, &options.node_name).map_err(|e| {
            err!(
                Config,
                "ros2: node {namespace:?} / {:?}: {e}",
                options.node_name
            )
        })?;
        let fqn = name.fully_qualified_name();
        let context = Context::with_options(ContextOptions::new().domain_id(options.domain_id))
            .map_err(|e| dds_error("the DDS participant", e))?;
        let node = context
            .new_node(name, NodeOptions::new().enable_rosout(false))
            .map_err(|e| dds_error("the node", e))?;
        log::info!("ros2: node {fqn} on DDS domain {}", options.domain_id);
        Ok(Ros2 {
            link: Arc::new(Link {
                options,
                node: Mutex::new(node),
                messages: Mutex::new(None),
                _context: context,
            }),
            fqn,
        })
    }

    /// The node's fully qualified name (`/avaction`, `/robot1/avaction`).
    pub fn node_name(&self) -> &str {
        &self.fqn
    }

    fn publisher<M: serde::Serialize>(
        &self,
        topic: &Name,
        kind: (&str, &str),
        qos: &QosProfile,
    ) -> Result<Publisher<M>> {
        let mut node = self.link.node.lock().unwrap_or_else(|p| p.into_inner());
        let topic = node
            .create_topic(topic, MessageTypeName::new(kind.0, kind.1), qos)
            .map_err(|e| dds_error(&format!("topic {topic}"), e))?;
        node.create_publisher(&topic, None)
            .map_err(|e| dds_error("a publisher", e))
    }

    fn private(&self, base: &str) -> Result<Name> {
        Name::new(&self.fqn, base).map_err(|e| err!(Config, "ros2: topic ~/{base}: {e}"))
    }

    /// The sink that publishes classifications, events and the label info; give it to
    /// [`RuntimeBuilder::sink`](crate::RuntimeBuilder::sink). Named `ros2:NODE`.
    ///
    /// # Errors
    /// As [`Ros2::new`], for the topics and publishers.
    pub fn sink(&self) -> Result<Box<dyn Sink>> {
        let o = &self.link.options;
        Ok(Box::new(Ros2Sink {
            link: self.link.clone(),
            name: format!("ros2:{}", self.fqn),
            classification: self.publisher(
                &self.private("classification")?,
                ("vision_msgs", "Classification"),
                &profile(&o.classification, Durability::Volatile),
            )?,
            events: self.publisher(
                &self.private("events")?,
                ("std_msgs", "String"),
                &profile(&o.events, Durability::Volatile),
            )?,
            label_info: self.publisher(
                &self.private("label_info")?,
                ("vision_msgs", "LabelInfo"),
                &profile(
                    &TopicQos {
                        reliable: true,
                        depth: 1,
                    },
                    Durability::TransientLocal,
                ),
            )?,
            messages: None,
            published: 0,
            refused: 0,
        }))
    }

    /// Publishes the runtime's health on `/diagnostics` once a second until the
    /// returned handle is dropped (from the run's start on: after the sink's first
    /// [`Sink::start`]).
    ///
    /// # Errors
    /// As [`Ros2::new`], for the topic and publisher.
    pub fn diagnostics(&self, observer: Observer) -> Result<Ros2Diagnostics> {
        let topic = Name::new("/", "diagnostics").map_err(|e| err!(Config, "ros2: {e}"))?;
        let publisher: Publisher<DiagnosticArray> = self.publisher(
            &topic,
            ("diagnostic_msgs", "DiagnosticArray"),
            &profile(&self.link.options.diagnostics, Durability::Volatile),
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (link, stop) = (self.link.clone(), stop.clone());
            std::thread::Builder::new()
                .name("avaction-ros2-diag".into())
                .spawn(move || {
                    let started = std::time::Instant::now();
                    let mut tick = 1u32;
                    while !stop.load(Ordering::Relaxed) {
                        let next = started + Duration::from_secs(1) * tick;
                        let now = std::time::Instant::now();
                        if next > now {
                            std::thread::sleep((next - now).min(Duration::from_millis(100)));
                            continue;
                        }
                        tick += 1;
                        let messages = link.messages.lock().ok().and_then(|m| m.clone());
                        let Some(messages) = messages else {
                            continue;
                        };
                        let now_s = messages.now_s();
                        let array =
                            messages.diagnostics(&observer.health(), &observer.stats(), now_s);
                        if let Err(e) = publisher.publish(array) {
                            log::debug!("ros2: diagnostics not sent: {e:?}");
                        }
                    }
                })
                .map_err(|e| err!(Io, "ros2: diagnostics thread").caused_by(e))?
        };
        Ok(Ros2Diagnostics {
            stop,
            thread: Some(thread),
        })
    }
}

/// The 1 Hz `/diagnostics` publisher; stops when dropped.
pub struct Ros2Diagnostics {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Ros2Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ros2Diagnostics").finish_non_exhaustive()
    }
}

impl Drop for Ros2Diagnostics {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Ros2Sink {
    link: Arc<Link>,
    name: String,
    classification: Publisher<Classification>,
    events: Publisher<String>,
    label_info: Publisher<LabelInfo>,
    /// The run's messages, from [`Sink::start`] on.
    messages: Option<Arc<Messages>>,
    published: u64,
    refused: u64,
}

impl Sink for Ros2Sink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn start(&mut self, run: &RunInfo) {
        let o = &self.link.options;
        let messages = Arc::new(Messages::new(run, &o.frame_id, &self.name["ros2:".len()..]));
        match self.label_info.publish(messages.label_info()) {
            Ok(()) => self.published += 1,
            Err(e) => {
                log::warn!("ros2: label info not sent: {e:?}");
                self.refused += 1;
            }
        }
        if let Ok(mut m) = self.link.messages.lock() {
            *m = Some(messages.clone());
        }
        self.messages = Some(messages);
    }

    fn deliver(&mut self, record: &Record) -> Result<()> {
        let Some(messages) = &self.messages else {
            return Ok(());
        };
        let sent = match record.output {
            Output::Prediction(p) => self
                .classification
                .publish(messages.classification(p))
                .map_err(|e| format!("{e:?}")),
            Output::Event(e) => self
                .events
                .publish(messages.event(e))
                .map_err(|e| format!("{e:?}")),
            _ => return Ok(()),
        };
        match sent {
            Ok(()) => {
                self.published += 1;
                Ok(())
            }
            Err(why) => {
                self.refused += 1;
                Err(err!(Io, "ros2: not sent: {why}"))
            }
        }
    }

    fn close(&mut self, _within: Duration) {}

    fn stats(&self) -> SinkStats {
        SinkStats {
            name: self.name.clone(),
            delivered: self.published,
            failed: self.refused,
            spooled: 0,
            spool_dropped: 0,
            connected: true,
        }
    }
}
