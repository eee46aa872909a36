"""Execution fidelity of learned trajectories: is what the arm executes what the controller learned?

Three paths of the end effector (m) on the target's time grid t_k = t0 + (k + 1) · 0.01 s (docs/conventions.md
§2), compared by the time-mean Euclidean distance (cm, as the end-effector error of eval-snn):

* **target**: FK of the target angles;
* **open loop**: FK of the integrated velocity commands, q_k = 0.01 s · Σ_{s ≤ k} ω_s (what the controller
  intends: the trainee's output after the one update, or the commands it published, which the node clamps to
  the velocity and joint limits);
* **executed**: the end effector of the arm (PyBullet here; a real arm the same way), sampled at the grid.

``open_loop_cm`` (target vs open loop) is the learning error, ``executed_cm`` (target vs executed) what a user
sees, and ``tracking_cm`` (open loop vs executed) the execution's own error; execution is faithful when
``tracking_cm`` is small and ``executed_cm`` ≈ ``open_loop_cm``.

:func:`execute_in_sim` runs velocity commands on :class:`pcm_l2l_ros.arm.sim.ArmSim` without ROS, paced as the
controller node paces them (one command per 0.01 s of arm time, held between); ``bench/execution_fidelity.py``
does the same through the running node graph (learn, execute, record the topics) and uses
:func:`resample_stream` on the recorded messages.
"""

from __future__ import annotations

import numpy as np

from pcm_l2l_ros.snn import tasks
from pcm_l2l_ros.snn.params import DEFAULT_CONFIG, SNNConfig

LEARNED_JOINTS = ("base_joint", "shoulder")


def open_loop_xyz(omega: np.ndarray, kin, cfg: SNNConfig = DEFAULT_CONFIG) -> np.ndarray:
    """End-effector path (..., T, 3) in m of velocity commands ``omega`` (..., T, 2) in rad/s from home."""
    om = np.asarray(omega, dtype=np.float64)
    return np.asarray(tasks.kin_xyz(kin, tasks.integrate_angles(om[None] if om.ndim == 2 else om, cfg)))[
        0 if om.ndim == 2 else slice(None)
    ]


def resample_stream(stamps_s: np.ndarray, values: np.ndarray, t0_s: float, dt_s: float, n: int) -> np.ndarray:
    """A recorded stream (stamps (m,) in s, increasing; values (m, d)) linearly interpolated at
    t0 + (k + 1) · dt, k = 0 … n − 1; raises ValueError when the recording does not cover that span."""
    t = np.asarray(stamps_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64).reshape(len(t), -1)
    grid = t0_s + dt_s * np.arange(1, n + 1)
    if len(t) < 2 or np.any(np.diff(t) <= 0):
        raise ValueError("need at least 2 samples with increasing stamps")
    if grid[0] < t[0] - 1e-9 or grid[-1] > t[-1] + 1e-9:
        raise ValueError(f"the recording [{t[0]:.3f}, {t[-1]:.3f}] s does not cover [{grid[0]:.3f}, {grid[-1]:.3f}] s")
    return np.stack([np.interp(grid, t, v[:, j]) for j in range(v.shape[1])], axis=1)


def path_error_cm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Time-mean Euclidean distance (cm) between paths a, b (..., T, 3) in m."""
    return 100.0 * np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1).mean(axis=-1)


def fidelity_metrics(target_xyz: np.ndarray, open_loop: np.ndarray, executed: np.ndarray) -> dict[str, np.ndarray]:
    """Per trajectory (arrays (..., T, 3) in m): ``open_loop_cm`` (target vs open loop), ``executed_cm``
    (target vs executed), ``tracking_cm`` (open loop vs executed), all time-mean distances in cm."""
    return {"open_loop_cm": path_error_cm(target_xyz, open_loop), "executed_cm": path_error_cm(target_xyz, executed),
            "tracking_cm": path_error_cm(open_loop, executed)}


def execute_in_sim(sim, omega: np.ndarray, cfg: SNNConfig = DEFAULT_CONFIG, *, joints=LEARNED_JOINTS,
                   settle_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Execute velocity commands ``omega`` (T, 2) in rad/s on an :class:`~pcm_l2l_ros.arm.sim.ArmSim` from home:
    command k is held for ``cfg.arm_time_per_step_s`` (0.01 s; the node's pacing), the other joints hold.

    Returns (executed end-effector path (T, 3) in m, sampled at the end of each command period, i.e. at the
    target's grid times (k + 1) · 0.01 s; the commands as the sim clamped them (T, 2), rad/s). ``settle_s``:
    time at rest at home before the first command (s)."""
    dt = float(cfg.arm_time_per_step_s)
    per = int(round(dt / sim.time_step_s))
    if per < 1 or abs(per * sim.time_step_s - dt) > 1e-9:
        raise ValueError(f"the sim step {sim.time_step_s} s must divide the command period {dt} s")
    om = np.asarray(omega, dtype=np.float64)
    sim.reset()
    sim.hold()
    if settle_s > 0:
        sim.step(int(round(settle_s / sim.time_step_s)))
    xyz = np.empty((len(om), 3))
    sent = np.empty_like(om)
    for k, w in enumerate(om):
        sent[k] = sim.command_velocity(w, joints)
        sim.step(per)
        xyz[k] = sim.ee_position()
    sim.hold()
    return xyz, sent
