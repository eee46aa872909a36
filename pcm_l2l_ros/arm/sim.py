"""ROS-free PyBullet simulation of the ED-Scorbot-like arm (``urdf/edscorbot.urdf``).

Units: s, rad, rad/s, m, N m.

:class:`ArmSim` steps PyBullet with a fixed time step (default 0.002 s). Each movable joint is driven by
a PD position servo (PyBullet ``POSITION_CONTROL`` with velocity feed-forward, force limited to the
URDF effort, speed limited to the URDF velocity limit) towards a per-joint **reference**:

* velocity mode (``command_velocity``): the reference integrates the commanded velocity every physics
  step (clamped to the velocity limit), like the ED-Scorbot host that integrates the SNN's angular
  velocities into position references for the robot's position controllers;
* position mode (``command_position``): the reference is the given position (and velocity
  feed-forward), e.g. a sample of an interpolated trajectory (:class:`TrajectoryPlan`);
* hold (``hold``): the reference stays where it is (velocity 0).

Joint limits are enforced on the reference: it never leaves [lower, upper], and the feed-forward
velocity is zeroed at a limit. The simulation is deterministic: the same commands from the same
``reset`` give bit-identical states.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcm_l2l_ros.arm.urdf import Chain, default_urdf_path, load_chain

__all__ = ["ArmSim", "TrajectoryPlan", "TrajectoryError"]

log = logging.getLogger(__name__)


class TrajectoryError(ValueError):
    """A trajectory is malformed (non-finite values, non-increasing times, out of limits, ...)."""


@dataclass(frozen=True)
class TrajectoryPlan:
    """An interpolated joint trajectory starting at ``start`` (positions at t = 0).

    ``times`` (n,) in s, strictly increasing and > 0; ``positions`` (n, k) in rad; ``velocities``
    (n, k) in rad/s or None. Between waypoints: cubic Hermite if velocities are given, else linear
    (the interpolation of ros2_control's joint_trajectory_controller for these inputs); the first
    segment starts at ``start`` with ``start_velocity`` (default 0). After the last time: hold the last
    position.
    """

    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray | None
    start: np.ndarray
    start_velocity: np.ndarray | None = None

    @classmethod
    def build(cls, times, positions, velocities=None, start=None, start_velocity=None,
              lower=None, upper=None, limit_tol: float = 1e-6) -> TrajectoryPlan:
        t = np.asarray(times, dtype=float).reshape(-1)
        p = np.asarray(positions, dtype=float)
        if p.ndim != 2 or p.shape[0] != t.size or t.size == 0:
            raise TrajectoryError(f"positions shape {p.shape} does not match {t.size} time points")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
            raise TrajectoryError("non-finite time or position")
        if t[0] < 0 or np.any(np.diff(t) <= 0):
            raise TrajectoryError("time_from_start must be >= 0 and strictly increasing")
        v = None
        if velocities is not None:
            v = np.asarray(velocities, dtype=float)
            if v.shape != p.shape:
                raise TrajectoryError(f"velocities shape {v.shape} != positions shape {p.shape}")
            if not np.all(np.isfinite(v)):
                raise TrajectoryError("non-finite velocity")
        if lower is not None and np.any(p < np.asarray(lower) - limit_tol):
            raise TrajectoryError("position below the joint's lower limit")
        if upper is not None and np.any(p > np.asarray(upper) + limit_tol):
            raise TrajectoryError("position above the joint's upper limit")
        s = np.zeros(p.shape[1]) if start is None else np.asarray(start, dtype=float).reshape(p.shape[1])
        sv = None if start_velocity is None else np.asarray(start_velocity, float).reshape(p.shape[1])
        if lower is not None and upper is not None:
            p = np.clip(p, lower, upper)
        return cls(t, p, v, s, sv)

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Reference (positions rad, velocities rad/s) at ``t`` seconds after the start."""
        times, pos, vel = self.times, self.positions, self.velocities
        if t >= times[-1]:
            return pos[-1].copy(), np.zeros(pos.shape[1])
        t = max(t, 0.0)
        i = bisect.bisect_right(times.tolist(), t)  # segment end index
        t0 = 0.0 if i == 0 else times[i - 1]
        t1 = times[i]
        p0 = self.start if i == 0 else pos[i - 1]
        p1 = pos[i]
        h = t1 - t0
        if h <= 0:  # first point at t = 0
            return p1.copy(), np.zeros_like(p1)
        if vel is None:
            return p0 + (p1 - p0) * ((t - t0) / h), (p1 - p0) / h
        v0 = (self.start_velocity if self.start_velocity is not None else np.zeros_like(p0)) if i == 0 \
            else vel[i - 1]
        v1 = vel[i]
        s = (t - t0) / h
        h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
        d00, d10, d01, d11 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
        q = h00 * p0 + h10 * h * v0 + h01 * p1 + h11 * h * v1
        qd = (d00 * p0 + d10 * h * v0 + d01 * p1 + d11 * h * v1) / h
        return q, qd


class ArmSim:
    """PyBullet arm (fixed base) with per-joint velocity / position / hold commands.

    Parameters: ``urdf_path`` (default: the package's arm), ``time_step_s`` (physics step, s),
    ``gui`` (PyBullet GUI instead of DIRECT), ``home`` (rad, one per movable joint; default 0),
    ``gravity`` (m/s^2), ``position_gain`` / ``velocity_gain`` (PyBullet servo gains, dimensionless).
    """

    def __init__(self, urdf_path: str | Path | None = None, *, time_step_s: float = 0.002, gui: bool = False,
                 home: Sequence[float] | None = None, gravity: float = 9.81, position_gain: float = 0.3,
                 velocity_gain: float = 1.0, solver_iterations: int = 50):
        import pybullet as pb  # noqa: PLC0415 - prints "pybullet build time" on first import

        if not (math.isfinite(time_step_s) and 0 < time_step_s <= 0.05):
            raise ValueError(f"time_step_s must be in (0, 0.05] s, got {time_step_s}")
        if gui and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise RuntimeError("gui=True needs a display (DISPLAY is not set); use DIRECT mode (gui=False)")
        self._pb = pb
        self.urdf_path = Path(urdf_path) if urdf_path is not None else default_urdf_path()
        self.chain: Chain = load_chain(self.urdf_path)
        self.time_step_s = float(time_step_s)
        self.joint_names: tuple[str, ...] = self.chain.movable
        n = len(self.joint_names)
        self.lower = self.chain.lower
        self.upper = self.chain.upper
        self.velocity_limits = self.chain.velocity_limits
        self.efforts = np.array([self.chain.joint(j).effort for j in self.joint_names])
        self.home = np.zeros(n) if home is None else self._check_home(home)
        self.position_gain = float(position_gain)
        self.velocity_gain = float(velocity_gain)

        self._cid = pb.connect(pb.GUI if gui else pb.DIRECT)
        if self._cid < 0:
            raise RuntimeError("could not connect to PyBullet")
        pb.setTimeStep(self.time_step_s, physicsClientId=self._cid)
        pb.setGravity(0, 0, -float(gravity), physicsClientId=self._cid)
        pb.setPhysicsEngineParameter(numSolverIterations=int(solver_iterations), deterministicOverlappingPairs=1,
                                     physicsClientId=self._cid)
        self._body = pb.loadURDF(str(self.urdf_path), useFixedBase=True,
                                 flags=pb.URDF_USE_INERTIA_FROM_FILE, physicsClientId=self._cid)
        name_to_index = {}
        self._link_index = {}
        for i in range(pb.getNumJoints(self._body, physicsClientId=self._cid)):
            info = pb.getJointInfo(self._body, i, physicsClientId=self._cid)
            name_to_index[info[1].decode()] = i
            self._link_index[info[12].decode()] = i
        missing = [j for j in self.joint_names if j not in name_to_index]
        if missing:
            raise RuntimeError(f"PyBullet did not load joints {missing}")
        self._idx = [name_to_index[j] for j in self.joint_names]
        self._tip_index = self._link_index[self.chain.tip]
        # per-joint reference state
        self._ref = self.home.copy()
        self._ref_vel = np.zeros(n)
        self._cmd_vel = np.zeros(n)
        self._mode = np.array(["hold"] * n, dtype=object)
        self.steps = 0
        self.reset()

    # ------------------------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._cid is not None and self._cid >= 0:
            with contextlib.suppress(Exception):  # already disconnected
                self._pb.disconnect(physicsClientId=self._cid)
            self._cid = -1

    def __enter__(self) -> ArmSim:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()

    def _check_home(self, home) -> np.ndarray:
        h = np.asarray(home, dtype=float).reshape(-1)
        if h.size != len(self.joint_names) or not np.all(np.isfinite(h)):
            raise ValueError(f"home must be {len(self.joint_names)} finite angles (rad), got {home!r}")
        if np.any(h < self.lower) or np.any(h > self.upper):
            raise ValueError(f"home {h.tolist()} outside the joint limits")
        return h

    def reset(self, q: Sequence[float] | None = None) -> None:
        """Put the arm at rest at ``q`` (default: home), all joints holding; resets the step counter."""
        pb = self._pb
        q0 = self.home.copy() if q is None else self._check_home(q)
        for i, qi in zip(self._idx, q0, strict=True):
            pb.resetJointState(self._body, i, float(qi), 0.0, physicsClientId=self._cid)
        self._ref = q0.copy()
        self._ref_vel[:] = 0.0
        self._cmd_vel[:] = 0.0
        self._mode[:] = "hold"
        self.steps = 0

    # -------------------------------------------------------------------------------------- commands
    def _select(self, joints) -> np.ndarray:
        if joints is None:
            return np.arange(len(self.joint_names))
        out = []
        for j in joints:
            if isinstance(j, str):
                if j not in self.joint_names:
                    raise KeyError(f"unknown joint {j!r}; joints: {self.joint_names}")
                out.append(self.joint_names.index(j))
            else:
                out.append(int(j))
        return np.asarray(out, dtype=int)

    def command_velocity(self, velocities, joints=None) -> np.ndarray:
        """Velocity mode for ``joints`` (names or indices; default all): returns the clamped velocities (rad/s).

        Raises ValueError for a wrong length or non-finite values (nothing is changed then).
        """
        sel = self._select(joints)
        v = np.asarray(velocities, dtype=float).reshape(-1)
        if v.size != sel.size:
            raise ValueError(f"expected {sel.size} velocities, got {v.size}")
        if not np.all(np.isfinite(v)):
            raise ValueError("non-finite velocity")
        v = np.clip(v, -self.velocity_limits[sel], self.velocity_limits[sel])
        self._cmd_vel[sel] = v
        self._mode[sel] = "velocity"
        return v

    def command_position(self, positions, velocities=None, joints=None) -> None:
        """Position mode for ``joints``: reference positions (rad, clamped to limits) and feed-forward (rad/s)."""
        sel = self._select(joints)
        q = np.asarray(positions, dtype=float).reshape(-1)
        qd = np.zeros_like(q) if velocities is None else np.asarray(velocities, dtype=float).reshape(-1)
        if q.size != sel.size or qd.size != sel.size:
            raise ValueError(f"expected {sel.size} positions/velocities, got {q.size}/{qd.size}")
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(qd))):
            raise ValueError("non-finite position or velocity")
        self._ref[sel] = np.clip(q, self.lower[sel], self.upper[sel])
        self._ref_vel[sel] = np.clip(qd, -self.velocity_limits[sel], self.velocity_limits[sel])
        self._mode[sel] = "position"

    def hold(self, joints=None) -> None:
        """Stop ``joints`` (default all): the reference stays where it is, velocity 0."""
        sel = self._select(joints)
        self._cmd_vel[sel] = 0.0
        self._ref_vel[sel] = 0.0
        self._mode[sel] = "hold"

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self._mode.tolist())

    @property
    def reference(self) -> np.ndarray:
        """Current per-joint reference positions (rad)."""
        return self._ref.copy()

    # ----------------------------------------------------------------------------------------- step
    def step(self, n: int = 1) -> None:
        """Advance ``n`` physics steps of ``time_step_s``."""
        pb = self._pb
        dt = self.time_step_s
        vel_mode = self._mode == "velocity"
        for _ in range(int(n)):
            if vel_mode.any():
                new = self._ref + self._cmd_vel * dt
                clipped = np.clip(new, self.lower, self.upper)
                self._ref = np.where(vel_mode, clipped, self._ref)
                ff = np.where(clipped != new, 0.0, self._cmd_vel)
                self._ref_vel = np.where(vel_mode, ff, self._ref_vel)
            at_limit = ((self._ref <= self.lower) & (self._ref_vel < 0)) | (
                (self._ref >= self.upper) & (self._ref_vel > 0))
            self._ref_vel = np.where(at_limit, 0.0, self._ref_vel)
            for k, i in enumerate(self._idx):  # per joint: PyBullet applies maxVelocity only per joint
                pb.setJointMotorControl2(
                    self._body, i, pb.POSITION_CONTROL, targetPosition=float(self._ref[k]),
                    targetVelocity=float(self._ref_vel[k]), force=float(self.efforts[k]),
                    positionGain=self.position_gain, velocityGain=self.velocity_gain,
                    maxVelocity=float(self.velocity_limits[k]), physicsClientId=self._cid)
            pb.stepSimulation(physicsClientId=self._cid)
            self.steps += 1

    @property
    def time_s(self) -> float:
        """Simulated time since the last reset (s)."""
        return self.steps * self.time_step_s

    # ---------------------------------------------------------------------------------------- state
    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions rad, velocities rad/s, applied motor torques N m) of the movable joints."""
        states = self._pb.getJointStates(self._body, self._idx, physicsClientId=self._cid)
        q = np.array([s[0] for s in states])
        qd = np.array([s[1] for s in states])
        tau = np.array([s[3] for s in states])
        return q, qd, tau

    @property
    def q(self) -> np.ndarray:
        return self.joint_state()[0]

    @property
    def qd(self) -> np.ndarray:
        return self.joint_state()[1]

    def link_position(self, link: str) -> np.ndarray:
        """World position (m) of a link's URDF frame (the base is at the world origin)."""
        if link == self.chain.root:
            return np.zeros(3)
        ls = self._pb.getLinkState(self._body, self._link_index[link], computeForwardKinematics=True,
                                   physicsClientId=self._cid)
        return np.array(ls[4])

    def ee_position(self) -> np.ndarray:
        """End-effector (``chain.tip``, the tool point) position in m."""
        return self.link_position(self.chain.tip)
