"""Simulation node: the PyBullet arm on the standard ros2_control topics.

Interfaces (the same a real arm driver with ros2_control offers, so a driver can replace this node):

* publishes ``/joint_states`` (sensor_msgs/JointState: all movable joints, rad, rad/s, N m) at
  ``rate_hz`` (default 100 Hz), and ``~/end_effector`` (geometry_msgs/PointStamped, m, frame ``frame_id``);
* consumes ``/forward_velocity_controller/commands`` (std_msgs/Float64MultiArray, rad/s, one value per
  joint of ``command_joints`` in that order) like forward_command_controller: a message with the wrong
  length or a NaN/inf is rejected with a warning and never reaches the simulator; values beyond the
  URDF velocity limit are clamped (warning). If no command arrives for ``command_timeout_s`` the
  commanded joints stop and hold their position;
* consumes ``/joint_trajectory_controller/joint_trajectory`` (trajectory_msgs/JointTrajectory) like
  joint_trajectory_controller: joint names must be known movable joints (no duplicates), every point
  needs one finite position per joint within the limits, ``time_from_start`` strictly increasing;
  positions are interpolated (cubic with velocities, else linear) from the current state and tracked
  by position control; an empty trajectory stops the arm. At most ``max_trajectory_points`` points (checked
  before anything is built from them). A zero ``header.stamp`` (or one in the past)
  starts the trajectory on receipt, a future stamp then. A new trajectory replaces the running one, a
  velocity command cancels it. Malformed trajectories are rejected (warning);
* service ``~/reset`` (std_srvs/Trigger): back to ``home_positions``, all commands cleared;
* publishes ``/robot_description`` (std_msgs/String: the URDF's text) once, transient local (depth 1), so a
  late subscriber (RViz's RobotModel, ``robot_state_publisher``) still receives it.

The simulator runs in real time: every timer tick (and before every new command) it advances the
physics by the wall time elapsed since the last advance, in fixed steps of ``time_step_s``, so a
command acts for exactly as long as it was in force.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from pcm_l2l_ros.arm.sim import ArmSim, TrajectoryError, TrajectoryPlan
from pcm_l2l_ros.arm.urdf import URDFError, default_urdf_path, load_chain
from pcm_l2l_ros.nodes.common import declare_validated, float_range, int_range, run_node

VELOCITY_TOPIC = "/forward_velocity_controller/commands"
TRAJECTORY_TOPIC = "/joint_trajectory_controller/joint_trajectory"
JOINT_STATES_TOPIC = "/joint_states"
ROBOT_DESCRIPTION_TOPIC = "/robot_description"
#: /robot_description QoS, as robot_state_publisher's: the one message stays available to late subscribers
ROBOT_DESCRIPTION_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                   durability=DurabilityPolicy.TRANSIENT_LOCAL)

#: most wall time (s) one advance may simulate; beyond it the simulator drops time (warning) instead
#: of spiralling after a stall
MAX_CATCH_UP_S = 0.1


def _range(lo: float, hi: float, lo_open: bool = True):
    return float_range(lo, hi, lo_open=lo_open)   # the check, and the range shown in the parameter's descriptor


class SimNode(Node):
    """PyBullet arm simulation node (see module docstring); ``kwargs`` go to ``Node.__init__``."""

    def __init__(self, **kwargs):
        super().__init__("sim", **kwargs)
        self._sim: ArmSim | None = None

        def urdf_check(v):
            if not isinstance(v, str):
                return "must be a string"
            try:
                load_chain(v or None)
            except (OSError, URDFError) as e:
                return f"cannot load URDF: {e}"
            return None

        urdf = declare_validated(self, "urdf_path", "", "URDF of the arm; empty = the package's "
                                 "urdf/edscorbot.urdf", urdf_check, read_only=True)
        chain = load_chain(urdf or default_urdf_path())
        movable = chain.movable

        def joints_check(v):
            names = list(v) if isinstance(v, (list, tuple)) else None
            if not names or not all(isinstance(n, str) for n in names):
                return "must be a non-empty list of joint names"
            if len(set(names)) != len(names):
                return "duplicate joint names"
            unknown = [n for n in names if n not in movable]
            return f"unknown joints {unknown}; movable joints: {list(movable)}" if unknown else None

        def home_check(v):
            try:
                h = np.asarray(v, dtype=float)
            except (TypeError, ValueError):
                return "must be a list of numbers"
            if h.shape != (len(movable),) or not np.all(np.isfinite(h)):
                return f"must be {len(movable)} finite angles (rad) for {list(movable)}"
            if np.any(h < chain.lower) or np.any(h > chain.upper):
                return "outside the joint limits"
            return None

        def nonempty(v):
            return None if isinstance(v, str) and v.strip() else "must be a non-empty string"

        self.rate_hz = float(declare_validated(self, "rate_hz", 100.0, "publish rate of /joint_states and "
                                               "~/end_effector (Hz)", _range(0.0, 1000.0), read_only=True))
        self.time_step_s = float(declare_validated(self, "time_step_s", 0.002, "physics time step (s)",
                                                   _range(0.0, 0.05), read_only=True))
        declare_validated(self, "command_timeout_s", 0.2, "stop and hold when no velocity command arrives "
                          "for this long (s)", _range(0.0, 60.0))
        self.command_joints = list(declare_validated(
            self, "command_joints", list(movable), "joints of the velocity command, in the order of the "
            "Float64MultiArray (like forward_command_controller's 'joints'; default: all movable joints)", joints_check,
            read_only=True))
        home = declare_validated(self, "home_positions", [0.0] * len(movable), "home/reset joint angles "
                                 f"(rad) for {list(movable)}", home_check, read_only=True)
        self.frame_id = declare_validated(self, "frame_id", chain.root, "frame of ~/end_effector (the URDF "
                                          "root link)", nonempty, read_only=True)
        gui = declare_validated(self, "gui", False, "PyBullet GUI instead of DIRECT",
                                lambda v: None if isinstance(v, bool) else "must be a bool", read_only=True)
        pgain = declare_validated(self, "position_gain", 0.3, "PyBullet position servo gain", _range(0.0, 1.0),
                                  read_only=True)
        self.max_points = declare_validated(self, "max_trajectory_points", 10_000, "cap on the points of a "
                                            "JointTrajectory (more are rejected unread)",
                                            int_range(2, 1_000_000), read_only=True)

        self._sim = ArmSim(urdf or None, time_step_s=self.time_step_s, gui=bool(gui),
                           home=[float(x) for x in home], position_gain=float(pgain))
        self.joint_names = list(self._sim.joint_names)
        self._cmd_sel = [self.joint_names.index(n) for n in self.command_joints]

        self._epoch: float | None = None  # wall time of simulation step 0 (set when spinning starts)
        self._last_cmd: float | None = None  # wall time of the last accepted velocity command
        self._plan: TrajectoryPlan | None = None
        self._plan_sel: list[int] = []
        self._plan_t0 = 0.0  # simulation time at which the plan starts
        self.rejected = 0
        self.accepted = 0

        self._js_pub = self.create_publisher(JointState, JOINT_STATES_TOPIC, 10)
        self._ee_pub = self.create_publisher(PointStamped, "~/end_effector", 10)
        self.create_subscription(Float64MultiArray, VELOCITY_TOPIC, self._on_velocity, 10)
        self.create_subscription(JointTrajectory, TRAJECTORY_TOPIC, self._on_trajectory, 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self._publish_robot_description(Path(urdf) if urdf else default_urdf_path())
        self._timer = self.create_timer(1.0 / self.rate_hz, self._on_tick)
        self.get_logger().info(
            f"sim ready: {len(self.joint_names)} joints {self.joint_names}, velocity commands for "
            f"{self.command_joints}, {self.rate_hz:g} Hz, physics dt {self.time_step_s:g} s")

    def _publish_robot_description(self, urdf_path: Path) -> None:
        """``/robot_description``: the URDF (already parsed, so valid) as text, latched (transient local)."""
        self._description_pub = self.create_publisher(String, ROBOT_DESCRIPTION_TOPIC, ROBOT_DESCRIPTION_QOS)
        self._description_pub.publish(String(data=urdf_path.read_text()))

    # ------------------------------------------------------------------------------------ simulation
    def _advance(self, until: float | None = None) -> None:
        """Step the physics up to wall time ``until`` (monotonic s; default now) in fixed steps; an active
        trajectory is sampled every step."""
        sim = self._sim
        now = time.monotonic() if until is None else until
        if self._epoch is None:
            self._epoch = now - sim.time_s
        target = int((now - self._epoch) / sim.time_step_s)
        n = target - sim.steps
        max_n = int(MAX_CATCH_UP_S / sim.time_step_s)
        if n > max_n:
            self.get_logger().warning(f"simulation fell {n * sim.time_step_s:.3f} s behind; dropping time",
                                      throttle_duration_sec=5.0)
            self._epoch += (n - max_n) * sim.time_step_s
            n = max_n
        if n <= 0:
            return
        if self._plan is None:
            sim.step(n)
            return
        for _ in range(n):
            q, qd = self._plan.sample(sim.time_s - self._plan_t0)
            sim.command_position(q, qd, joints=self._plan_sel)
            sim.step()
        if sim.time_s - self._plan_t0 > self._plan.duration:
            sim.command_position(self._plan.positions[-1], joints=self._plan_sel)
            sim.hold(self._plan_sel)
            self._plan = None

    def _check_timeout(self) -> None:
        """Stop the velocity-commanded joints if the last command is older than ``command_timeout_s``."""
        if self._last_cmd is None:
            return
        timeout = self.get_parameter("command_timeout_s").value
        expiry = self._last_cmd + timeout
        if time.monotonic() > expiry:
            self._advance(until=expiry)  # the command acted exactly until the timeout expired
            self._sim.hold(self._cmd_sel)
            self._last_cmd = None
            self.get_logger().info(f"no velocity command for {timeout:g} s: holding position")

    def _on_tick(self) -> None:
        self._check_timeout()
        self._advance()
        self._publish()

    def _publish(self) -> None:
        q, qd, tau = self._sim.joint_state()
        stamp = self.get_clock().now().to_msg()
        js = JointState()
        js.header.stamp = stamp
        js.name = self.joint_names
        js.position = q.tolist()
        js.velocity = qd.tolist()
        js.effort = tau.tolist()
        self._js_pub.publish(js)
        ee = PointStamped()
        ee.header.stamp = stamp
        ee.header.frame_id = self.frame_id
        x, y, z = self._sim.ee_position().tolist()
        ee.point.x, ee.point.y, ee.point.z = x, y, z
        self._ee_pub.publish(ee)

    # -------------------------------------------------------------------------------------- commands
    def _reject(self, what: str, why: str) -> None:
        self.rejected += 1
        self.get_logger().warning(f"rejected {what}: {why} (rejected so far: {self.rejected})")

    def _on_velocity(self, msg: Float64MultiArray) -> None:
        v = np.asarray(msg.data, dtype=float)
        if v.size != len(self.command_joints):
            return self._reject("velocity command", f"{v.size} values for {len(self.command_joints)} joints "
                                f"{self.command_joints}")
        if not np.all(np.isfinite(v)):
            return self._reject("velocity command", f"non-finite value in {v.tolist()}")
        self._check_timeout()
        self._advance()  # the previous command acted until now
        if self._plan is not None:
            self.get_logger().info("velocity command: trajectory cancelled")
            self._plan = None
        others = [i for i in range(len(self.joint_names)) if i not in self._cmd_sel]
        if others and any(self._sim.modes[i] != "hold" for i in others):
            self._sim.hold(others)
        applied = self._sim.command_velocity(v, joints=self._cmd_sel)
        if np.any(applied != v):
            self.get_logger().warning(f"velocity command {v.tolist()} clamped to the velocity limits "
                                      f"{applied.tolist()} rad/s", throttle_duration_sec=2.0)
        self._last_cmd = time.monotonic()
        self.accepted += 1

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        names = list(msg.joint_names)
        if not msg.points:
            self._advance()
            self._plan = None
            self._last_cmd = None
            self._sim.hold()
            self.get_logger().info("empty trajectory: stopping")
            return
        if len(msg.points) > self.max_points:
            return self._reject("trajectory", f"{len(msg.points)} points exceed max_trajectory_points "
                                f"({self.max_points})")
        if not names or len(set(names)) != len(names):
            return self._reject("trajectory", f"joint names {names[:8]} empty or duplicated")
        unknown = [n for n in names if n not in self.joint_names]
        if unknown:
            return self._reject("trajectory", f"unknown joints {unknown}; known: {self.joint_names}")
        sel = [self.joint_names.index(n) for n in names]
        times, pos, vel = [], [], []
        for k, p in enumerate(msg.points):
            if len(p.positions) != len(names):
                return self._reject("trajectory", f"point {k} has {len(p.positions)} positions for "
                                    f"{len(names)} joints")
            if len(p.velocities) not in (0, len(names)):
                return self._reject("trajectory", f"point {k} has {len(p.velocities)} velocities")
            times.append(p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec)
            pos.append(list(p.positions))
            vel.append(list(p.velocities))
        use_vel = all(len(v) == len(names) for v in vel)
        self._advance()
        q_now = self._sim.reference[sel]
        try:
            plan = TrajectoryPlan.build(times, pos, vel if use_vel else None, start=q_now,
                                        lower=self._sim.lower[sel], upper=self._sim.upper[sel])
        except TrajectoryError as e:
            return self._reject("trajectory", str(e))
        delay = 0.0
        stamp = Time.from_msg(msg.header.stamp)
        if stamp.nanoseconds != 0:
            delay = max(0.0, (stamp - self.get_clock().now()).nanoseconds * 1e-9)
        self._plan, self._plan_sel, self._plan_t0 = plan, sel, self._sim.time_s + delay
        self._last_cmd = None
        others = [i for i in range(len(self.joint_names)) if i not in sel]
        if others:
            self._sim.hold(others)
        self._sim.hold(sel)  # until the plan's first sample
        self.accepted += 1
        self.get_logger().info(f"trajectory accepted: {len(times)} points over {plan.duration:.3f} s for {names}")

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._plan = None
        self._last_cmd = None
        self._sim.reset()
        self._epoch = None
        response.success = True
        response.message = f"reset to home {self._sim.home.tolist()} rad"
        self.get_logger().info(response.message)
        return response

    # ----------------------------------------------------------------------------------- lifecycle
    def on_shutdown(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None

    def destroy_node(self) -> None:
        self.on_shutdown()
        super().destroy_node()


def main(args=None) -> int:
    """Entry point ``sim_node``: hardened spin/shutdown via ``common.run_node``."""
    return run_node(SimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
