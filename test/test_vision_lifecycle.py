"""The vision node as a managed (lifecycle) node over real DDS (issue #17, item 2): the standard services
``/vision/change_state`` and ``/vision/get_state`` (lifecycle_msgs) drive configure, activate, deactivate,
cleanup, configure again and shutdown, and ``/pcm_l2l/classify`` answers as documented in every state (a real
task while active, ``success=false`` "inactive: ..." otherwise); cleanup stops the worker threads and frees the
chip; a corrupt checkpoint makes configure fail and leaves the node unconfigured and alive."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from conftest import call_service, lifecycle_ops, spin_until  # noqa: E402
from pcm_l2l_interfaces.srv import FewShotClassify  # noqa: E402
from test_untrusted_files import _copy_checkpoint  # noqa: E402
from test_vision_node import _request  # noqa: E402

from pcm_l2l_ros.nodes.lifecycle import LifecycleManager  # noqa: E402
from pcm_l2l_ros.paths import MODELS_DIR  # noqa: E402

VISION = "pcm_l2l_ros.nodes.vision_node"
REPO = Path(__file__).resolve().parent.parent
CONFIGURE_S = 180.0  # loading + programming + warm-up on a loaded 2-core machine (first Numba compile)


def _status(pid: int) -> dict[str, int]:
    """Threads and RSS (bytes) of a process."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            out["threads"] = int(line.split()[1])
        elif line.startswith("VmRSS:"):
            out["rss"] = int(line.split()[1]) * 1024
    return out


@pytest.fixture
def managed_vision(no_shm_leak, node_process, ros_node):
    """The vision node in its own process (unconfigured), a lifecycle manager and a classify client."""
    node, ex = ros_node
    manager = LifecycleManager(node, lambda t: ex.spin_once(timeout_sec=t))

    def start(args: list[str] | None = None):
        proc = node_process(VISION, args)
        client = node.create_client(FewShotClassify, "/pcm_l2l/classify")
        assert spin_until(ex, client.service_is_ready, 60.0), proc.output()
        return proc, client

    yield start, manager, node, ex
    manager.close()


def test_transitions_over_dds_and_the_service_in_each_state(managed_vision):
    start, manager, node, ex = managed_vision
    proc, client = start()
    alive = proc.alive
    good, qy = _request(7)

    state, change = lifecycle_ops(manager, "vision", alive)

    def refused_inactive(label: str) -> None:
        res = call_service(ex, client, good, 30.0)
        assert res is not None, proc.output()
        assert not res.success and res.message.startswith("inactive:") and label in res.message, res.message
        assert list(res.labels) == [] and list(res.probabilities) == []

    def serves() -> None:
        res = call_service(ex, client, good, 60.0)
        assert res is not None and res.success, res and res.message
        assert np.mean(np.asarray(res.labels) == qy) >= 0.6  # a real answer, not just any

    # unconfigured: the service exists and refuses at once; nothing of the chip is built yet
    assert state() == "unconfigured"
    refused_inactive("unconfigured")
    before = _status(proc.pid)
    assert not change("activate")  # not a transition of 'unconfigured'
    assert state() == "unconfigured"

    assert change("configure", CONFIGURE_S) and state() == "inactive"
    configured = _status(proc.pid)
    refused_inactive("inactive")
    assert not change("configure")  # already configured
    assert change("activate") and state() == "active"
    serves()

    assert change("deactivate") and state() == "inactive"
    refused_inactive("inactive")
    assert change("activate") and state() == "active"  # re-activation: serves again, nothing rebuilt
    serves()
    assert change("deactivate") and change("cleanup") and state() == "unconfigured"
    refused_inactive("unconfigured")
    cleaned = _status(proc.pid)
    print(
        f"threads {before['threads']} -> configured {configured['threads']} -> cleaned up {cleaned['threads']}; "
        f"RSS {before['rss'] >> 20} -> {configured['rss'] >> 20} -> {cleaned['rss'] >> 20} MiB"
    )
    # the two worker threads are gone; the programmed chips are freed (most of what configure added)
    assert cleaned["threads"] <= configured["threads"] - 2, (before, configured, cleaned)
    assert cleaned["rss"] - before["rss"] < 0.5 * (configured["rss"] - before["rss"]), (before, configured, cleaned)

    # the whole cycle again after cleanup, then shutdown from active
    assert change("configure", CONFIGURE_S) and change("activate") and state() == "active"
    serves()
    assert change("shutdown") and state() == "finalized"
    refused_inactive("finalized")
    assert not change("configure") and state() == "finalized"
    assert proc.alive()  # the process lives on until SIGTERM (the fixture checks it then exits 0)


def test_configure_with_a_corrupt_checkpoint_fails_and_stays_unconfigured(managed_vision, tmp_path):
    start, manager, node, ex = managed_vision
    path = _copy_checkpoint(MODELS_DIR / "cnn_5way.npz", tmp_path / "cnn_5way.npz", garbage=True, fix_sha=True)
    proc, client = start(["--ros-args", "-p", f"checkpoint_5way:={path}"])
    assert manager.get_state("vision", 10.0, proc.alive) == "unconfigured"
    assert not manager.change_state("vision", "configure", 60.0, proc.alive)
    assert manager.get_state("vision", 10.0, proc.alive) == "unconfigured" and proc.alive()
    assert spin_until(ex, lambda: "corrupt or truncated" in proc.output(), 5.0), proc.output()
    errors = [line for line in proc.output().splitlines() if "configure failed" in line]
    assert len(errors) == 1 and "cnn_5way.npz" in errors[0] and "Traceback" not in proc.output(), proc.output()
    res = call_service(ex, client, _request(8)[0], 30.0)
    assert res is not None and not res.success and res.message.startswith("inactive:")
    with pytest.raises(RuntimeError, match="configure failed"):
        manager.bring_up("vision", 60.0, proc.alive)


def _vision_spec(**parameters):
    from pcm_l2l_ros.graph import load_graph

    spec = next(n for n in load_graph(REPO / "config" / "demo.yaml") if n.name == "vision")
    assert spec.lifecycle
    return dataclasses.replace(spec, parameters={**spec.parameters, **parameters})


@pytest.mark.parametrize("mode", ["subprocess", "inprocess"])
def test_the_runner_brings_the_vision_node_up_to_active(no_shm_leak, ros_node, tmp_path, mode):
    """What `pcm-l2l demo` relies on: inside the graph's context the service already serves."""
    from pcm_l2l_ros.nodes.runner import InProcessGraph, SubprocessGraph

    node, ex = ros_node
    graph = (
        SubprocessGraph([_vision_spec()], REPO / "config", log_dir=tmp_path, activate_timeout_s=CONFIGURE_S)
        if mode == "subprocess"
        else InProcessGraph([_vision_spec()], REPO / "config")
    )
    with graph:
        if mode == "inprocess":
            assert graph.made["vision"].lifecycle_state == "active"
        client = node.create_client(FewShotClassify, "/pcm_l2l/classify")
        assert spin_until(ex, client.service_is_ready, 30.0)
        req, qy = _request(9)
        res = call_service(ex, client, req, 60.0)
        assert res is not None and res.success, res and res.message
        assert np.mean(np.asarray(res.labels) == qy) >= 0.6
    if mode == "subprocess":
        assert graph.procs["vision"].proc.returncode == 0
    else:
        assert graph.made["vision"].lifecycle_state == "finalized" and graph.made["vision"].pool is None


def test_the_runner_reports_a_node_that_cannot_be_configured(ros_domain, no_shm_leak, tmp_path):
    from pcm_l2l_ros.nodes.runner import SubprocessGraph

    path = _copy_checkpoint(MODELS_DIR / "cnn_5way.npz", tmp_path / "cnn_5way.npz", garbage=True, fix_sha=True)
    graph = SubprocessGraph([_vision_spec(checkpoint_5way=str(path))], REPO / "config", log_dir=tmp_path / "logs")
    with pytest.raises(RuntimeError, match="vision did not become active: vision: configure failed") as err:
        graph.__enter__()
    assert "corrupt or truncated" in str(err.value)  # the node's log tail comes with it
    assert not graph.procs["vision"].alive() and graph.procs["vision"].proc.returncode == 0  # stopped by the runner
