"""Test-only node for the cross-process smoke test: a FewShotClassify server (nearest class mean over
raw pixels) and a JointState stream at 100 Hz. Run as a script: ``python test/ros_helpers/smoke_server.py``."""

from __future__ import annotations

import numpy as np
from pcm_l2l_interfaces.srv import FewShotClassify
from rclpy.node import Node
from sensor_msgs.msg import JointState

from pcm_l2l_ros.nodes.common import run_node


def _pixels(img) -> np.ndarray:
    return np.frombuffer(bytes(img.data), dtype=np.uint8).astype(np.float64)


class SmokeServer(Node):
    def __init__(self, **kwargs):
        super().__init__("smoke_server", **kwargs)
        self.create_service(FewShotClassify, "/pcm_l2l/classify", self._classify)
        self.pub = self.create_publisher(JointState, "/joint_states", 10)
        self.seq = 0
        self.create_timer(0.01, self._tick)

    def _classify(self, req, res):
        labels = np.asarray(req.support_labels)
        if len(req.support_images) == 0 or len(labels) != len(req.support_images):
            res.success, res.message = False, "support images and labels must be non-empty and of equal length"
            return res
        support = np.stack([_pixels(i) for i in req.support_images])
        ways = int(labels.max()) + 1
        means = np.stack([support[labels == k].mean(0) for k in range(ways)])
        d = np.stack([np.linalg.norm(means - _pixels(q), axis=1) for q in req.query_images])
        p = np.exp(-(d - d.min(1, keepdims=True)))
        p /= p.sum(1, keepdims=True)
        res.success = True
        res.labels = [int(k) for k in d.argmin(1)]
        res.probabilities = p.astype(np.float32).ravel().tolist()
        return res

    def _tick(self):
        self.seq += 1
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = ["base_joint", "shoulder"]
        msg.position = [0.001 * self.seq, -0.001 * self.seq]
        msg.velocity = [0.1, -0.1]
        self.pub.publish(msg)


if __name__ == "__main__":
    raise SystemExit(run_node(SmokeServer))
