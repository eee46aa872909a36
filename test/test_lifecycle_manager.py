"""LifecycleManager survives lost service answers (the CI failure of a controller bring-up: Fast DDS dropped the
answer to the first ``get_state`` of a new client, "failed to send response (timeout)", and the manager waited
out its 90 s). A small managed-node stand-in serves ``<name>/get_state`` and ``<name>/change_state`` over real
DDS; its ``send_response`` drops the answers the test chooses, exactly what the rmw does in that race."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("rclpy")

from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402

from pcm_l2l_ros.nodes.lifecycle import LifecycleManager  # noqa: E402

RESEND_S = 0.3  # the manager's patience in this test (3 s by default)


class ManagedStandIn:
    """Serves the two lifecycle services of ``name`` on ``node``: ``configure`` goes unconfigured -> inactive (or
    fails and stays unconfigured if ``fail_configure``), ``activate`` inactive -> active. ``drop[srv]`` answers of
    the service ``srv`` ("get_state"/"change_state") are lost, counted in ``dropped``; ``calls`` counts requests."""

    GOALS = {
        Transition.TRANSITION_CONFIGURE: ("unconfigured", "inactive"),
        Transition.TRANSITION_ACTIVATE: ("inactive", "active"),
    }

    def __init__(self, node, name: str, drop: dict[str, int], fail_configure: bool = False):
        self.state, self.fail_configure = "unconfigured", fail_configure
        self.drop, self.dropped = dict(drop), {"get_state": 0, "change_state": 0}
        self.calls = {"get_state": 0, "change_state": 0}
        self.services = [
            self._lossy("get_state", node.create_service(GetState, f"/{name}/get_state", self._get_state)),
            self._lossy("change_state", node.create_service(ChangeState, f"/{name}/change_state", self._change)),
        ]

    def _lossy(self, kind: str, srv):
        send = srv.send_response

        def send_or_drop(response, header):
            if self.dropped[kind] < self.drop.get(kind, 0):
                self.dropped[kind] += 1  # lost on the way back, as rmw_send_response's RMW_RET_TIMEOUT
                return
            send(response, header)

        srv.send_response = send_or_drop
        return srv

    def _get_state(self, request, response):
        self.calls["get_state"] += 1
        response.current_state = State(label=self.state)
        return response

    def _change(self, request, response):
        self.calls["change_state"] += 1
        start, goal = self.GOALS.get(request.transition.id, (None, None))
        ok = self.state == start and not (goal == "inactive" and self.fail_configure)
        if ok:
            self.state = goal
        response.success = ok
        return response


@pytest.fixture
def manager_and_node(ros_node):
    node, ex = ros_node
    manager = LifecycleManager(node, lambda t: ex.spin_once(timeout_sec=t), resend_s=RESEND_S)
    yield manager, node
    manager.close()


def test_get_state_is_sent_again_when_its_answer_is_lost(no_shm_leak, manager_and_node):
    manager, node = manager_and_node
    fake = ManagedStandIn(node, "fake", drop={"get_state": 2})
    t0 = time.monotonic()
    assert manager.get_state("fake", timeout_s=20.0) == "unconfigured"
    assert fake.dropped["get_state"] == 2 and fake.calls["get_state"] == 3
    # patience 0.3 s, then 0.6 s: answered on the third copy, long before the 20 s timeout
    assert time.monotonic() - t0 < 10.0


def test_a_transition_whose_answer_is_lost_is_settled_by_the_state(no_shm_leak, manager_and_node):
    manager, node = manager_and_node
    fake = ManagedStandIn(node, "fake", drop={"change_state": 2})
    manager.bring_up("fake", timeout_s=30.0)  # configure and activate: both answers lost
    assert fake.state == "active" and fake.dropped["change_state"] == 2
    assert fake.calls["change_state"] == 2  # a transition is never sent twice


def test_a_failed_transition_whose_answer_is_lost_reports_failure(no_shm_leak, manager_and_node):
    manager, node = manager_and_node
    fake = ManagedStandIn(node, "fake", drop={"change_state": 1}, fail_configure=True)
    assert manager.change_state("fake", "configure", timeout_s=30.0) is False
    assert fake.state == "unconfigured" and fake.calls["change_state"] == 1
    assert fake.calls["get_state"] >= 2  # the start state seen twice before concluding


def test_answered_calls_do_not_poll(no_shm_leak, manager_and_node):
    manager, node = manager_and_node
    fake = ManagedStandIn(node, "fake", drop={})
    assert manager.change_state("fake", "configure", timeout_s=20.0) is True
    assert fake.calls == {"get_state": 0, "change_state": 1}
    with pytest.raises(TimeoutError, match=r"nobody/get_state: did not appear within 1 s"):
        manager.get_state("nobody", timeout_s=1.0)
    fake.drop["get_state"] = 1_000  # every answer lost: the message names the seconds allowed
    with pytest.raises(TimeoutError, match=r"fake/get_state: no answer within 1\.5 s"):
        manager.get_state("fake", timeout_s=1.5)


def test_the_cli_client_resends_idempotent_requests_only(no_shm_leak, ros_node):
    """``GraphClient.call(..., resend_s=...)`` (``pcm-l2l classify``, the demo's classify and resets) gets the
    answer to a copy when the first is lost; without ``resend_s`` (a request with effects) it is sent once."""
    import threading  # noqa: PLC0415

    from pcm_l2l_ros.nodes.client import GraphClient  # noqa: PLC0415

    node, ex = ros_node
    fake = ManagedStandIn(node, "fake", drop={"get_state": 2})
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)])
    spinner.start()
    try:
        with GraphClient("lossy_probe") as c:
            with pytest.raises(TimeoutError, match="no answer"):
                c.call(GetState, "/fake/get_state", GetState.Request(), connect_timeout=20.0, timeout=1.0)
            assert fake.calls["get_state"] == 1  # sent once: its answer was the first one lost
            res = c.call(
                GetState, "/fake/get_state", GetState.Request(), connect_timeout=20.0, timeout=20.0, resend_s=RESEND_S
            )
            assert res.current_state.label == "unconfigured"
            assert fake.calls["get_state"] == 3 and fake.dropped["get_state"] == 2
    finally:
        stop.set()
        spinner.join()
