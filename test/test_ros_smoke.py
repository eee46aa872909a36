"""Cross-process ROS 2 smoke test: a FewShotClassify request/response and a JointState stream between
two processes over real DDS (own ROS_DOMAIN_ID, localhost-only discovery); clean SIGTERM exit, no
process and no fastdds shared-memory file left behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
FewShotClassify = pytest.importorskip("pcm_l2l_interfaces.srv").FewShotClassify

from conftest import call_service, spin_until  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402


def _image(value: int, size: int = 8) -> Image:
    img = Image()
    img.height = img.width = size
    img.encoding = "mono8"
    img.step = size
    img.data = bytes(np.full(size * size, value, np.uint8))
    return img


def test_classify_and_joint_states_across_processes(no_shm_leak, node_process, ros_node):
    server = node_process(str(Path(__file__).parent / "ros_helpers" / "smoke_server.py"))
    node, ex = ros_node
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"

    states: list[JointState] = []
    node.create_subscription(JointState, "/joint_states", states.append, 10)
    client = node.create_client(FewShotClassify, "/pcm_l2l/classify")
    assert spin_until(ex, client.service_is_ready, 20.0), f"service never appeared:\n{server.output()}"

    req = FewShotClassify.Request()
    req.support_images = [_image(v) for v in (10, 12, 200, 202, 100, 98)]
    req.support_labels = [0, 0, 1, 1, 2, 2]
    req.query_images = [_image(201), _image(11), _image(99)]
    res = call_service(ex, client, req)
    assert res is not None, "no answer from the server process"
    assert res.success and list(res.labels) == [1, 0, 2]
    probs = np.asarray(res.probabilities).reshape(3, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)

    bad = FewShotClassify.Request()
    res_bad = call_service(ex, client, bad)
    assert res_bad is not None and not res_bad.success and res_bad.message

    assert spin_until(ex, lambda: len(states) >= 20, 10.0), "JointState stream did not arrive"
    seqs = [round(s.position[0] * 1000) for s in states]
    assert seqs == sorted(seqs) and states[-1].name == ["base_joint", "shoulder"]

    pid = server.pid
    assert server.stop(signal.SIGTERM) == 0, server.output()
    assert not Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_node_exits_zero_on_signal(no_shm_leak, node_process, ros_node, sig):
    server = node_process(str(Path(__file__).parent / "ros_helpers" / "smoke_server.py"))
    node, ex = ros_node
    client = node.create_client(FewShotClassify, "/pcm_l2l/classify")
    assert spin_until(ex, client.service_is_ready, 20.0), server.output()  # rclpy is up in the child
    assert server.stop(sig) == 0, server.output()
    assert not server.killed
