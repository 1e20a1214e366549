"""An independent DDS participant (Eclipse Cyclone DDS, PyPI `cyclonedds`) that reads
avaction's ROS 2 topics the way a ROS 2 node does: on the DDS names (`rt/…`) with the
ROS 2 type names (`vision_msgs::msg::dds_::Classification_`, …) and IDL types written
here to match the ROS 2 interfaces field for field. No ROS install, no avaction code.

    python tests/tools/dds_listener.py NODE SECONDS [--late SECONDS]

NODE is the node's fully qualified name (`/t123/avaction`). Prints one JSON object per
received sample on stdout: {"topic", "received" (Unix s), "msg"}. With --late the
readers are created only after that many seconds (a late joiner: the latched label
info must still arrive). Used by tests/ros2.rs.
"""

import json
import sys
import time
from dataclasses import asdict, dataclass

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import float32, float64, int32, sequence, uint8, uint16, uint32
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32
    nanosec: uint32


@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time
    frame_id: str


@dataclass
class ObjectHypothesis(IdlStruct, typename="vision_msgs::msg::dds_::ObjectHypothesis_"):
    class_id: str
    score: float64


@dataclass
class Classification(IdlStruct, typename="vision_msgs::msg::dds_::Classification_"):
    header: Header
    results: sequence[ObjectHypothesis]


@dataclass
class VisionClass(IdlStruct, typename="vision_msgs::msg::dds_::VisionClass_"):
    class_id: uint16
    class_name: str


@dataclass
class LabelInfo(IdlStruct, typename="vision_msgs::msg::dds_::LabelInfo_"):
    header: Header
    class_map: sequence[VisionClass]
    threshold: float32


@dataclass
class String(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str


@dataclass
class KeyValue(IdlStruct, typename="diagnostic_msgs::msg::dds_::KeyValue_"):
    key: str
    value: str


@dataclass
class DiagnosticStatus(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticStatus_"):
    level: uint8
    name: str
    message: str
    hardware_id: str
    values: sequence[KeyValue]


@dataclass
class DiagnosticArray(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticArray_"):
    header: Header
    status: sequence[DiagnosticStatus]


def main():
    node, seconds = sys.argv[1], float(sys.argv[2])
    late = float(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--late" else 0.0
    if late:
        time.sleep(late)
    dp = DomainParticipant(0)
    reliable = Qos(
        Policy.Reliability.Reliable(duration(milliseconds=100)),
        Policy.History.KeepLast(100),
    )
    latched = Qos(
        Policy.Reliability.Reliable(duration(milliseconds=100)),
        Policy.Durability.TransientLocal,
        Policy.History.KeepLast(1),
    )
    readers = {
        "classification": DataReader(dp, Topic(dp, f"rt{node}/classification", Classification), qos=reliable),
        "events": DataReader(dp, Topic(dp, f"rt{node}/events", String), qos=reliable),
        "label_info": DataReader(dp, Topic(dp, f"rt{node}/label_info", LabelInfo), qos=latched),
        "diagnostics": DataReader(dp, Topic(dp, "rt/diagnostics", DiagnosticArray), qos=reliable),
    }
    print(json.dumps({"topic": "ready", "received": time.time(), "msg": None}), flush=True)
    end = time.time() + seconds
    while time.time() < end:
        for topic, reader in readers.items():
            for sample in reader.take(N=100):
                if not isinstance(sample, IdlStruct):
                    continue  # a state change (the writer left), not data
                print(json.dumps({"topic": topic, "received": time.time(), "msg": asdict(sample)}), flush=True)
        time.sleep(0.02)


if __name__ == "__main__":
    main()
