"""Controller node: the spiking trainee on the simulated PCM chip learns a trajectory in ONE update.

Interfaces (README "Interfaces"; data path: docs/architecture.md §2.3):

* ``~/learn_trajectory`` (pcm_l2l_interfaces/LearnTrajectory): validates the target (joint names, finite
  values, joint and velocity limits, a start at home, a duration and sampling the trainee can represent),
  then runs the training run, the learning-signal generator (LSG) and ONE natural e-prop update written to
  the chip by sparse reprogramming, and a test run; answers loss before/after, devices written, time.
* ``~/execute`` (std_srvs/Trigger): streams the trainee's angular-velocity output (rad/s) as
  ``/forward_velocity_controller/commands`` (std_msgs/Float64MultiArray, order = parameter ``joints``) paced
  by the stamps of ``/joint_states``, or (``command_mode: trajectory``) sends it once as a
  ``/joint_trajectory_controller/joint_trajectory`` of positions (rad) for position-controlled arms.
* ``~/reset`` (std_srvs/Trigger): restores the meta-trained weights on the chip (sparse reprogramming).
* ``~/status`` (pcm_l2l_interfaces/ControllerStatus) at ``status_rate_hz``.

Safety: commands are clamped to the URDF velocity limits and to the joint limits (a joint at its limit gets
no velocity further out; in trajectory mode the integrated positions as well); a watchdog stops the execution
when ``/joint_states`` is older than ``watchdog_timeout_s``; nothing non-finite is ever published. Every
stop (watchdog, ``~/reset``, SIGINT/SIGTERM) commands zero velocity, and in trajectory mode an empty
JointTrajectory (joint_trajectory_controller's stop). ``~/execute`` is refused unless the learned joints
are within ``start_tolerance_rad`` of the trajectory's start (home, 0 rad). ``command_mode`` is read-only.
``/joint_states`` is subscribed best-effort (matches reliable and best-effort drivers); a message with
duplicate or missing joint names, a non-finite position, a zero stamp or a stamp older than the last one
(while the stream is live) is ignored with a throttled warning.

Bounded work: a target of more than ``max_target_points`` points is refused before it is converted; learning
and reset run on a worker thread (the executor keeps serving ``/joint_states``, the watchdog and
``~/status``), at most ``max_pending`` requests are queued.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
from builtin_interfaces.msg import Duration
from pcm_l2l_interfaces.msg import ControllerStatus
from pcm_l2l_interfaces.srv import LearnTrajectory
from rclpy.duration import Duration as RclDuration
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from pcm_l2l_ros.arm.urdf import default_urdf_path, load_chain
from pcm_l2l_ros.compute_threads import limit_compute_threads
from pcm_l2l_ros.nodes.common import WorkerPool, run_node
from pcm_l2l_ros.nodes.controller_params import MAX_DRIFT_S, MODES, declare_parameters  # noqa: F401 - public names
from pcm_l2l_ros.snn.controller import OneShotController, TargetError

VELOCITY_TOPIC = "/forward_velocity_controller/commands"
TRAJECTORY_TOPIC = "/joint_trajectory_controller/joint_trajectory"
#: /joint_states QoS: best effort matches both reliable and best-effort (sensor-data) publishers
JOINT_STATES_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=20, reliability=ReliabilityPolicy.BEST_EFFORT)
#: longest wait (s) at shutdown for the stop command to be acknowledged by its (reliable) subscribers
STOP_ACK_TIMEOUT_S = 0.3


class ControllerNode(Node):
    """See the module docstring; ``kwargs`` go to ``Node.__init__`` (runners pass ``cli_args``)."""

    def __init__(self, **kwargs):
        super().__init__("controller", **kwargs)
        p = declare_parameters(self)
        self.command_mode, self.start_tolerance_rad = p["command_mode"], p["start_tolerance_rad"]
        self.max_target_points, self.watchdog_timeout_s = p["max_target_points"], p["watchdog_timeout_s"]
        chain = load_chain(p["urdf_path"] or default_urdf_path())
        unknown = [j for j in p["joints"] if j not in chain.movable]
        if unknown:
            raise ValueError(f"parameter 'joints': {unknown} are not movable joints of the URDF {chain.movable}")
        missing = [j for j in p["learned_joints"] if j not in p["joints"]]
        if missing:
            raise ValueError(f"parameter 'learned_joints': {missing} not in 'joints'")
        # every parameter is valid: only now does anything change (process-wide thread pools, the chip)
        limit_compute_threads(p["compute_threads"])
        self.joints, self.learned_joints = list(p["joints"]), list(p["learned_joints"])
        self._learned_idx = [self.joints.index(j) for j in self.learned_joints]
        self.lower = np.array([chain.joint(j).lower for j in self.joints])
        self.upper = np.array([chain.joint(j).upper for j in self.joints])
        self.vmax = np.array([chain.joint(j).velocity for j in self.joints])

        self.get_logger().info("loading the meta-trained SNN and programming the trainee onto the PCM chip ...")
        t = time.perf_counter()
        self.learner = OneShotController.from_checkpoint(
            p["checkpoint"] or None, pcm=p["pcm.enabled"], pcm_preset=p["pcm.preset"],
            drift_time_s=p["pcm.drift_time_s"], seed=p["pcm.seed"], urdf_path=p["urdf_path"] or None,
            update_rounding=p["pcm.update_rounding"],
            learned_joint_limits=(self.lower[self._learned_idx], self.upper[self._learned_idx]),
            velocity_limits=self.vmax[self._learned_idx])
        self.get_logger().info(f"ready in {time.perf_counter() - t:.1f} s: {self.learner.describe()}")

        self._lock = threading.Lock()
        self.state = "idle"
        self.learned = False
        self.last_loss = 0.0
        self._omega = None                  # (T, n_learned) rad/s, the learned test-run output
        self._exec_t0 = None                # stamp (s) of the first /joint_states of the execution
        self._last_js_wall = None           # monotonic time of the last /joint_states
        self._last_js_stamp = None          # its header stamp (s)
        self._last_q = None                 # positions of self.joints (rad)
        self._traj_end = None               # monotonic time at which a sent JointTrajectory ends
        self.js_ignored = 0                 # /joint_states messages ignored (malformed or out of order)
        self._ignore_logged: dict[str, float] = {}   # kind of defect -> monotonic time of its last warning

        self._cmd_pub = self.create_publisher(Float64MultiArray, VELOCITY_TOPIC, 10)
        self._traj_pub = self.create_publisher(JointTrajectory, TRAJECTORY_TOPIC, 10)
        self._status_pub = self.create_publisher(ControllerStatus, "~/status", 10)
        self.create_subscription(JointState, "/joint_states", self._on_joint_states, JOINT_STATES_QOS)
        # learning and the chip restore of ~/reset take tens of ms: on a worker, off the executor thread
        self.pool = WorkerPool("learner", workers=1, max_pending=p["max_pending"], logger=self.get_logger())
        self.worker_pools = [self.pool]
        self.pool.serve(self, LearnTrajectory, "~/learn_trajectory", self._on_learn)
        self.create_service(Trigger, "~/execute", self._on_execute)
        self._reset_send = WorkerPool.attach(self.create_service(Trigger, "~/reset", self._on_reset))
        # the watchdog: one timer of period watchdog_timeout_s, only while executing, re-armed by every accepted
        # /joint_states, so it fires exactly that long after the last one (no fast ticking; the old period
        # min(0.001, timeout / 10) ticked at 1 kHz or faster)
        self._watchdog_period = self.watchdog_timeout_s
        self._watchdog_timer = None
        self._watchdog_due = 0.0            # monotonic time at which the watchdog timer is due
        self.create_timer(1.0 / p["status_rate_hz"], self._publish_status)

    # ------------------------------------------------------------------------------------------ services
    def _on_learn(self, request: LearnTrajectory.Request, response: LearnTrajectory.Response):
        """One-shot learning (on the worker thread)."""
        n_points, n_names = len(request.target.points), len(request.target.joint_names)
        if n_points > self.max_target_points or n_names > len(self.learned_joints):
            response.success = False
            response.message = (f"invalid target: {n_points} points / {n_names} joint names exceed the caps "
                                f"({self.max_target_points} points, {len(self.learned_joints)} joints)")
            self.get_logger().warning(response.message)
            return response
        with self._lock:
            if self.state == "executing":
                response.success, response.message = False, "busy: a trajectory is executing"
                return response
            self.state = "learning"
        try:
            result = self.learner.learn(request.target, quantize=bool(request.quantize_update))
        except TargetError as e:
            response.success, response.message = False, f"invalid target: {e}"
            self.get_logger().warning(response.message)
            with self._lock:
                self.state = "idle"
            return response
        except Exception as e:  # noqa: BLE001 - the node must survive anything a request triggers
            response.success, response.message = False, f"learning failed: {type(e).__name__}: {e}"
            self.get_logger().error(response.message)
            with self._lock:
                self.state = "error"
            return response
        with self._lock:
            self._omega = result.omega
            self.learned = True
            self.last_loss = result.loss_after
            self.state = "idle"
        response.success = True
        response.loss_before, response.loss_after = result.loss_before, result.loss_after
        response.devices_written = int(result.devices_written)
        response.update_time_s = result.update_time_s
        self.get_logger().info(f"learned in one update: loss {result.loss_before:.4f} -> {result.loss_after:.4f}, "
                               f"{result.devices_written} devices written, {1e3 * result.update_time_s:.0f} ms")
        return response

    def _on_execute(self, request: Trigger.Request, response: Trigger.Response):
        with self._lock:
            if self.state in ("learning", "executing"):
                response.success, response.message = False, f"busy: {self.state}"
                return response
            if not self._joint_states_fresh():
                response.success, response.message = False, ("no fresh /joint_states (watchdog): is the arm "
                                                              "driver running?")
                return response
            if not self.learned or self._omega is None:
                response.success, response.message = False, "nothing learned yet: call ~/learn_trajectory first"
                return response
            off = np.abs(self._last_q[self._learned_idx])
            if np.any(off > self.start_tolerance_rad):
                response.success = False
                response.message = (f"the arm is not at the trajectory's start: {self.learned_joints} at "
                                    f"{self._last_q[self._learned_idx].round(4).tolist()} rad, start 0 rad "
                                    f"(tolerance {self.start_tolerance_rad} rad)")
                return response
            self.state = "executing"
            self._exec_t0 = None
            self._start_watchdog()
            if self.command_mode == "trajectory":
                duration = self._send_trajectory()
                self._traj_end = time.monotonic() + duration
                response.message = f"sent a JointTrajectory of {len(self._omega)} points"
            else:
                response.message = f"streaming {len(self._omega)} velocity commands"
        response.success = True
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response):
        """Stop at once (executor thread), then restore the chip on the worker (after a running learn)."""
        with self._lock:
            if self.state == "executing":
                self._stop_motion()
                self.state = "idle"
            self.learned = False
            self._omega = None
            self.last_loss = 0.0
        return self.pool.defer(self._reset_send, self._reset_chip, request, response)

    def _reset_chip(self, request: Trigger.Request, response: Trigger.Response):
        with self._lock:
            self.state = "idle"
            self.learned = False
            self._omega = None
        try:
            written = self.learner.reset()
        except Exception as e:  # noqa: BLE001
            response.success, response.message = False, f"reset failed: {type(e).__name__}: {e}"
            return response
        response.success, response.message = True, f"meta-trained weights restored ({written} devices rewritten)"
        return response

    # ------------------------------------------------------------------------------------------ streaming
    def _ignore(self, kind: str, why: str) -> None:
        """Count an unusable /joint_states; warn at most every 2 s per ``kind`` of defect."""
        self.js_ignored += 1
        now = time.monotonic()
        if now - self._ignore_logged.get(kind, -math.inf) >= 2.0:
            self._ignore_logged[kind] = now
            self.get_logger().warning(f"/joint_states ignored: {why} ({self.js_ignored} so far)")

    def _on_joint_states(self, msg: JointState) -> None:
        q = self._positions(msg)
        if q is None:
            return
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        if stamp <= 0.0:
            return self._ignore("stamp", "zero stamp (the execution is paced by the stamps)")
        with self._lock:
            now = time.monotonic()
            live = self._last_js_wall is not None and now - self._last_js_wall <= self.watchdog_timeout_s
            if live and self._last_js_stamp is not None and stamp < self._last_js_stamp:
                # out of order while the stream is live; after a silence (driver restart) a new clock is fine
                return self._ignore("stamp", f"stamp {stamp:.6f} s older than the last one {self._last_js_stamp:.6f} s")
            if not live and self.state == "executing" and self._last_js_stamp is not None \
                    and stamp < self._last_js_stamp:
                return self._ignore("stamp", "stamps went backwards during an execution")
            self._last_js_wall = now
            self._last_js_stamp = stamp
            self._last_q = q
            if self.state != "executing":
                return
            self._rearm_watchdog()
            if self._traj_end is not None and now > self._traj_end:   # the sent trajectory has ended
                self.state, self._traj_end = "idle", None
                return
            if self.command_mode != "velocity":
                return
            if self._exec_t0 is None:
                self._exec_t0 = stamp
            k = int(math.floor((stamp - self._exec_t0) / self.learner.dt + 1e-6))
            if k < 0:
                return
            if k >= len(self._omega):
                self._publish_zero()
                self.state = "idle"
                return
            cmd = np.zeros(len(self.joints))
            cmd[self._learned_idx] = self._omega[k]
            self._publish_velocity(self._safe(cmd, q))

    def _positions(self, msg: JointState):
        """Positions of ``self.joints`` (rad), or None (with a throttled warning) if the message is unusable."""
        if len(msg.position) != len(msg.name):
            return self._ignore("names", f"{len(msg.position)} positions for {len(msg.name)} names")
        index = {n: i for i, n in enumerate(msg.name)}
        if len(index) != len(msg.name):
            return self._ignore("names", "duplicate joint names")
        missing = [j for j in self.joints if j not in index]
        if missing:
            return self._ignore("names", f"joints {missing} missing")
        q = np.array([msg.position[index[j]] for j in self.joints], dtype=np.float64)
        return q if np.all(np.isfinite(q)) else self._ignore("values", "non-finite position")

    def _safe(self, cmd: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Clamp to velocity limits; no motion further out at a joint limit; never non-finite."""
        cmd = np.where(np.isfinite(cmd), cmd, 0.0)
        cmd = np.clip(cmd, -self.vmax, self.vmax)
        cmd[(q >= self.upper) & (cmd > 0)] = 0.0
        cmd[(q <= self.lower) & (cmd < 0)] = 0.0
        return cmd

    def _publish_velocity(self, cmd: np.ndarray) -> None:
        if not np.all(np.isfinite(cmd)):  # unreachable after _safe; the last line of defence
            cmd = np.zeros_like(cmd)
        self._cmd_pub.publish(Float64MultiArray(data=[float(v) for v in cmd]))

    def _publish_zero(self) -> None:
        self._publish_velocity(np.zeros(len(self.joints)))

    def _stop_motion(self) -> None:
        """Command the arm to stand still in the current mode (zero velocity; in trajectory mode also an empty
        JointTrajectory, which stops a joint_trajectory_controller); the execution ends. Caller holds the lock."""
        self._publish_zero()
        if self.command_mode == "trajectory":
            self._traj_pub.publish(JointTrajectory(joint_names=list(self.learned_joints)))
        self._traj_end = None

    def _send_trajectory(self) -> float:
        """Integrate the learned velocities (clamped to the velocity limits) from the current positions into
        one JointTrajectory (clamped to the joint limits) and send it; returns its duration (s)."""
        dt = self.learner.dt
        q0 = self._last_q[self._learned_idx]
        lo, hi = self.lower[self._learned_idx], self.upper[self._learned_idx]
        vmax = self.vmax[self._learned_idx]
        omega = np.clip(np.where(np.isfinite(self._omega), self._omega, 0.0), -vmax, vmax)
        q = q0.copy()
        qs = np.empty_like(omega)
        for k in range(len(omega)):   # clamp each step: a limit reached is held, not overshot in later steps
            q = np.clip(q + dt * omega[k], lo, hi)
            qs[k] = q
        q = qs
        traj = JointTrajectory(joint_names=list(self.learned_joints))
        for k in range(len(q)):
            t = (k + 1) * dt
            traj.points.append(JointTrajectoryPoint(
                positions=[float(v) for v in q[k]],
                time_from_start=Duration(sec=int(t), nanosec=int(round((t - int(t)) * 1e9)) % 1_000_000_000)))
        self._traj_pub.publish(traj)
        return len(q) * dt

    def _joint_states_fresh(self) -> bool:
        return self._last_js_wall is not None and time.monotonic() - self._last_js_wall <= self.watchdog_timeout_s

    def _start_watchdog(self) -> None:
        if self._watchdog_timer is None:
            self._watchdog_timer = self.create_timer(self._watchdog_period, self._on_watchdog)
        else:
            self._watchdog_timer.reset()
        self._watchdog_due = time.monotonic() + self._watchdog_period

    def _rearm_watchdog(self) -> None:
        """A fresh /joint_states: the watchdog fires ``watchdog_timeout_s`` after this one (unless re-armed)."""
        if self._watchdog_timer is not None:
            self._watchdog_timer.reset()
            self._watchdog_due = time.monotonic() + self._watchdog_period

    def _on_watchdog(self) -> None:
        if self.state != "executing":          # nothing is commanded: the watchdog rests
            self.destroy_timer(self._watchdog_timer)
            self._watchdog_timer = None
            return
        now = time.monotonic()
        if self._traj_end is not None and now > self._traj_end:
            with self._lock:                   # the sent trajectory has ended
                if self.state == "executing":
                    self.state = "idle"
                self._traj_end = None
            return
        late = now - self._watchdog_due
        self._watchdog_due = now + self._watchdog_period
        if late > max(0.01, 0.2 * self._watchdog_period):
            # This process did not run for a while: /joint_states may be waiting in the queue unread, so
            # its age says nothing about the arm. Judge at the next expiry, after the queue is served.
            return
        with self._lock:
            if self.state == "executing" and not self._joint_states_fresh():
                self._stop_motion()
                self.state = "stopped"
                self.get_logger().warning(f"/joint_states older than {self.watchdog_timeout_s} s: zero velocity "
                                          "commanded, execution stopped")

    def _publish_status(self) -> None:
        msg = ControllerStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.state = self.state
        msg.learned = self.learned
        msg.devices_written_total = int(self.learner.devices_written_total)
        msg.max_writes_per_device = int(self.learner.max_writes_per_device)
        msg.drift_time_s = float(self.learner.drift_time_s)
        msg.last_loss = float(self.last_loss) if math.isfinite(self.last_loss) else 0.0
        self._status_pub.publish(msg)

    def on_shutdown(self) -> None:
        """Leave the arm standing still: if executing, command the stop and wait (at most
        ``STOP_ACK_TIMEOUT_S``) until reliable subscribers have acknowledged it. Called while the ROS context
        is still valid (``run_node``)."""
        with self._lock:
            if self.state != "executing":
                return
            self._stop_motion()
            self.state = "stopped"
        for pub in (self._cmd_pub, self._traj_pub):
            try:
                pub.wait_for_all_acked(RclDuration(seconds=STOP_ACK_TIMEOUT_S))
            except Exception:  # noqa: BLE001, S112 - best effort; the command is published either way
                continue


def main(args=None) -> int:
    return run_node(ControllerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
