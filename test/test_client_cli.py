"""``pcm-l2l classify / learn / execute`` (issue #17, item 7): thin ROS clients, each run in its own process against
the real nodes (own processes, this test's ROS domain, discovery on loopback): a folder of Omniglot PNGs is
classified, a CSV trajectory is learned in one update and executed on the simulated arm."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from conftest import REPO, bring_up, spin_until  # noqa: E402
from pcm_l2l_interfaces.srv import LearnTrajectory  # noqa: E402
from PIL import Image  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from pcm_l2l_ros.demo import unseen_target_msg  # noqa: E402
from pcm_l2l_ros.nodes.runner import node_env  # noqa: E402

STARTUP_S = 120.0


def pcm_l2l(*args: str, timeout: float = 180.0, spin=None) -> subprocess.CompletedProcess:
    """Run ``pcm-l2l ARGS`` in a process of its own (this test's ROS_DOMAIN_ID, LOCALHOST discovery); while it
    runs, ``spin()`` is called (the test's own subscriptions keep being served)."""
    env = node_env({**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    p = subprocess.Popen(
        [sys.executable, "-m", "pcm_l2l_ros.cli", *args],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    try:
        while p.poll() is None and time.monotonic() < deadline:
            if spin is not None:
                spin()
            else:
                time.sleep(0.05)
        out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def write_png(path: Path, ink: np.ndarray) -> None:
    """An image of ink in [0, 1] as an 8-bit grey PNG, dark ink on white paper (as the Omniglot scans)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(255 * (1.0 - ink)).astype(np.uint8), mode="L").save(path)


def omniglot_task(tmp_path: Path, ways=5, shots=5, queries=2, seed=7):
    """A few-shot task from the evaluation split (characters never seen in meta-training) as PNG folders:
    support/<class>/*.png and query/<class>/*.png."""
    from pcm_l2l_ros.vision.omniglot import load_split

    split = load_split("evaluation")  # images (n_chars, 20 drawers, 28, 28), ink = 1
    rng = np.random.default_rng(seed)
    chars = rng.choice(split.n_chars, size=ways, replace=False)
    names = []
    for c in chars:
        name = f"char{int(split.char_ids[c]):04d}"
        names.append(name)
        drawers = rng.choice(split.images.shape[1], size=shots + queries, replace=False)
        for k, d in enumerate(drawers):
            part = "support" if k < shots else "query"
            write_png(tmp_path / part / name / f"{name}_{k}.png", split.images[c, d])
    return tmp_path / "support", tmp_path / "query", sorted(names)


@pytest.fixture
def vision(vision_service):
    return vision_service[0]


def test_classify_png_folders(vision, tmp_path):
    support, query, names = omniglot_task(tmp_path)
    r = pcm_l2l("classify", "--support", str(support), "--query", str(query), "--json")
    assert r.returncode == 0, r.stderr + vision.output()[-2000:]
    out = json.loads(r.stdout)
    assert out["success"] and out["classes"] == names and out["support_images"] == 25
    assert len(out["queries"]) == 10
    for q in out["queries"]:
        assert q["label"] in names and sum(q["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert q["probability"] == max(q["probabilities"].values())
        assert q["true"] == Path(q["file"]).parent.name
    # chance is 20 %; the meta-trained CNN on the chip is in the high 90s on such tasks
    assert out["accuracy"] >= 0.8, out["queries"]
    assert out["devices_written"] > 0 and out["devices_total"] == 341_824

    # files with --labels (any names), queries as a file list; the text output names each file and its class
    files = sorted((support / names[0]).glob("*.png"))[:1] + sorted((support / names[1]).glob("*.png"))[:1]
    queries = [sorted((query / n).glob("*.png"))[0] for n in names[:2]]
    r = pcm_l2l("classify", "--support", *map(str, files), "--labels", "alpha", "beta", "--query", *map(str, queries))
    assert r.returncode == 0, r.stderr
    assert "2 classes (alpha, beta), 2 support images, 2 queries" in r.stdout
    for q in queries:
        assert str(q) in r.stdout

    # an image the node would refuse is reported with its file name, before anything is sent
    tiny = tmp_path / "tiny.png"
    write_png(tiny, np.zeros((4, 4)))
    r = pcm_l2l("classify", "--support", str(files[0]), str(tiny), "--labels", "a", "b", "--query", str(queries[0]))
    assert r.returncode == 1 and "tiny.png" in r.stderr and "outside 8..1024" in r.stderr
    # a refusal by the node (a single class) is its message and exit code 1
    r = pcm_l2l("classify", "--support", str(files[0]), "--labels", "a", "--query", str(queries[0]))
    assert r.returncode == 1 and "refused" in r.stderr and "at least 2 classes" in r.stderr
    assert vision.alive(), vision.output()


def write_csv(path: Path, msg) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time_s", *msg.joint_names])
        for p in msg.points:
            w.writerow([p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec, *(f"{v:.9f}" for v in p.positions)])


def test_learn_csv_and_execute(no_shm_leak, node_process, ros_node, tmp_path):
    sim = node_process("pcm_l2l_ros.nodes.sim_node")
    # a generous watchdog: this test checks the clients, not the watchdog, on a loaded 2-core machine
    ctrl = node_process("pcm_l2l_ros.nodes.controller_node", ["--ros-args", "-p", "watchdog_timeout_s:=0.5"])
    node, ex = ros_node
    bring_up(ex, node, "controller", ctrl, STARTUP_S)  # a managed node: configure + activate over DDS
    for srv, name in ((LearnTrajectory, "/controller/learn_trajectory"), (Trigger, "/controller/execute")):
        c = node.create_client(srv, name)
        assert spin_until(ex, c.service_is_ready, STARTUP_S), ctrl.output() + sim.output()
    cmds: list[list[float]] = []
    node.create_subscription(
        Float64MultiArray, "/forward_velocity_controller/commands", lambda m: cmds.append(list(m.data)), 100
    )

    def spin():
        ex.spin_once(timeout_sec=0.02)

    target = tmp_path / "trajectory.csv"
    write_csv(target, unseen_target_msg(11))
    r = pcm_l2l("learn", "--csv", str(target), "--json", spin=spin)
    assert r.returncode == 0, r.stderr + ctrl.output()[-2000:]
    out = json.loads(r.stdout)
    assert out["success"] and out["joints"] == ["base_joint", "shoulder"] and out["points"] > 100
    assert out["loss_after"] < out["loss_before"] and out["devices_written"] > 0

    # the ExecuteLearned action: a feedback line per feedback message, then the result
    r = pcm_l2l("execute", "--feedback-every", "0", "--timeout", "60", spin=spin)
    assert r.returncode == 0, r.stderr + ctrl.output()[-2000:]
    lines = r.stdout.splitlines()
    progress = [float(line.split()[1]) for line in lines if line.startswith("execute:") and " % " in line]
    assert len(progress) >= 20 and progress == sorted(progress) and progress[-1] >= 90.0, r.stdout
    assert "executed to its end" in lines[-1] and "tracking error median" in lines[-1], r.stdout
    spin_until(ex, lambda: len(cmds) >= 100 and not any(cmds[-1]), 10.0)
    moving = [c for c in cmds if any(c)]
    assert len(moving) >= 100, len(cmds)  # the learned trajectory was streamed to the arm
    # the arm is no longer at home: the next goal is refused with the controller's reason, JSON on stdout
    r = pcm_l2l("execute", "--json", spin=spin)
    assert r.returncode == 1 and "NOT_AT_START" in r.stderr, r.stderr
    out = json.loads(r.stdout)
    assert not out["success"] and out["code"] == "NOT_AT_START" and out["status"] == "aborted"
    assert "not at the trajectory's start" in out["message"]

    # malformed CSV: one clear line, exit 1; a target the controller refuses: its message, exit 1
    bad = tmp_path / "bad.csv"
    bad.write_text("time_s,base_joint,shoulder\n0.5,0.1\n1.0,0.2,0.1\n")
    r = pcm_l2l("learn", "--csv", str(bad))
    assert r.returncode == 1 and "row 2" in r.stderr
    far = tmp_path / "far.csv"
    far.write_text("time_s,base_joint,shoulder\n0.5,1.0,0.0\n1.0,1.1,0.0\n1.5,1.2,0.0\n")
    r = pcm_l2l("learn", "--csv", str(far), spin=spin)
    assert r.returncode == 1 and "refused" in r.stderr and "invalid target" in r.stderr
    assert sim.alive() and ctrl.alive(), ctrl.output()
