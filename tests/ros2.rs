//! ROS 2 output (`avaction run --ros2`, feature `ros2`) read by independent DDS
//! participants on this machine, while avaction plays the synthetic scene at real time:
//!
//! - Eclipse Cyclone DDS through its Python binding (`tests/tools/dds_listener.py`, in
//!   the venv `scripts/setup-dds.sh` makes), with IDL types written to match the ROS 2
//!   interfaces: classifications whose stamps are the windows' ends as the runtime
//!   reported them (`end_s`, to within 1 ms once the run's start is known), class ids
//!   that map through the label info to the labels the runtime printed, events as JSON,
//!   diagnostics at 1 Hz; a second listener joins late and still gets the label info.
//! - `ros2-client` itself, as a ROS 2 node would subscribe: a round trip in Rust.

mod common;

#[cfg(not(feature = "ros2"))]
#[test]
fn ros2_output() {
    eprintln!("SKIPPED: built without the ros2 feature (it is on by default)");
}

#[cfg(feature = "ros2")]
mod with_ros2 {
    use super::common;
    use avaction::ros2::msg::{Classification, DiagnosticArray, LabelInfo};
    use ros2_client::qos::{Durability, History, Reliability, WhenFull};
    use ros2_client::{Context, MessageTypeName, Name, NodeName, NodeOptions, QosProfile};
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    const SCENE_S: u32 = 16;

    /// avaction on the scene at real time as ROS 2 node `/NS/avaction`.
    fn start(scene: &Path, namespace: &str) -> common::Running {
        common::Running::start(
            &[
                "run",
                "--model",
                "cavnet-small",
                "--video",
                scene.to_str().unwrap(),
                "--realtime",
                "--json",
                "--stats",
                &format!("--ros2={namespace}"),
                "--ros2-frame-id",
                "scene_camera",
            ],
            |_| {},
        )
    }

    fn printed(lines: &[String], kind: &str) -> Vec<serde_json::Value> {
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["type"] == kind)
            .collect()
    }

    fn stamp_s(v: &serde_json::Value) -> f64 {
        v["sec"].as_f64().unwrap() + v["nanosec"].as_f64().unwrap() * 1e-9
    }

    /// Every classification's stamp is the run's start plus the `end_s` the runtime
    /// printed for the same window (the start found from the first pair): to within
    /// 1 ms for all. Returns how many were matched.
    fn check_stamps(
        stamps_and_tops: &[(f64, Vec<String>)],
        predictions: &[serde_json::Value],
    ) -> usize {
        // Pair each classification with the printed prediction of the same top-k whose
        // end is consistent with one common start.
        let ends: Vec<(f64, Vec<String>)> = predictions
            .iter()
            .map(|p| {
                let top = p["top"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["label"].as_str().unwrap().to_string())
                    .collect();
                (p["end_s"].as_f64().unwrap(), top)
            })
            .collect();
        let mut best = (0usize, 0.0);
        for (stamp, top) in stamps_and_tops.iter().take(5) {
            for (end, ptop) in &ends {
                if ptop != top {
                    continue;
                }
                let origin = stamp - end;
                let matched = stamps_and_tops
                    .iter()
                    .filter(|(s, t)| {
                        ends.iter()
                            .any(|(e, pt)| pt == t && (s - origin - e).abs() < 0.001)
                    })
                    .count();
                if matched > best.0 {
                    best = (matched, origin);
                }
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            (now - best.1).abs() < 120.0,
            "the stamps' origin {} is not this run's start (now {now})",
            best.1
        );
        best.0
    }

    #[test]
    fn an_independent_dds_participant_decodes_every_topic() {
        let python = common::repo(".venv-dds/bin/python");
        if !python.exists() {
            eprintln!("SKIPPED: .venv-dds is missing (make dds, or scripts/setup-dds.sh)");
            return;
        }
        let dir = common::temp_dir("ros2-dds");
        let scene = common::scene(&dir, SCENE_S);
        let namespace = format!("/t{}", std::process::id());
        let node = format!("{namespace}/avaction");
        let listen = |late: Option<u32>| {
            let mut c = Command::new(&python);
            c.arg(common::repo("tests/tools/dds_listener.py"))
                .arg(&node)
                .arg((SCENE_S + 8).to_string());
            if let Some(l) = late {
                c.args(["--late", &l.to_string()]);
            }
            c.stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("the DDS listener starts")
        };
        let mut early = listen(None);
        let mut late = listen(Some(6));
        // Start publishing once the early listener's readers exist.
        let mut early_out = BufReader::new(early.stdout.take().unwrap());
        let mut first = String::new();
        early_out.read_line(&mut first).unwrap();
        assert!(first.contains("ready"), "{first}");
        let run = start(&scene, &namespace);
        let early_lines = std::thread::spawn(move || {
            early_out
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        let late_out = late.stdout.take().unwrap();
        let late_lines = std::thread::spawn(move || {
            BufReader::new(late_out)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        let (code, lines, stderr) = run.finish(Duration::from_secs(120));
        assert_eq!(code, Some(0), "{stderr}");
        for listener in [&mut early, &mut late] {
            let status = listener.wait().expect("the listener ends");
            assert!(status.success(), "the DDS listener failed: {status}");
        }
        let received: Vec<serde_json::Value> = early_lines
            .join()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let on = |topic: &str| -> Vec<&serde_json::Value> {
            received.iter().filter(|r| r["topic"] == topic).collect()
        };

        // The label info: every printed label has an id.
        let info = on("label_info");
        // (a reliable, latched sample may reach a reader twice: live and as history)
        assert!(!info.is_empty(), "no label info");
        assert!(
            info.iter().all(|i| i["msg"] == info[0]["msg"]),
            "one label info: {info:?}"
        );
        let class_map: std::collections::HashMap<String, String> = info[0]["msg"]["class_map"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["class_id"].as_u64().unwrap().to_string(),
                    c["class_name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert!(class_map.len() >= 3, "{class_map:?}");

        // Classifications: ids map to the printed labels; stamps are the windows' ends.
        let predictions = printed(&lines, "prediction");
        let classifications = on("classification");
        assert!(
            classifications.len() * 10 >= predictions.len() * 9,
            "{} classifications for {} predictions",
            classifications.len(),
            predictions.len()
        );
        let stamped: Vec<(f64, Vec<String>)> = classifications
            .iter()
            .map(|c| {
                let m = &c["msg"];
                assert_eq!(m["header"]["frame_id"], "scene_camera");
                let top = m["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        let id = r["class_id"].as_str().unwrap();
                        class_map
                            .get(id)
                            .unwrap_or_else(|| panic!("class id {id} not in the label info"))
                            .clone()
                    })
                    .collect();
                (stamp_s(&m["header"]["stamp"]), top)
            })
            .collect();
        let matched = check_stamps(&stamped, &predictions);
        assert_eq!(
            matched,
            stamped.len(),
            "every classification's stamp is its window's end (to 1 ms)"
        );

        // Events: the printed ones, as JSON with a stamp.
        let events: Vec<serde_json::Value> = on("events")
            .iter()
            .map(|e| serde_json::from_str(e["msg"]["data"].as_str().unwrap()).unwrap())
            .collect();
        let printed_events = printed(&lines, "event");
        assert!(!printed_events.is_empty(), "the scene has events");
        assert_eq!(events.len(), printed_events.len(), "{events:?}");
        for (got, want) in events.iter().zip(&printed_events) {
            assert_eq!(got["label"], want["label"]);
            assert_eq!(got["kind"], want["kind"]);
            assert!(got["stamp"]["sec"].as_i64().unwrap() > 1_600_000_000);
        }

        // Diagnostics at 1 Hz, the runtime's status first, then the video source.
        // (/diagnostics is shared by every node: keep this run's)
        let diagnostics: Vec<&serde_json::Value> = on("diagnostics")
            .into_iter()
            .filter(|d| d["msg"]["status"][0]["hardware_id"] == node.as_str())
            .collect();
        let times: Vec<f64> = diagnostics
            .iter()
            .map(|d| stamp_s(&d["msg"]["header"]["stamp"]))
            .collect();
        assert!(
            times.len() as u32 >= SCENE_S - 3,
            "{} diagnostics in a {SCENE_S} s run",
            times.len()
        );
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!((0.9..=1.1).contains(&gap), "diagnostics {gap:.3} s apart");
        }
        let status = &diagnostics[2]["msg"]["status"];
        assert_eq!(status[0]["name"], "avaction: runtime");
        assert!(status[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .any(|kv| kv["key"] == "frames_per_s"));
        assert!(status.as_array().unwrap().len() >= 2, "{status}");

        // A listener that joined 6 s late still got the label info.
        let late: Vec<serde_json::Value> = late_lines
            .join()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert!(
            late.iter().any(|r| r["topic"] == "label_info"),
            "the late joiner got no label info"
        );
        eprintln!(
            "cyclonedds: {} classifications ({} predictions printed), {} events, {} diagnostics, label info early and late",
            classifications.len(),
            predictions.len(),
            events.len(),
            diagnostics.len()
        );
    }

    #[test]
    fn a_ros2_client_subscriber_gets_the_same_messages() {
        let dir = common::temp_dir("ros2-rust");
        let scene = common::scene(&dir, 8);
        let namespace = format!("/r{}", std::process::id());
        let context = Context::new().expect("a DDS participant");
        let mut node = context
            .new_node(
                NodeName::new("/", &format!("listener{}", std::process::id())).unwrap(),
                NodeOptions::new().enable_rosout(false),
            )
            .expect("a node");
        let reliable = QosProfile::subscription_default()
            .reliability(Reliability::Reliable {
                when_full: WhenFull::DEFAULT,
            })
            .history(History::KeepLast { depth: 100 });
        let topic = |base: &str, kind: (&str, &str), qos: &QosProfile| {
            node.create_topic(
                &Name::new(&format!("{namespace}/avaction"), base).unwrap(),
                MessageTypeName::new(kind.0, kind.1),
                qos,
            )
            .unwrap()
        };
        let classification_topic = topic(
            "classification",
            ("vision_msgs", "Classification"),
            &reliable,
        );
        let latched = reliable
            .clone()
            .durability(Durability::TransientLocal)
            .history(History::KeepLast { depth: 1 });
        let info_topic = topic("label_info", ("vision_msgs", "LabelInfo"), &latched);
        let diagnostics_topic = node
            .create_topic(
                &Name::new("/", "diagnostics").unwrap(),
                MessageTypeName::new("diagnostic_msgs", "DiagnosticArray"),
                &reliable,
            )
            .unwrap();
        let classifications = node
            .create_subscription::<Classification>(&classification_topic, None)
            .unwrap();
        let infos = node
            .create_subscription::<LabelInfo>(&info_topic, None)
            .unwrap();
        let diagnostics = node
            .create_subscription::<DiagnosticArray>(&diagnostics_topic, None)
            .unwrap();

        let run = start(&scene, &namespace);
        let mut got_classifications = Vec::new();
        let mut got_info = None;
        let mut got_diagnostics = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(38);
        while Instant::now() < deadline {
            while let Ok(Some((c, _))) = classifications.take() {
                got_classifications.push(c);
            }
            while let Ok(Some((i, _))) = infos.take() {
                got_info = Some(i);
            }
            while let Ok(Some((d, _))) = diagnostics.take() {
                if d.status
                    .first()
                    .is_some_and(|s| s.hardware_id.starts_with(&namespace))
                {
                    got_diagnostics.push(d);
                }
            }
            if got_classifications.len() > 40 && got_info.is_some() && got_diagnostics.len() >= 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (code, lines, stderr) = run.finish(Duration::from_secs(120));
        assert_eq!(code, Some(0), "{stderr}");
        let info = got_info.expect("the label info");
        assert!(
            got_classifications.len() > 40,
            "{} classifications",
            got_classifications.len()
        );
        let predictions = printed(&lines, "prediction");
        let stamped: Vec<(f64, Vec<String>)> = got_classifications
            .iter()
            .map(|c| {
                let top = c
                    .results
                    .iter()
                    .map(|r| {
                        info.class_map
                            .iter()
                            .find(|v| v.class_id.to_string() == r.class_id)
                            .map(|v| v.class_name.clone())
                            .expect("a known class id")
                    })
                    .collect();
                (c.header.stamp.as_unix_secs(), top)
            })
            .collect();
        assert_eq!(check_stamps(&stamped, &predictions), stamped.len());
        assert!(got_diagnostics.len() >= 3);
        eprintln!(
            "ros2-client: {} classifications, {} classes, {} diagnostics",
            got_classifications.len(),
            info.class_map.len(),
            got_diagnostics.len()
        );
    }
}
