"""Property-based fuzzing of the two learning services over real DDS: >= 1,000 malformed requests each.

The nodes run in their own processes; every answer must be a refusal with a reason (or, for a request that
happens to be valid, a success) with only finite numbers in it, and the nodes must still serve a valid
request at the end (zero crashes).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from builtin_interfaces.msg import Duration  # noqa: E402
from conftest import call_service, spin_until  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pcm_l2l_interfaces.srv import FewShotClassify, LearnTrajectory  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

N_EXAMPLES = int(os.environ.get("PCM_L2L_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.sampled_from([0.0, -0.0, 1e-300, 1e300, float("nan"), float("inf"), -float("inf")]))
names = st.one_of(st.sampled_from(["base_joint", "shoulder", "elbow", "pitch", "roll", "", "Base_Joint"]),
                  st.text(max_size=12))


@st.composite
def images(draw):
    encoding = draw(st.sampled_from(["mono8", "mono16", "32FC1", "rgb8", "bgr8", "yuv422", "", "8UC3"]))
    h = draw(st.sampled_from([0, 1, 7, 8, 28, 105, 2000]))
    w = draw(st.sampled_from([0, 1, 8, 28, 105, 4096]))
    bpp = {"mono8": 1, "mono16": 2, "32FC1": 4, "rgb8": 3, "bgr8": 3}.get(encoding, 2)
    step = draw(st.one_of(st.just(w * bpp), st.integers(0, 400)))
    n = draw(st.one_of(st.just(step * h), st.integers(0, 3000)))
    if n > 20_000:  # keep the messages small; the size check is what is exercised
        n = draw(st.integers(0, 20_000))
    fill = draw(st.sampled_from([0, 255, 127]))
    data = bytes([fill]) * n
    if encoding == "32FC1" and n >= 4 and draw(st.booleans()):
        with np.errstate(over="ignore"):  # floats beyond float32 become inf on purpose (malformed input)
            data = np.full(n // 4, draw(floats), dtype=np.float32).tobytes()
    return Image(height=h, width=w, encoding=encoding, is_bigendian=draw(st.integers(0, 1)), step=step, data=data)


@st.composite
def classify_requests(draw):
    support = draw(st.lists(images(), max_size=6))
    labels = draw(st.one_of(st.lists(st.integers(-3, 25), max_size=8),
                            st.just(list(range(len(support))))))
    return FewShotClassify.Request(
        support_images=support, support_labels=labels, query_images=draw(st.lists(images(), max_size=3)),
        inner_steps=draw(st.integers(-5, 100_000)), drift_time_s=draw(floats))


@st.composite
def learn_requests(draw):
    jn = draw(st.lists(names, max_size=3))
    pts = []
    for _ in range(draw(st.integers(0, 6))):
        t = draw(st.floats(-1.0, 10.0, allow_nan=False))
        sec = int(math.floor(t))
        pts.append(JointTrajectoryPoint(positions=draw(st.lists(floats, max_size=3)),
                                        time_from_start=Duration(sec=sec, nanosec=int((t - sec) * 1e9) % 10**9)))
    return LearnTrajectory.Request(target=JointTrajectory(joint_names=jn, points=pts),
                                   quantize_update=draw(st.booleans()))


def _finite(*values) -> bool:
    return all(math.isfinite(float(v)) for v in values)


@pytest.fixture
def nodes(no_shm_leak, node_process, ros_node):
    vision = node_process("pcm_l2l_ros.nodes.vision_node")
    ctrl = node_process("pcm_l2l_ros.nodes.controller_node")
    node, ex = ros_node
    classify = node.create_client(FewShotClassify, "/pcm_l2l/classify")
    learn = node.create_client(LearnTrajectory, "/controller/learn_trajectory")
    assert spin_until(ex, classify.service_is_ready, 90.0), vision.output()
    assert spin_until(ex, learn.service_is_ready, 90.0), ctrl.output()
    return vision, ctrl, ex, classify, learn


def check_classify(res) -> bool:
    """Finite numbers; a refusal carries a reason and no result. Returns True if refused."""
    assert _finite(res.adapt_time_s, res.total_time_s, *res.probabilities)
    if res.success:
        assert len(res.probabilities) > 0 and all(0.0 <= p <= 1.0 for p in res.probabilities)
        return False
    assert res.message and not res.labels and not res.probabilities
    return True


def check_learn(res) -> bool:
    assert _finite(res.loss_before, res.loss_after, res.update_time_s)
    assert res.success or res.message
    return not res.success


def test_fuzz_classify_and_learn(nodes):
    vision, ctrl, ex, classify, learn = nodes
    counts = {"classify": 0, "learn": 0, "refused": 0}

    def fuzzer(name, client, strategy, check):
        @FUZZ
        @given(req=strategy)
        def fuzz(req):
            res = call_service(ex, client, req, 30.0)
            assert res is not None, "no answer (node dead?)"
            counts[name] += 1
            counts["refused"] += check(res)
        return fuzz

    fuzz_classify = fuzzer("classify", classify, classify_requests(), check_classify)
    fuzz_learn = fuzzer("learn", learn, learn_requests(), check_learn)
    fuzz_classify()
    fuzz_learn()
    assert counts["classify"] >= N_EXAMPLES and counts["learn"] >= N_EXAMPLES, counts
    assert vision.alive() and ctrl.alive()
    # still serving valid requests
    from test_vision_node import _request

    from pcm_l2l_ros.demo import unseen_target_msg

    res = call_service(ex, classify, _request(3)[0], 60.0)
    assert res is not None and res.success, res and res.message
    res = call_service(ex, learn, LearnTrajectory.Request(target=unseen_target_msg(11), quantize_update=True), 60.0)
    assert res is not None and res.success, res and res.message
    print(f"fuzz: {counts['classify']} classify + {counts['learn']} learn requests, {counts['refused']} refused, "
          "0 crashes, 0 non-finite outputs")
