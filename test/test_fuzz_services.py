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
from conftest import bring_up, call_service, spin_until  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pcm_l2l_interfaces.srv import FewShotClassify, LearnTrajectory  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

N_EXAMPLES = int(os.environ.get("PCM_L2L_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

INT32 = (-(2**31), 2**31 - 1)
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.sampled_from([0.0, -0.0, 1e-300, 1e300, 5e-324, -5e-324, 2.2250738585072014e-308,
                                    float("nan"), float("inf"), -float("inf")]))
int32s = st.one_of(st.integers(*INT32), st.sampled_from([*INT32, INT32[0] + 1, INT32[1] - 1, 0, 1, -1]))
names = st.one_of(st.sampled_from(["base_joint", "shoulder", "elbow", "pitch", "roll", "", "Base_Joint"]),
                  st.text(max_size=12))


@st.composite
def images(draw):
    encoding = draw(st.sampled_from(["mono8", "mono16", "32FC1", "rgb8", "bgr8", "yuv422", "", "8UC3"]))
    h = draw(st.sampled_from([0, 1, 7, 8, 28, 105, 1024, 1025, 2000, 2**31 - 1]))
    w = draw(st.sampled_from([0, 1, 8, 28, 105, 1024, 4096]))
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
    labels = draw(st.one_of(st.lists(st.integers(-3, 25), max_size=8), st.lists(int32s, max_size=8),
                            st.just(list(range(len(support))))))
    return FewShotClassify.Request(
        support_images=support, support_labels=labels, query_images=draw(st.lists(images(), max_size=3)),
        inner_steps=draw(st.one_of(st.integers(-5, 100_000), int32s)), drift_time_s=draw(floats))


def classify_must_refuse(req) -> str | None:
    """Why ``req`` is invalid by the documented contract (FewShotClassify.srv), or None if it may be valid."""
    ns, nq, labels = len(req.support_images), len(req.query_images), list(req.support_labels)
    if ns == 0 or nq == 0 or len(labels) != ns:
        return "counts"
    if min(labels) < 0 or max(labels) >= 20:
        return "label range"
    if not 0 <= req.inner_steps <= 20:
        return "inner_steps"
    if not (math.isfinite(req.drift_time_s) and 0 <= req.drift_time_s <= 10 * 365.25 * 86400):
        return "drift"
    bpp = {"mono8": 1, "mono16": 2, "32FC1": 4, "rgb8": 3, "bgr8": 3}
    for im in (*req.support_images, *req.query_images):
        if im.encoding not in bpp or not (8 <= im.height <= 1024 and 8 <= im.width <= 1024):
            return "image header"
        if im.step < im.width * bpp[im.encoding] or len(im.data) != im.step * im.height:
            return "image data length"
    return None


@st.composite
def learn_requests(draw):
    jn = draw(st.one_of(st.lists(names, max_size=3), st.sampled_from([["base_joint", "shoulder"],
                                                                        ["shoulder", "base_joint"]])))
    pts = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            t = draw(st.floats(-1.0, 10.0, allow_nan=False))
            sec, nsec = int(math.floor(t)), int((t - math.floor(t)) * 1e9) % 10**9
        else:   # int32 extremes of the seconds, uint32 of the nanoseconds
            sec, nsec = draw(int32s), draw(st.sampled_from([0, 1, 999_999_999, 2**32 - 1]))
        pts.append(JointTrajectoryPoint(positions=draw(st.lists(floats, max_size=3)),
                                        time_from_start=Duration(sec=sec, nanosec=nsec)))
    return LearnTrajectory.Request(target=JointTrajectory(joint_names=jn, points=pts),
                                   quantize_update=draw(st.booleans()))


def learn_must_refuse(req) -> str | None:
    """Why a LearnTrajectory request is invalid by the contract (LearnTrajectory.srv), or None."""
    t = req.target
    if sorted(t.joint_names) != ["base_joint", "shoulder"]:
        return "joint names (missing, unknown or duplicated)"
    if len(t.points) < 2 or any(len(p.positions) != 2 for p in t.points):
        return "points"
    if not all(math.isfinite(v) for p in t.points for v in p.positions):
        return "non-finite position"
    times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in t.points]
    if any(b <= a for a, b in zip(times, times[1:], strict=False)) or times[0] < 0:
        return "non-monotonic times"
    if times[-1] > 2.49 + 1e-6:
        return "duration"
    return None


def _finite(*values) -> bool:
    return all(math.isfinite(float(v)) for v in values)


@pytest.fixture
def nodes(no_shm_leak, node_process, ros_node):
    vision = node_process("pcm_l2l_ros.nodes.vision_node")
    ctrl = node_process("pcm_l2l_ros.nodes.controller_node")
    node, ex = ros_node
    bring_up(ex, node, "vision", vision)   # managed nodes: configure + activate over DDS
    bring_up(ex, node, "controller", ctrl)
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

    must: dict[str, int] = {}

    def fuzzer(name, client, strategy, check, oracle=lambda r: None):
        @FUZZ
        @given(req=strategy)
        def fuzz(req):
            res = call_service(ex, client, req, 30.0)
            assert res is not None, "no answer (node dead?)"
            counts[name] += 1
            refused = check(res)
            counts["refused"] += refused
            why = oracle(req)
            if why is not None:   # invalid by the contract: it must be refused, whatever else it contains
                assert refused, f"{name}: accepted a request with bad {why}"
                must[why] = must.get(why, 0) + 1
        return fuzz

    fuzz_classify = fuzzer("classify", classify, classify_requests(), check_classify, classify_must_refuse)
    fuzz_learn = fuzzer("learn", learn, learn_requests(), check_learn, learn_must_refuse)
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
    print(f"fuzz: {counts['classify']} classify + {counts['learn']} learn requests, {counts['refused']} refused "
          f"(invalid by contract and refused: {dict(sorted(must.items()))}), 0 crashes, 0 non-finite outputs")
    assert sum(must.values()) >= N_EXAMPLES // 2, must      # most of the fuzz is provably invalid, and refused


# ------------------------------------------------------------------------------------------------ topics
JOINTS = ["base_joint", "shoulder", "elbow", "pitch", "roll"]
N_TOPIC = int(os.environ.get("PCM_L2L_FUZZ_TOPIC_MESSAGES", "200"))


@st.composite
def joint_states(draw):
    jn = draw(st.one_of(st.just(JOINTS), st.lists(names, max_size=7), st.just([*JOINTS, "base_joint"])))
    pos = draw(st.one_of(st.just([0.0] * len(jn)), st.lists(floats, min_size=len(jn), max_size=len(jn)),
                         st.lists(floats, max_size=7)))
    msg = JointState(name=jn, position=pos)
    msg.header.stamp.sec = draw(st.one_of(st.just(0), int32s))
    msg.header.stamp.nanosec = draw(st.sampled_from([0, 1, 999_999_999]))
    return msg


@st.composite
def velocity_commands(draw):
    return Float64MultiArray(data=draw(st.one_of(st.lists(floats, max_size=7),
                                                 st.lists(st.floats(-0.05, 0.05), min_size=5, max_size=5))))


@st.composite
def trajectories(draw):
    jn = draw(st.one_of(st.lists(names, max_size=3), st.just(["base_joint", "shoulder"])))
    pts = []
    for _ in range(draw(st.integers(0, 4))):
        sec = draw(st.one_of(st.integers(-1, 3), int32s))
        pts.append(JointTrajectoryPoint(positions=draw(st.lists(floats, max_size=3)),
                                        time_from_start=Duration(sec=sec, nanosec=draw(st.sampled_from(
                                            [0, 500_000_000, 2**32 - 1])))))
    return JointTrajectory(joint_names=jn, points=pts)


def velocity_must_reject(m) -> bool:
    return len(m.data) != 5 or not all(math.isfinite(v) for v in m.data)


def trajectory_must_reject(m) -> bool:
    if not m.points:
        return False                       # an empty trajectory is the stop command
    jn = list(m.joint_names)
    return (not jn or len(set(jn)) != len(jn) or any(n not in JOINTS for n in jn)
            or any(len(p.positions) != len(jn) or not all(math.isfinite(v) for v in p.positions) for p in m.points))


def test_fuzz_topics_into_the_controller_and_the_sim(no_shm_leak, node_process, ros_node):
    """Fuzzed /joint_states (duplicate/missing names, NaN/inf, zero and int32-extreme stamps) into the controller
    and fuzzed velocity commands and trajectories into the sim: every provably bad command is rejected
    (counted in the sim's log), both nodes live, and a learn + execute still works afterwards."""
    import re

    from std_srvs.srv import Trigger

    from pcm_l2l_ros.demo import unseen_target_msg

    sim = node_process("pcm_l2l_ros.nodes.sim_node")
    ctrl = node_process("pcm_l2l_ros.nodes.controller_node")
    node, ex = ros_node
    bring_up(ex, node, "controller", ctrl)   # a managed node: configure + activate over DDS
    learn = node.create_client(LearnTrajectory, "/controller/learn_trajectory")
    execute = node.create_client(Trigger, "/controller/execute")
    sim_reset = node.create_client(Trigger, "/sim/reset")
    pubs = {"js": node.create_publisher(JointState, "/joint_states", 10),
            "vel": node.create_publisher(Float64MultiArray, "/forward_velocity_controller/commands", 10),
            "traj": node.create_publisher(JointTrajectory, "/joint_trajectory_controller/joint_trajectory", 10)}
    for c in (learn, execute, sim_reset):
        assert spin_until(ex, c.service_is_ready, 90.0), ctrl.output() + sim.output()
    assert spin_until(ex, lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 30.0)
    sent = {"js": 0, "vel": 0, "traj": 0, "vel_bad": 0, "traj_bad": 0}

    def topic_fuzzer(key, strategy, must_reject=None):
        @settings(max_examples=N_TOPIC, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
        @given(msg=strategy)
        def fuzz(msg):
            pubs[key].publish(msg)
            sent[key] += 1
            if must_reject is not None and must_reject(msg):
                sent[key + "_bad"] += 1
            spin_until(ex, lambda: False, 0.01)    # paced: no message is lost to a full queue
        return fuzz

    topic_fuzzer("js", joint_states())()
    topic_fuzzer("vel", velocity_commands(), velocity_must_reject)()
    topic_fuzzer("traj", trajectories(), trajectory_must_reject)()
    n_bad = sent["vel_bad"] + sent["traj_bad"]

    def rejected() -> int:
        counts = [int(n) for n in re.findall(r"rejected so far: (\d+)", sim.output())]
        return max(counts, default=0)

    assert spin_until(ex, lambda: rejected() >= n_bad, 10.0), (rejected(), sent)
    assert sim.alive() and ctrl.alive()
    assert "/joint_states ignored" in ctrl.output()
    print(f"\ntopic fuzz: {sent['js']} /joint_states, {sent['vel']} velocity commands ({sent['vel_bad']} invalid), "
          f"{sent['traj']} trajectories ({sent['traj_bad']} provably invalid); the sim rejected {rejected()} "
          f"(>= {n_bad}); both nodes alive")
    # still working: the arm home, a learn and an execution
    assert call_service(ex, sim_reset, Trigger.Request(), 10.0).success
    spin_until(ex, lambda: False, 0.5)
    assert call_service(ex, learn, LearnTrajectory.Request(target=unseen_target_msg(11)), 60.0).success
    res = None
    for _ in range(50):                    # until the sim's fresh /joint_states reach the controller again
        res = call_service(ex, execute, Trigger.Request(), 10.0)
        if res.success:
            break
        spin_until(ex, lambda: False, 0.1)
    assert res is not None and res.success, res and res.message
