"""A thin ROS client of the running node graph, for the ``pcm-l2l classify / learn / execute`` commands.

One rclpy context and node of its own (DDS discovery on this host unless ``ROS_AUTOMATIC_DISCOVERY_RANGE`` is
set), spun in the calling thread: ``call()`` waits for the service to appear, sends one request and waits for the
answer, each with its own timeout; ``send_goal()`` does the same for an action goal, with its feedback. Ctrl-C
raises KeyboardInterrupt (rclpy's signal handlers are not installed).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from pcm_l2l_ros.nodes.common import ensure_localhost_discovery
from pcm_l2l_ros.nodes.service_call import call_service


def _not_available(kind: str, name: str, connect_timeout: float) -> TimeoutError:
    """The error for a service or action that did not appear, with what to check."""
    return TimeoutError(
        f"{kind} {name} is not available after {connect_timeout:g} s: is the node graph running, with the same "
        f"ROS_DOMAIN_ID ({os.environ.get('ROS_DOMAIN_ID', '0')}) and discovery range "
        f"({os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE')})?"
    )


class GraphClient:
    """``with GraphClient() as c: c.call(Trigger, "/controller/execute", Trigger.Request())``."""

    def __init__(self, name: str = "pcm_l2l_cli"):
        ensure_localhost_discovery()
        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(f"{name}_{os.getpid()}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Spin until ``predicate()`` holds or ``timeout`` s pass; returns the predicate's last value."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return bool(predicate())
            self.executor.spin_once(timeout_sec=min(0.05, left))
        return True

    def call(
        self,
        srv_type,
        service: str,
        request,
        connect_timeout: float = 30.0,
        timeout: float = 120.0,
        resend_s: float | None = None,
    ) -> Any:
        """Send ``request`` to ``service`` and return the response; TimeoutError if the service does not appear
        within ``connect_timeout`` s or does not answer within ``timeout`` s. ``resend_s``: the request is
        idempotent; send it again after that many s of silence (a lost answer, :mod:`.service_call`)."""
        client = self.node.create_client(srv_type, service)
        try:
            if not self.spin_until(client.service_is_ready, connect_timeout):
                raise _not_available("service", service, connect_timeout)
            deadline = time.monotonic() + timeout
            res = call_service(
                client, request, lambda f, until: self.spin_until(f.done, until - time.monotonic()), deadline, resend_s
            )
            if res is None:
                raise TimeoutError(f"{service}: no answer within {timeout:g} s")
            return res
        finally:
            self.node.destroy_client(client)

    def send_goal(
        self,
        action_type,
        action: str,
        goal,
        on_feedback: Callable[[Any], None] | None = None,
        connect_timeout: float = 30.0,
        timeout: float = 120.0,
    ) -> tuple[int, Any]:
        """Send ``goal`` to the action server ``action``, call ``on_feedback(feedback)`` for each feedback, and
        return (goal status, result) once the goal has ended (``action_msgs/GoalStatus`` codes). TimeoutError if the
        server does not appear within ``connect_timeout`` s or the goal does not end within ``timeout`` s (the goal
        is then canceled). Ctrl-C cancels the goal (waiting up to 2 s for the server to confirm) and re-raises."""
        from rclpy.action import ActionClient  # noqa: PLC0415

        client = ActionClient(self.node, action_type, action)
        handle = None
        try:
            if not self.spin_until(client.server_is_ready, connect_timeout):
                raise _not_available("action", action, connect_timeout)
            callback = None if on_feedback is None else (lambda msg: on_feedback(msg.feedback))
            sent = client.send_goal_async(goal, feedback_callback=callback)
            if not self.spin_until(sent.done, timeout):
                raise TimeoutError(f"{action}: no goal response within {timeout:g} s")
            handle = sent.result()
            if not handle.accepted:
                return 0, None  # GoalStatus.STATUS_UNKNOWN: rejected
            result = handle.get_result_async()
            try:
                if not self.spin_until(result.done, timeout):
                    raise TimeoutError(f"{action}: the goal did not end within {timeout:g} s (canceled)")
            except BaseException:  # timeout, Ctrl-C: the arm must not go on moving for a client that left
                cancel = handle.cancel_goal_async()
                self.spin_until(cancel.done, 2.0)
                raise
            return result.result().status, result.result().result
        finally:
            client.destroy()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.context.destroy()
