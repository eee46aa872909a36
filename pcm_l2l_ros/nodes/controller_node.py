"""Controller node: the spiking trainee on the simulated PCM chip learns a trajectory in ONE update.

Interfaces (README "Interfaces"; data path: docs/architecture.md §2.3):

* ``~/learn_trajectory`` (pcm_l2l_interfaces/LearnTrajectory): validates the target (joint names, finite
  values, joint and velocity limits, a start at home, a duration and sampling the trainee can represent),
  then runs the training run, the learning-signal generator (LSG) and ONE natural e-prop update written to
  the chip by sparse reprogramming, and a test run; answers loss before/after, devices written, time.
* ``~/execute_learned`` (pcm_l2l_interfaces/action/ExecuteLearned): streams the trainee's angular-velocity
  output (rad/s) as ``/forward_velocity_controller/commands`` (std_msgs/Float64MultiArray, order = parameter
  ``joints``) paced by the stamps of ``/joint_states``, or (``command_mode: trajectory``) sends it once as a
  ``/joint_trajectory_controller/joint_trajectory`` of positions (rad) for position-controlled arms; optional
  time scaling. Feedback every ``FEEDBACK_PERIOD_S`` of ``/joint_states`` (progress 0..1, end-effector tracking
  error in m from the forward kinematics of ``/joint_states``); result: final and median tracking error (m), a
  code and a message. Cancel commands zero velocity at once, in the cancel callback (the arm holds). A goal
  that cannot run (nothing learned, stale ``/joint_states``, another goal or a learn running, the arm not at
  the start, a bad ``time_scale``) is accepted and aborted at once with its code and reason (a goal response
  carries no reason). The goal's execute callback awaits a future that the ``/joint_states`` callback, the
  watchdog, ``~/reset`` or the cancel completes: nothing blocks the single-threaded executor.
* ``~/execute`` (std_srvs/Trigger): a thin alias: starts the same execution (time scale 1) and answers at once.
* ``~/path_markers`` (visualization_msgs/MarkerArray, transient local): LINE_STRIPs of the target and the
  executed end-effector path in the URDF's root frame (forward kinematics of ``pcm_l2l_ros/arm``), published
  after a learn and during (every ``MARKER_PERIOD_S``) and after an execution; at most ``MAX_MARKER_POINTS``
  points each.
* ``~/demonstration/start`` (std_srvs/Trigger) and ``~/demonstration/learn`` (pcm_l2l_interfaces/LearnDemonstration):
  teach by demonstration: record the arm's own ``/joint_states`` (a window, or from start to stop; from home, at
  most 2.49 s) and learn the recording in one update through ``~/learn_trajectory``'s path (``nodes/teach.py``).
* ``~/reset`` (std_srvs/Trigger): restores the meta-trained weights on the chip (sparse reprogramming).
* ``~/status`` (pcm_l2l_interfaces/ControllerStatus) at ``status_rate_hz``.

Safety: commands are clamped to the URDF velocity limits and to the joint limits (a joint at its limit gets
no velocity further out; in trajectory mode the integrated positions as well); a watchdog stops the execution
when ``/joint_states`` is older than ``watchdog_timeout_s``; nothing non-finite is ever published. Every
stop (watchdog, ``~/reset``, SIGINT/SIGTERM) commands zero velocity, and in trajectory mode an empty
JointTrajectory (joint_trajectory_controller's stop). An execution is refused unless the learned joints
are within ``start_tolerance_rad`` of the trajectory's start (home, 0 rad). ``command_mode`` is read-only.
``/joint_states`` is subscribed best-effort (matches reliable and best-effort drivers); a message with
duplicate or missing joint names, a non-finite position, a zero stamp or a stamp older than the last one
(while the stream is live) is ignored with a throttled warning.

Managed node (``nodes/lifecycle.py``): it starts ``unconfigured`` (unless ``autostart``); parameters and the URDF
are validated in the constructor, before any state changes. ``configure`` loads the checkpoint, programs the trainee
onto the chip and starts the learner worker and ``~/status``; ``activate`` starts serving and commanding;
``deactivate`` commands zero velocity (and, in trajectory mode, an empty JointTrajectory), ends a running execution
(its goal is aborted, code INTERRUPTED, "inactive: the controller was deactivated ...") and stops; ``cleanup`` /
``shutdown`` stop the worker and the timers and drop the chip (and what was learned). The services and the action
exist in every state: unless the node is active, a request is answered ``success=false`` with a message starting
``inactive:`` and a goal is aborted (code INTERRUPTED) with that message. ``/joint_states`` is followed in every state.

Diagnostics (``nodes/diagnostics.py``): every ``diagnostics_period_s`` (1 s), in every state, one item
"controller: one-shot trajectory learning" on ``/diagnostics``: lifecycle and controller state, learned, last learn
loss, learn latency p50/p99 (receipt to answer of the last ``LATENCY_WINDOW`` successful learns), the age of the last
``/joint_states``, watchdog stops, and once configured the simulated drift time and the chip's devices, total write
pulses and max writes per device against the endurance. OK while serving; WARN when not active, when active with
``/joint_states`` older than ``watchdog_timeout_s`` (or none yet), or above 80 % of the endurance; ERROR after a failed
learn (controller state ``error``), a dead worker, or a device at its endurance limit.

Bounded work: a target of more than ``max_target_points`` points is refused before it is converted; learning
and reset run on a worker thread (the executor keeps serving ``/joint_states``, the watchdog and
``~/status``), at most ``max_pending`` requests are queued.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Any

import numpy as np
from geometry_msgs.msg import Point
from pcm_l2l_interfaces.action import ExecuteLearned
from pcm_l2l_interfaces.msg import ControllerStatus
from pcm_l2l_interfaces.srv import LearnTrajectory
from rclpy.action import ActionServer, CancelResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.duration import Duration as RclDuration
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from pcm_l2l_ros.arm.urdf import default_urdf_path, ee_position, load_chain
from pcm_l2l_ros.compute_threads import limit_compute_threads
from pcm_l2l_ros.nodes.common import WorkerPool, joint_trajectory, run_node
from pcm_l2l_ros.nodes.controller_params import MAX_DRIFT_S, MODES, declare_parameters  # noqa: F401 - public names
from pcm_l2l_ros.nodes.diagnostics import DiagnosticsPublisher, LatencyWindow, Status, add_chip_wear
from pcm_l2l_ros.nodes.lifecycle import ManagedNode
from pcm_l2l_ros.nodes.teach import DemonstrationTeacher
from pcm_l2l_ros.snn.controller import HOME_TOLERANCE_RAD, OneShotController, TargetError

VELOCITY_TOPIC = "/forward_velocity_controller/commands"
TRAJECTORY_TOPIC = "/joint_trajectory_controller/joint_trajectory"
#: /joint_states QoS: best effort matches both reliable and best-effort (sensor-data) publishers
JOINT_STATES_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=20, reliability=ReliabilityPolicy.BEST_EFFORT)
#: longest wait (s) at shutdown for the stop command to be acknowledged by its (reliable) subscribers
STOP_ACK_TIMEOUT_S = 0.3
#: action name of the execution (relative: /controller/execute_learned)
ACTION_NAME = "~/execute_learned"
#: valid ExecuteLearned.time_scale (besides 0 = 1): the learned motion at most 2x faster, 4x slower
TIME_SCALE_RANGE = (0.5, 4.0)
#: period (s) of the action feedback (and of the tracking-error bookkeeping), in /joint_states time: 20 Hz
FEEDBACK_PERIOD_S = 0.05
#: period (s) of ~/path_markers during an execution (5 Hz)
MARKER_PERIOD_S = 0.2
#: most points of one path marker (the executed path is thinned by 2 whenever it would exceed this)
MAX_MARKER_POINTS = 1000
#: ~/path_markers QoS: the latest array stays available to late subscribers (RViz started afterwards)
MARKER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: learns over which /diagnostics gives the learn latency p50/p99
LATENCY_WINDOW = 1000
R = ExecuteLearned.Result


class _GatedServer:
    """What the demonstration teacher serves its worker service through: the controller's gated services
    (refused with ``inactive: ...`` unless active, computed on the learner worker)."""

    def __init__(self, node: ControllerNode):
        self.node = node

    def serve(self, node, srv_type, name: str, fn):
        return self.node._serve_gated(srv_type, name, fn)


class ControllerNode(ManagedNode):
    """See the module docstring; ``kwargs`` go to ``LifecycleNode.__init__`` (runners pass ``cli_args``)."""

    def __init__(self, **kwargs):
        super().__init__("controller", **kwargs)
        p = declare_parameters(self)
        self._p = p
        self.command_mode, self.start_tolerance_rad = p["command_mode"], p["start_tolerance_rad"]
        self.max_target_points, self.watchdog_timeout_s = p["max_target_points"], p["watchdog_timeout_s"]
        chain = load_chain(p["urdf_path"] or default_urdf_path())
        unknown = [j for j in p["joints"] if j not in chain.movable]
        if unknown:
            raise ValueError(f"parameter 'joints': {unknown} are not movable joints of the URDF {chain.movable}")
        missing = [j for j in p["learned_joints"] if j not in p["joints"]]
        if missing:
            raise ValueError(f"parameter 'learned_joints': {missing} not in 'joints'")
        # every parameter is valid: the interfaces exist from now on; the chip is programmed by configure
        self.joints, self.learned_joints = list(p["joints"]), list(p["learned_joints"])
        self._learned_idx = [self.joints.index(j) for j in self.learned_joints]
        self.lower = np.array([chain.joint(j).lower for j in self.joints])
        self.upper = np.array([chain.joint(j).upper for j in self.joints])
        self.vmax = np.array([chain.joint(j).velocity for j in self.joints])
        self._chain = chain
        self._fk_index = [chain.movable.index(j) for j in self.joints]   # self.joints -> the URDF's q order

        self._lock = threading.Lock()
        self.learner: OneShotController | None = None   # built by configure, dropped by cleanup/shutdown
        self.pool: WorkerPool | None = None
        self.worker_pools: list[WorkerPool] = []
        self._status_timer = None
        self._shutting_down = False
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
        self._target_path: np.ndarray | None = None   # (T + 1, 3) target end-effector path from home (m)
        self.watchdog_stops = 0             # executions stopped by the /joint_states watchdog since start
        self.learn_latency = LatencyWindow(LATENCY_WINDOW)   # ~/learn_trajectory: receipt -> answer (s)
        self._reset_execution_record(1.0)

        self._cmd_pub = self.create_publisher(Float64MultiArray, VELOCITY_TOPIC, 10)
        self._traj_pub = self.create_publisher(JointTrajectory, TRAJECTORY_TOPIC, 10)
        self._status_pub = self.create_publisher(ControllerStatus, "~/status", 10)
        self.create_subscription(JointState, "/joint_states", self._on_joint_states, JOINT_STATES_QOS)
        # the services exist in every state; they compute only while active (else "inactive: ..."). Learning and
        # the chip restore of ~/reset take tens of ms: on the worker (configure starts it), off the executor thread
        self._serve_gated(LearnTrajectory, "~/learn_trajectory", self._on_learn, self.learn_latency)
        # teach by demonstration: record /joint_states, learn the recording through _on_learn (on the same worker);
        # its window (the trainee's duration) is set at configure
        self.teacher = DemonstrationTeacher(
            self, _GatedServer(self), self._on_learn, self._demonstration_busy, self.learned_joints,
            home_tolerance_rad=min(self.start_tolerance_rad, HOME_TOLERANCE_RAD), trainee_grid=None)
        self.create_service(Trigger, "~/execute", self._on_execute)
        self._setup_action_server()
        self._setup_markers()
        self._reset_send = WorkerPool.attach(self.create_service(Trigger, "~/reset", self._on_reset))
        # the watchdog: one timer of period watchdog_timeout_s, only while executing, re-armed by every accepted
        # /joint_states, so it fires exactly that long after the last one (no fast ticking; the old period
        # min(0.001, timeout / 10) ticked at 1 kHz or faster)
        self._watchdog_period = self.watchdog_timeout_s
        self._watchdog_timer = None
        self._watchdog_due = 0.0            # monotonic time at which the watchdog timer is due
        # /diagnostics in every state (nodes/diagnostics.py)
        self.diagnostics = DiagnosticsPublisher(self, self._diagnostics, p["diagnostics_period_s"])
        self.get_logger().info("unconfigured: configure loads the SNN and programs the chip"
                               + (" (autostart)" if self.autostart else ""))

    # ----------------------------------------------------------------------------------------------- lifecycle
    def configure_node(self) -> None:
        """Load the meta-trained SNN, program the trainee onto the simulated PCM chip, start the learner worker
        and the ~/status timer."""
        p = self._p
        limit_compute_threads(p["compute_threads"])   # process-wide thread pools
        self.get_logger().info("loading the meta-trained SNN and programming the trainee onto the PCM chip ...")
        t = time.perf_counter()
        learner = OneShotController.from_checkpoint(
            p["checkpoint"] or None, pcm=p["pcm.enabled"], pcm_preset=p["pcm.preset"],
            drift_time_s=p["pcm.drift_time_s"], seed=p["pcm.seed"], urdf_path=p["urdf_path"] or None,
            update_rounding=p["pcm.update_rounding"],
            learned_joint_limits=(self.lower[self._learned_idx], self.upper[self._learned_idx]),
            velocity_limits=self.vmax[self._learned_idx])
        self.teacher.set_trainee_grid(learner.dt, learner.T, self.vmax[self._learned_idx])
        pool = WorkerPool("learner", workers=1, max_pending=p["max_pending"], logger=self.get_logger())
        with self._lock:
            self.learner, self.pool, self.worker_pools = learner, pool, [pool]
            self.state, self.learned, self._omega, self.last_loss = "idle", False, None, 0.0
        self._status_timer = self.create_timer(1.0 / p["status_rate_hz"], self._publish_status)
        self.get_logger().info(f"ready in {time.perf_counter() - t:.1f} s: {learner.describe()}")

    def activate_node(self) -> None:
        """Start serving and commanding (the services and goals check ``is_active``)."""
        with self._lock:
            if self.state == "stopped":
                self.state = "idle"

    def deactivate_node(self) -> None:
        """Command the arm to stand still (zero velocity; in trajectory mode also an empty JointTrajectory), end a
        running execution (its goal is aborted) and stop serving. At shutdown the goal is ended here (the executor
        no longer spins) and the stop command is awaited (at most ``STOP_ACK_TIMEOUT_S`` per topic) until reliable
        subscribers have acknowledged it."""
        why = "shut down" if self._shutting_down else "deactivated"
        with self._lock:
            self._stop_motion()
            goal = None
            if self.state == "executing":
                goal = self._exec_goal
                self._end_execution("stopped", R.INTERRUPTED, f"inactive: the controller was {why}: zero velocity "
                                    "commanded, execution stopped")
                self.get_logger().warning(self._last_result.message)
        if not self._shutting_down:
            return
        if goal is not None:   # the executor no longer spins: end the goal here (best effort)
            with contextlib.suppress(Exception):   # the goal may have ended already
                goal.abort()
        for pub in (self._cmd_pub, self._traj_pub):
            try:
                pub.wait_for_all_acked(RclDuration(seconds=STOP_ACK_TIMEOUT_S))
            except Exception:  # noqa: BLE001, S112 - best effort; the command is published either way
                continue

    def release_node(self, shutting_down: bool = False) -> None:
        """Stop the learner worker (after the requests already accepted; at most 5 s, 0.2 s when shutting down),
        the ~/status and watchdog timers, and drop the chip and what was learned."""
        with self._lock:
            if self.state == "executing":   # an error in another transition: never leave the arm commanded
                self._stop_motion()
                self._end_execution("stopped", R.INTERRUPTED, "inactive: the controller was cleaned up")
        pool, self.pool, self.worker_pools = self.pool, None, []
        if pool is not None and not pool.close(0.2 if shutting_down else 5.0):
            self.get_logger().warning("the learner is still computing a request; it ends when that is answered")
        for attr in ("_status_timer", "_watchdog_timer"):
            timer = getattr(self, attr)
            if timer is not None:
                self.destroy_timer(timer)
                setattr(self, attr, None)
        with self._lock:
            self.learner = None
            self.state, self.learned, self._omega, self.last_loss = "idle", False, None, 0.0
            self._target_path = None
            self._reset_execution_record(1.0)
        if not shutting_down:
            self._publish_markers()   # RViz drops the paths of the chip that is gone

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """The ``shutdown`` transition (also SIGINT/SIGTERM through ``run_node``): as ``ManagedNode``'s, with the
        stop command awaited and a running goal ended here (``deactivate_node``)."""
        self._shutting_down = True
        return super().on_shutdown(state)

    def _inactive(self) -> str | None:
        """Why the controller does not serve now (``inactive: ...``), or None while it is active."""
        if self.is_active and self.learner is not None:
            return None
        return (f"inactive: the controller is {self.lifecycle_state}; it serves and commands only when active "
                f"(lifecycle transitions configure, activate)")

    def _serve_gated(self, srv_type, name: str, fn, latency: LatencyWindow | None = None):
        """A service whose requests run ``fn(request, response)`` on the learner worker while the node is active
        and are refused at once with ``inactive: ...`` otherwise; ``latency`` gets receipt -> answer (s) of the
        successful ones."""
        holder: dict[str, Any] = {}

        def callback(request, response):
            pool, why = self.pool, self._inactive()
            if why or pool is None:
                response.success, response.message = False, why or "inactive: the learner is stopped"
                return response
            t_received = time.perf_counter()

            def run(req, resp):
                out = fn(req, resp)
                if latency is not None and out.success:
                    latency.add(time.perf_counter() - t_received)
                return out

            return pool.defer(holder["send"], run, request, response)

        srv = self.create_service(srv_type, name, callback)
        WorkerPool.attach(srv, holder)
        return srv

    # ------------------------------------------------------------------------------------------ services
    def _demonstration_busy(self) -> str | None:
        """Why a demonstration cannot be recorded now (the arm is driven by the controller), or None."""
        why = self._inactive()
        if why:
            return why
        with self._lock:
            return "busy: a trajectory is executing" if self.state == "executing" else None

    def _on_learn(self, request: LearnTrajectory.Request, response: LearnTrajectory.Response):
        """One-shot learning (on the worker thread)."""
        learner = self.learner
        if learner is None:   # cleaned up while the request was queued
            response.success, response.message = False, "inactive: the controller was cleaned up"
            return response
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
            result = learner.learn(request.target, quantize=bool(request.quantize_update))
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
        home = ee_position(self._chain, np.zeros(len(self._chain.movable)))
        with self._lock:
            self._omega = result.omega
            self.learned = True
            self.last_loss = result.loss_after
            self.state = "idle"
            self._target_path = np.vstack([home[None], np.asarray(result.xyz_target, dtype=np.float64)])
            self._reset_execution_record(1.0)
            self._publish_markers()
        response.success = True
        response.loss_before, response.loss_after = result.loss_before, result.loss_after
        response.devices_written = int(result.devices_written)
        response.update_time_s = result.update_time_s
        self.get_logger().info(f"learned in one update: loss {result.loss_before:.4f} -> {result.loss_after:.4f}, "
                               f"{result.devices_written} devices written, {1e3 * result.update_time_s:.0f} ms")
        return response

    def _on_execute(self, request: Trigger.Request, response: Trigger.Response):
        """``~/execute``: the alias of an ExecuteLearned goal with time scale 1 that answers at once."""
        with self._lock:
            code, message = self._start_execution(1.0)
        response.success, response.message = code == R.SUCCEEDED, message
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response):
        """Stop at once (executor thread), then restore the chip on the worker (after a running learn)."""
        pool, why = self.pool, self._inactive()
        if why or pool is None:
            response.success, response.message = False, why or "inactive: the learner is stopped"
            return response
        with self._lock:
            if self.state == "executing":
                self._stop_motion()
                self._end_execution("idle", R.INTERRUPTED, "stopped by ~/reset (zero velocity commanded)")
            self.learned = False
            self._omega = None
            self.last_loss = 0.0
            self._target_path = None
            self._reset_execution_record(1.0)
            self._publish_markers()
        return pool.defer(self._reset_send, self._reset_chip, request, response)

    def _reset_chip(self, request: Trigger.Request, response: Trigger.Response):
        learner = self.learner
        if learner is None:   # cleaned up while the request was queued
            response.success, response.message = False, "inactive: the controller was cleaned up"
            return response
        with self._lock:
            self.state = "idle"
            self.learned = False
            self._omega = None
        try:
            written = learner.reset()
        except Exception as e:  # noqa: BLE001
            response.success, response.message = False, f"reset failed: {type(e).__name__}: {e}"
            return response
        response.success, response.message = True, f"meta-trained weights restored ({written} devices rewritten)"
        return response

    # ------------------------------------------------------------------------------------- execution (action)
    def _setup_action_server(self) -> None:
        """The ExecuteLearned action server (``~/execute_learned``). Every goal is accepted; one that cannot run
        is aborted at once with its code and reason (see the module docstring)."""
        self._exec_goal: ServerGoalHandle | None = None
        self._exec_done: Future | None = None
        self._action_server = ActionServer(self, ExecuteLearned, ACTION_NAME, execute_callback=self._execute_goal,
                                           cancel_callback=self._on_cancel_goal)

    async def _execute_goal(self, goal_handle: ServerGoalHandle) -> ExecuteLearned.Result:
        """Start the execution and await its end (a future completed by the /joint_states callback, the watchdog,
        ``~/reset`` or the cancel): the executor keeps serving every callback meanwhile."""
        if goal_handle.is_cancel_requested:   # canceled before it started: nothing moved
            goal_handle.canceled()
            return R(success=False, code=R.CANCELED, message="canceled before the execution started")
        done = Future()
        with self._lock:
            code, message = self._start_execution(float(goal_handle.request.time_scale), goal_handle, done)
        if code != R.SUCCEEDED:
            self.get_logger().warning(f"ExecuteLearned goal refused: {message}")
            goal_handle.abort()
            return R(success=False, code=code, message=message)
        result = await done
        if not goal_handle.is_active:   # already ended (a shutdown transition aborts it at once)
            return result
        if result.code == R.CANCELED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    def _on_cancel_goal(self, goal_handle: ServerGoalHandle) -> CancelResponse:
        """Cancel (executor thread, at the cancel request): zero velocity now, then the goal ends as canceled."""
        with self._lock:
            if self.state == "executing" and self._exec_goal is not None and self._exec_goal == goal_handle:
                self._stop_motion()
                self._end_execution("idle", R.CANCELED, "canceled: zero velocity commanded, the arm holds")
                self.get_logger().info("ExecuteLearned goal canceled: zero velocity commanded")
        return CancelResponse.ACCEPT

    def _start_execution(self, time_scale: float, goal: ServerGoalHandle | None = None,
                         done: Future | None = None) -> tuple[int, str]:
        """Start executing the learned trajectory (the action's goal and the ``~/execute`` alias); returns
        (code, message): ``R.SUCCEEDED`` and what was started, or why not. Caller holds the lock."""
        why = self._inactive()
        if why:
            return R.INTERRUPTED, why
        lo, hi = TIME_SCALE_RANGE
        if not math.isfinite(time_scale) or not (time_scale == 0.0 or lo <= time_scale <= hi):
            return R.INVALID_GOAL, f"time_scale {time_scale} is out of range: 0 (= 1) or [{lo}, {hi}]"
        scale = time_scale or 1.0
        if self.state in ("learning", "executing"):
            return R.BUSY, f"busy: {self.state}"
        if not self._joint_states_fresh():
            return R.STALE_JOINT_STATES, "no fresh /joint_states (watchdog): is the arm driver running?"
        if not self.learned or self._omega is None:
            return R.NOT_LEARNED, "nothing learned yet: call ~/learn_trajectory first"
        off = np.abs(self._last_q[self._learned_idx])
        if np.any(off > self.start_tolerance_rad):
            return R.NOT_AT_START, (f"the arm is not at the trajectory's start: {self.learned_joints} at "
                                    f"{self._last_q[self._learned_idx].round(4).tolist()} rad, start 0 rad "
                                    f"(tolerance {self.start_tolerance_rad} rad)")
        peak = float(np.max(np.abs(self._omega))) if self._omega.size else 0.0
        vlim = float(np.min(self.vmax[self._learned_idx]))
        if scale < 1.0 and peak / scale > vlim:
            return R.INVALID_GOAL, (f"time_scale {scale} is too fast: the learned velocities (up to {peak:.3f} "
                                    f"rad/s) would reach {peak / scale:.3f} rad/s, above the velocity limit "
                                    f"{vlim} rad/s")
        self.state = "executing"
        self._exec_t0 = None
        self._reset_execution_record(scale)
        self._exec_goal, self._exec_done = goal, done
        self._publish_markers()   # the executed path of the previous execution is cleared
        self._start_watchdog()
        if self.command_mode == "trajectory":
            duration = self._send_trajectory(scale)
            self._traj_end = time.monotonic() + duration
            return R.SUCCEEDED, f"sent a JointTrajectory of {len(self._omega)} points"
        return R.SUCCEEDED, f"streaming {len(self._omega)} velocity commands"

    def _reset_execution_record(self, scale: float) -> None:
        """Forget the bookkeeping of the last execution (tracking errors, executed path, feedback clocks)."""
        self._exec_scale = float(scale)
        self._exec_pending: list[tuple[float, np.ndarray]] = []   # (elapsed s, q rad) not yet through the FK
        self._exec_errors: list[float] = []                        # tracking error per /joint_states (m)
        self._exec_path: list[np.ndarray] = []                     # executed end-effector points (m), thinned
        self._exec_path_stride, self._exec_path_seen = 1, 0
        self._exec_elapsed = 0.0
        self._next_feedback = -math.inf                            # monotonic time of the next feedback
        self._next_markers = -math.inf
        self._last_result = R(success=False, code=R.NOT_LEARNED, message="nothing executed yet")

    def _flush_samples(self) -> None:
        """Forward kinematics of the pending /joint_states (one batch): tracking errors and executed path."""
        if not self._exec_pending:
            return
        elapsed = np.array([e for e, _ in self._exec_pending])
        q = np.zeros((len(self._exec_pending), len(self._chain.movable)))
        q[:, self._fk_index] = np.stack([qq for _, qq in self._exec_pending])
        self._exec_pending = []
        xyz = ee_position(self._chain, q)
        if self._target_path is not None:
            n = len(self._target_path) - 1
            j = np.clip(np.rint(elapsed / (self.learner.dt * self._exec_scale)), 0, n).astype(int)
            err = np.linalg.norm(xyz - self._target_path[j], axis=1)
            self._exec_errors.extend(float(e) for e in err if math.isfinite(e))
        for p in xyz:
            if self._exec_path_seen % self._exec_path_stride == 0 and np.all(np.isfinite(p)):
                self._exec_path.append(p)
                if len(self._exec_path) >= MAX_MARKER_POINTS:   # thin by 2, keep every 2nd point from now on
                    self._exec_path = self._exec_path[::2]
                    self._exec_path_stride *= 2
            self._exec_path_seen += 1

    def _progress_update(self, now: float) -> None:
        """Every ``FEEDBACK_PERIOD_S``: tracking errors, the action's feedback; every ``MARKER_PERIOD_S`` the
        markers. Caller holds the lock (executor thread, /joint_states callback)."""
        if now < self._next_feedback:
            return
        self._next_feedback = now + FEEDBACK_PERIOD_S
        self._flush_samples()
        if self._exec_goal is not None:
            total = len(self._omega) * self.learner.dt * self._exec_scale
            fb = ExecuteLearned.Feedback(progress=float(min(1.0, max(0.0, self._exec_elapsed / total))),
                                         tracking_error_m=self._exec_errors[-1] if self._exec_errors else 0.0,
                                         elapsed_s=float(self._exec_elapsed))
            self._exec_goal.publish_feedback(fb)
        if now >= self._next_markers:
            self._next_markers = now + MARKER_PERIOD_S
            self._publish_markers()

    def _end_execution(self, state: str, code: int, message: str) -> None:
        """The execution ended (run to its end, canceled, stopped): the result, the final markers, and the waiting
        goal completed. Caller holds the lock and has commanded the stop where one is needed."""
        self.state = state
        self._traj_end = None
        self._flush_samples()
        err = np.asarray(self._exec_errors)
        self._last_result = R(success=code == R.SUCCEEDED, code=code, message=message,
                              final_error_m=float(err[-1]) if err.size else 0.0,
                              median_error_m=float(np.median(err)) if err.size else 0.0,
                              samples=int(err.size), duration_s=float(self._exec_elapsed))
        self._publish_markers()
        done, self._exec_done, self._exec_goal = self._exec_done, None, None
        if done is not None and not done.done():
            done.set_result(self._last_result)
        if code == R.SUCCEEDED:
            self.get_logger().info(f"execution ended: tracking error final {100 * self._last_result.final_error_m:.2f}"
                                   f" cm, median {100 * self._last_result.median_error_m:.2f} cm over "
                                   f"{err.size} /joint_states")

    # ------------------------------------------------------------------------------------------ markers
    def _setup_markers(self) -> None:
        """``~/path_markers``: target and executed end-effector path (see the module docstring)."""
        self._frame_id = self._chain.root
        self._marker_pub = self.create_publisher(MarkerArray, "~/path_markers", MARKER_QOS)
        self._publish_markers()

    def _path_marker(self, ns: str, mid: int, points, color: tuple[float, float, float]) -> Marker:
        m = Marker(ns=ns, id=mid, type=Marker.LINE_STRIP)
        m.header.frame_id = self._frame_id
        m.header.stamp = self.get_clock().now().to_msg()
        pts = [p for p in points if np.all(np.isfinite(p))]
        if len(pts) > MAX_MARKER_POINTS:
            pts = pts[:: math.ceil(len(pts) / MAX_MARKER_POINTS)]
        if len(pts) < 2:    # nothing to draw (a LINE_STRIP needs 2 points): remove what RViz shows
            m.action = Marker.DELETE
            return m
        m.action = Marker.ADD
        m.pose.orientation.w = 1.0
        m.scale.x = 0.006   # line width (m)
        m.color = ColorRGBA(r=color[0], g=color[1], b=color[2], a=1.0)
        m.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in pts]
        return m

    def _publish_markers(self) -> None:
        """Publish both path markers (target: green, executed: orange); nothing non-finite."""
        target = [] if self._target_path is None else list(self._target_path)
        msg = MarkerArray(markers=[self._path_marker("target", 0, target, (0.1, 0.8, 0.2)),
                                   self._path_marker("executed", 1, list(self._exec_path), (1.0, 0.5, 0.0))])
        self._marker_pub.publish(msg)

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
            if self._exec_t0 is None:
                self._exec_t0 = stamp
            elapsed = stamp - self._exec_t0
            self._exec_pending.append((elapsed, q))
            self._exec_elapsed = elapsed
            if self._traj_end is not None and now > self._traj_end:   # the sent trajectory has ended
                self._end_execution("idle", R.SUCCEEDED, "the trajectory was executed to its end")
                return
            if self.command_mode == "velocity":
                k = int(math.floor(elapsed / (self.learner.dt * self._exec_scale) + 1e-6))
                if k >= len(self._omega):
                    self._publish_zero()
                    self._end_execution("idle", R.SUCCEEDED, "the trajectory was executed to its end")
                    return
                cmd = np.zeros(len(self.joints))
                cmd[self._learned_idx] = self._omega[max(k, 0)] / self._exec_scale
                self._publish_velocity(self._safe(cmd, q))
            self._progress_update(now)

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

    def _send_trajectory(self, scale: float = 1.0) -> float:
        """Integrate the learned velocities (clamped to the velocity limits) from the current positions into
        one JointTrajectory (clamped to the joint limits) and send it, its times stretched by ``scale``;
        returns its duration (s)."""
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
        traj = joint_trajectory(self.learned_joints, [(k + 1) * dt * scale for k in range(len(q))], q)
        self._traj_pub.publish(traj)
        return len(q) * dt * scale

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
                    self._end_execution("idle", R.SUCCEEDED, "the trajectory was executed to its end")
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
                self.watchdog_stops += 1
                self._stop_motion()
                self._end_execution("stopped", R.STOPPED_WATCHDOG, f"/joint_states older than "
                                    f"{self.watchdog_timeout_s} s: zero velocity commanded, execution stopped")
                self.get_logger().warning(self._last_result.message)

    def _publish_status(self) -> None:
        learner = self.learner
        if learner is None:
            return
        msg = ControllerStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.state = self.state
        msg.learned = self.learned
        msg.devices_written_total = int(learner.devices_written_total)
        msg.max_writes_per_device = int(learner.max_writes_per_device)
        msg.drift_time_s = float(learner.drift_time_s)
        msg.last_loss = float(self.last_loss) if math.isfinite(self.last_loss) else 0.0
        self._status_pub.publish(msg)

    # ------------------------------------------------------------------------------------------ diagnostics
    def _diagnostics(self) -> list[Status]:
        """The node's /diagnostics item (executor thread, every ``diagnostics_period_s``)."""
        lifecycle = self.lifecycle_state
        learner = self.learner
        chip = learner.chip if learner is not None else None
        st = Status(f"{self.get_name()}: one-shot trajectory learning", ok_message="serving",
                    hardware_id=f"simulated PCM chip ({self._p['pcm.preset'] if self._p['pcm.enabled'] else 'off'})")
        with self._lock:
            state, learned, last_loss = self.state, self.learned, self.last_loss
            js_wall = self._last_js_wall
        st.add("lifecycle state", lifecycle)
        st.add("controller state", state)
        if lifecycle != "active":
            st.warn(f"not serving ({lifecycle})")
        if state == "error":
            st.error("the last learn failed (see the log)")
        st.add("command mode", self.command_mode)
        st.add("learned", learned)
        st.add("last learn loss", float(last_loss))
        self.learn_latency.add_to(st, "learn latency")
        if js_wall is None:
            st.add("/joint_states age (s)", "none received")
            if lifecycle == "active":
                st.warn("no /joint_states received: is the arm driver running?")
        else:
            age = time.monotonic() - js_wall
            st.add("/joint_states age (s)", age)
            if lifecycle == "active" and age > self.watchdog_timeout_s:
                st.warn(f"stale /joint_states: the last one is {age:.3g} s old (watchdog {self.watchdog_timeout_s} s)")
        st.add("/joint_states ignored", self.js_ignored)
        st.add("watchdog stops", self.watchdog_stops)
        if self.pool is not None and not self.pool.alive():
            st.error("the learner worker thread has died")
        if learner is not None:
            st.add("simulated drift time (s)", float(learner.drift_time_s))
            st.add("devices written (since programming)", int(learner.devices_written_total))
            if chip is not None:
                counts = chip.write_counts
                add_chip_wear(st, int(counts.size), int(counts.sum()), int(counts.max()), chip.cfg.endurance_writes)
            else:
                st.add("chip devices", 0)
        return [st]

    def destroy_node(self) -> None:
        """Also destroy the action server: ``Node.destroy_node`` leaves waitables alone, and a live action server
        keeps the node (and its DDS participant with its shared-memory files) from being destroyed."""
        server = getattr(self, "_action_server", None)
        if server is not None:
            server.destroy()
            self._action_server = None
        super().destroy_node()


def main(args=None) -> int:
    return run_node(ControllerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
