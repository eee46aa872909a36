"""Teach by demonstration, the controller's ROS side: record the arm's own ``/joint_states`` and learn them.

Services (on the controller node):

* ``~/demonstration/start`` (std_srvs/Trigger): begin recording the learned joints (at most the trainee's
  2.49 s); refused unless the arm is at home and ``/joint_states`` is live.
* ``~/demonstration/learn`` (pcm_l2l_interfaces/LearnDemonstration): ``window_s`` > 0 records that long from now,
  ``window_s`` = 0 stops the recording that ``start`` began; the recording is then learned in ONE update through
  the controller's own ``~/learn_trajectory`` path (same validation, chip update, markers and state), and the
  response carries the recording and the learning result.

A user moves a real arm by hand (teach mode) or replays a recorded trajectory on it (e.g. a JointTrajectory to
its joint_trajectory_controller) and has the controller repeat it with ``~/execute_learned``. The recorder
(:mod:`pcm_l2l_ros.arm.demonstration`) keeps at most ``DEFAULT_MAX_SAMPLES`` samples; the learn request runs on
the controller's learner worker, so the executor keeps serving while a window is recorded. The controller is a
managed node: the recording window (the trainee's duration) is known once it is configured (:meth:`set_trainee_grid`);
until then, and whenever the controller is not active, ``busy_fn`` refuses with its ``inactive: ...`` reason.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from pcm_l2l_interfaces.srv import LearnDemonstration, LearnTrajectory
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from pcm_l2l_ros.arm.demonstration import Demonstration, DemonstrationError, DemonstrationRecorder, on_trainee_grid
from pcm_l2l_ros.nodes.common import WorkerPool, joint_trajectory

#: /joint_states QoS of the recorder (best effort: matches reliable and best-effort drivers)
JOINT_STATES_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
#: how old (s) the last /joint_states may be when a recording starts
LIVE_S = 0.5
#: extra wait (s) beyond a window for its last samples before the recording is declared broken
WINDOW_GRACE_S = 1.0


class WorkerServer(Protocol):
    """What serves ``~/demonstration/learn`` off the executor thread (a :class:`WorkerPool`, or the controller's
    gated server that also refuses while the node is not active)."""

    def serve(self, node: Node, srv_type, name: str, fn: Callable): ...


class DemonstrationTeacher:
    """The two demonstration services of ``node`` (see the module docstring).

    ``learn_fn(LearnTrajectory.Request, LearnTrajectory.Response) -> Response`` is the controller's learning
    callback (called on ``pool``'s worker, as ``~/learn_trajectory``); ``busy_fn() -> str | None`` says why the
    controller cannot record now (e.g. executing), or None. ``learned_joints`` are recorded in that order;
    ``home_tolerance_rad`` is how far from 0 rad the arm may be when the recording starts; ``trainee_grid`` =
    (dt in s, steps, velocity limits in rad/s) of the trainee, or None until :meth:`set_trainee_grid` (nothing is
    recorded before). The recording is learned as :func:`~pcm_l2l_ros.arm.demonstration.on_trainee_grid` makes it.
    """

    def __init__(
        self,
        node: Node,
        pool: WorkerPool | WorkerServer,
        learn_fn: Callable,
        busy_fn: Callable[[], str | None],
        learned_joints,
        home_tolerance_rad: float,
        trainee_grid: tuple[float, int, Any] | None,
    ):
        self._node, self._learn_fn, self._busy_fn = node, learn_fn, busy_fn
        self.joints = list(learned_joints)
        self.home_tolerance_rad = float(home_tolerance_rad)
        self.max_window_s = 0.0
        self._rec: DemonstrationRecorder | None = None
        self._lock = threading.Lock()
        self._grid: tuple[float, int, np.ndarray] | None = None
        if trainee_grid is not None:
            self.set_trainee_grid(*trainee_grid)
        self._window_done = threading.Event()
        self._last_wall: float | None = None
        self._last_q = None
        self._error: str | None = None  # why the running recording broke (set by the subscription)
        node.create_subscription(JointState, "/joint_states", self._on_joint_states, JOINT_STATES_QOS)
        node.create_service(Trigger, "~/demonstration/start", self._on_start)
        pool.serve(node, LearnDemonstration, "~/demonstration/learn", self._on_learn)

    def set_trainee_grid(self, dt_s: float, steps: int, vmax_rad_s) -> None:
        """The trainee's time grid (``steps`` x ``dt_s`` s: the longest recording) and the learned joints' velocity
        limits (rad/s); a running recording is dropped."""
        max_window_s = float(dt_s) * int(steps)
        rec = DemonstrationRecorder(max_window_s, self.home_tolerance_rad, n_joints=len(self.joints))
        with self._lock:
            if self._rec is not None and self._rec.recording:
                self._break("the controller was reconfigured")
            self._rec, self.max_window_s = rec, max_window_s
            self._grid = (float(dt_s), int(steps), np.asarray(vmax_rad_s, dtype=np.float64))

    def _recorder(self) -> DemonstrationRecorder:
        if self._rec is None:
            raise DemonstrationError("inactive: the controller is not configured")
        return self._rec

    # ------------------------------------------------------------------------------------------ stream
    def _on_joint_states(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):
            return
        index = {n: i for i, n in enumerate(msg.name)}
        if any(j not in index for j in self.joints):
            return
        q = [float(msg.position[index[j]]) for j in self.joints]
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        with self._lock:
            self._last_wall, self._last_q = time.monotonic(), q
            if self._rec is None or not self._rec.recording:
                return
            if stamp <= 0.0:
                self._break("/joint_states without a stamp: the recording needs the stamps")
                return
            try:
                if self._recorder().add(stamp, q):
                    self._window_done.set()
            except DemonstrationError as e:
                self._break(str(e))

    def _break(self, why: str) -> None:
        """End the running recording as failed (caller holds the lock)."""
        self._recorder().cancel()
        self._error = why
        self._window_done.set()

    def _begin(self, window_s: float) -> str | None:
        """Start a recording of ``window_s`` (0 = the longest); returns why not, or None. Caller holds the lock."""
        busy = self._busy_fn()
        if busy:
            return busy
        if self._rec is None:
            return "inactive: the controller is not configured"
        if self._last_wall is None or time.monotonic() - self._last_wall > LIVE_S:
            return f"no live /joint_states with {self.joints} (none in the last {LIVE_S} s)"
        if any(abs(v) > self._recorder().home_tolerance_rad for v in self._last_q):
            return (
                f"the arm is not at home: {[round(v, 4) for v in self._last_q]} rad (a demonstration starts at "
                f"0 rad, tolerance {self._recorder().home_tolerance_rad} rad); move it home first"
            )
        try:
            self._recorder().start(window_s)
        except DemonstrationError as e:
            return str(e)
        self._error = None
        self._window_done.clear()
        return None

    # ------------------------------------------------------------------------------------------ services
    def _on_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            why = self._begin(0.0)
        response.success = why is None
        response.message = why or (
            f"recording {self.joints} for at most {self.max_window_s:.2f} s; call "
            "~/demonstration/learn with window_s = 0 to stop and learn"
        )
        if why:
            self._node.get_logger().warning(f"demonstration not started: {why}")
        return response

    def _on_learn(self, request: LearnDemonstration.Request, response: LearnDemonstration.Response):
        """Record (window) or stop (window_s = 0), then learn; on the learner worker."""
        window = float(request.window_s)
        if not math.isfinite(window) or window < 0 or window > self.max_window_s + 1e-9:
            response.success = False
            response.message = f"window_s must be 0 (stop the started recording) or in (0, {self.max_window_s:.2f}] s"
            return response
        try:
            demo = self._record_window(window) if window > 0 else self._stop()
        except DemonstrationError as e:
            response.success, response.message = False, f"no demonstration: {e}"
            self._node.get_logger().warning(response.message)
            return response
        response.recorded_s, response.samples, response.ended_by = demo.duration_s, demo.samples, demo.ended_by
        response.demonstration = joint_trajectory(self.joints, demo.times_s, demo.positions)
        dt, steps, vmax = self._grid
        try:
            target = joint_trajectory(self.joints, *on_trainee_grid(demo, dt, steps, vmax))
        except DemonstrationError as e:
            response.success, response.message = False, f"not learnable: {e}"
            self._node.get_logger().warning(response.message)
            return response
        learned = self._learn_fn(
            LearnTrajectory.Request(target=target, quantize_update=bool(request.quantize_update)),
            LearnTrajectory.Response(),
        )
        response.success, response.message = bool(learned.success), learned.message
        response.loss_before, response.loss_after = learned.loss_before, learned.loss_after
        response.devices_written, response.update_time_s = learned.devices_written, learned.update_time_s
        return response

    def _stop(self) -> Demonstration:
        with self._lock:
            if self._error is not None and not self._recorder().recording and self._recorder().finished is None:
                raise DemonstrationError(f"the recording broke: {self._error}")
            return self._take()

    def _take(self) -> Demonstration:
        """The finished recording, handed out once (a later stop needs a new recording). Caller holds the lock."""
        demo = self._recorder().stop()
        self._recorder().cancel()
        return demo

    def _record_window(self, window_s: float) -> Demonstration:
        with self._lock:
            why = self._begin(window_s)
        if why:
            raise DemonstrationError(why)
        if not self._window_done.wait(window_s + WINDOW_GRACE_S):
            with self._lock:
                got = self._recorder().elapsed_s
                self._recorder().cancel()
            raise DemonstrationError(f"/joint_states stopped: {got:.2f} s of the {window_s:.2f} s window recorded")
        with self._lock:
            if self._error is not None:
                raise DemonstrationError(f"the recording broke: {self._error}")
            return self._take()
