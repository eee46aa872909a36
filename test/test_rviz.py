"""RViz (issue #17 item 4): ``config/pcm_l2l.rviz`` shows what the nodes publish, and the sim's ``/robot_description``
reaches a late subscriber (transient local) as the URDF. The controller's ``~/path_markers`` are tested with the
action (test/test_controller_action.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pcm_l2l_ros.arm.urdf import default_urdf_path, load_chain

REPO = Path(__file__).resolve().parent.parent
RVIZ = REPO / "config" / "pcm_l2l.rviz"


def _display(cfg: dict, cls: str) -> dict:
    found = [d for d in cfg["Visualization Manager"]["Displays"] if d["Class"] == f"rviz_default_plugins/{cls}"]
    assert len(found) == 1, f"{cls}: {len(found)} displays"
    return found[0]


def test_rviz_config_matches_the_nodes():
    from pcm_l2l_ros.nodes import controller_node, sim_node

    cfg = yaml.safe_load(RVIZ.read_text())
    assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == load_chain(None).root == "base"
    robot = _display(cfg, "RobotModel")
    assert robot["Enabled"] and robot["Description Source"] == "Topic"
    assert robot["Description Topic"]["Value"] == sim_node.ROBOT_DESCRIPTION_TOPIC
    assert robot["Description Topic"]["Durability Policy"] == "Transient Local"
    markers = _display(cfg, "MarkerArray")
    assert markers["Enabled"] and markers["Topic"]["Value"] == "/controller/" + "path_markers"
    assert markers["Topic"]["Durability Policy"] == "Transient Local"  # the controller publishes latched
    assert controller_node.MARKER_QOS.durability.name == "TRANSIENT_LOCAL"
    assert set(markers["Namespaces"]) == {"target", "executed"}
    assert "rviz" in (REPO / "setup.py").read_text()  # installed with the package's config


def test_robot_description_reaches_a_late_subscriber(no_shm_leak, node_process, ros_node, tmp_path):
    pytest.importorskip("rclpy")
    from conftest import spin_until
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    node, ex = ros_node
    sim = node_process("pcm_l2l_ros.nodes.sim_node")
    states: list[JointState] = []
    node.create_subscription(JointState, "/joint_states", states.append, 10)
    assert spin_until(ex, lambda: len(states) > 10, 90.0), sim.output()  # the sim is up and published it long ago
    got: list[String] = []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(String, "/robot_description", got.append, latched)
    assert spin_until(ex, lambda: bool(got), 10.0), "no /robot_description for a late transient-local subscriber"
    spin_until(ex, lambda: False, 0.3)
    assert len(got) == 1  # published once
    assert got[0].data == default_urdf_path().read_text()
    urdf = tmp_path / "received.urdf"
    urdf.write_text(got[0].data)
    chain = load_chain(urdf)
    assert chain.root == "base" and chain.movable == tuple(states[-1].name)
