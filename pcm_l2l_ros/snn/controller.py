"""The one-shot arm controller as a ROS-free object: target validation, one natural e-prop update on the chip.

Used by ``nodes/controller_node.py`` (and usable from a notebook). A target is a joint trajectory of the two
learned joints (base, shoulder) in rad, sampled at increasing times (s). The trainee produces ``T`` = 249
angular-velocity samples, each commanding ``arm_time_per_step_s`` = 0.01 s of motion from the home position,
so the target must start at home (0 rad), last at most 2.49 s, and stay within the joint and velocity limits.
It is resampled to the trainee's time grid (linear interpolation; held after its last point).

``learn`` restores the meta-trained weights on the chip if a previous update is on it (sparse
reprogramming), runs the training run through the chip's MVM, the learning-signal generator (LSG) on the
target's Cartesian path, computes ONE update ΔW = -η Σ_t ē_preᵀ(ψ⊙L), writes it by sparse reprogramming
and runs the test run through the chip; the test run's output is what ``omega`` returns for execution.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcm_l2l_ros.snn import tasks
from pcm_l2l_ros.snn.episode import learning_signals
from pcm_l2l_ros.snn.eprop import eprop_update
from pcm_l2l_ros.snn.lif import run_trainee
from pcm_l2l_ros.snn.onchip import default_pcm_config, plastic_matrix, run_trainee_chip
from pcm_l2l_ros.snn.params import SNNConfig, SNNWeights, default_checkpoint_path

log = logging.getLogger(__name__)

LEARNED_JOINTS = ("base_joint", "shoulder")
#: how far (rad) the first target point may be from home, and the timing tolerance (s) of the samples
HOME_TOLERANCE_RAD = 0.05
TIME_TOLERANCE_S = 1e-6


class TargetError(ValueError):
    """The target cannot be learned (the message says why)."""


@dataclass
class LearnResult:
    loss_before: float
    loss_after: float
    devices_written: int
    devices_restored: int
    update_time_s: float
    omega: np.ndarray          # (T, 2) test-run output after the update, rad/s
    xyz_target: np.ndarray     # (T, 3) target end-effector path, m
    xyz_after: np.ndarray      # (T, 3) path the output produces (open-loop FK), m


class OneShotController:
    """Trainee + LSG with the trainee's plastic weights on a simulated PCM core (or in float software)."""

    def __init__(self, weights: SNNWeights, cfg: SNNConfig, *, pcm: bool = True, pcm_preset: str = "hermes_per_column",
                 drift_time_s: float = 3600.0, seed: int = 0, urdf_path: str | Path | None = None,
                 learned_joint_limits: tuple[np.ndarray, np.ndarray] | None = None,
                 velocity_limits: np.ndarray | None = None, kinematics: str | None = None,
                 update_rounding: str = "stochastic"):
        from pcm_l2l_ros.arm.kinematics import TaskKinematics  # noqa: PLC0415

        self.w, self.cfg = weights, cfg
        # the LSG must see targets in the kinematic convention it was meta-trained with (sidecar config)
        kinematics = kinematics or str((weights.meta.get("sidecar") or {}).get("config", {}).get("kinematics", "urdf"))
        if kinematics not in ("urdf", "paper"):
            raise ValueError(f"kinematics must be 'urdf' or 'paper', got {kinematics!r}")
        self.kin = TaskKinematics.from_urdf(urdf_path) if kinematics == "urdf" else TaskKinematics.paper()
        self.dt = float(cfg.arm_time_per_step_s)
        lim = tasks.joint_limits(self.kin) if learned_joint_limits is None else np.stack(learned_joint_limits, 1)
        self.limits = np.asarray(lim, dtype=np.float64)                      # (2, 2) rad
        self.vmax = None if velocity_limits is None else np.asarray(velocity_limits, dtype=np.float64)
        self.drift_time_s = float(drift_time_s)
        self.clock = tasks.clock_input(cfg, np.float32)
        self.M0 = plastic_matrix(weights)
        self.pcm_preset = pcm_preset if pcm else "software"
        self.update_rounding = update_rounding
        self._rng = np.random.default_rng(seed)
        self.chip = None
        self._offset = None                # software mode: the current ΔW on [W_in; W_rec]
        self.devices_written_total = 0
        if pcm:
            from pcm_l2l_ros.pcm import PCMArray  # noqa: PLC0415

            pcm_cfg = default_pcm_config(cfg, update_rounding, pcm_preset)  # a name of pcm.presets (or old alias)
            self.chip = PCMArray(self.M0, pcm_cfg, rng=np.random.default_rng(seed), program=False)
            rep = self.chip.program()
            self.devices_written_total = int(rep.devices_written)
            if self.drift_time_s > 0:
                self.chip.drift(self.drift_time_s)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, **kw) -> OneShotController:
        """Load a project checkpoint (default: the shipped ``models/snn_l2l.npz``; checked against its sidecar)."""
        w, cfg = SNNWeights.load(path or default_checkpoint_path())
        return cls(w, cfg, **kw)

    # ---------------------------------------------------------------------------------------------- info
    @property
    def T(self) -> int:
        return int(self.cfg.T)

    @property
    def max_writes_per_device(self) -> int:
        return int(self.chip.write_counts.max()) if self.chip is not None else 0

    def describe(self) -> str:
        where = (f"PCM chip ({self.pcm_preset}, {self.chip.n_devices} devices, drift {self.drift_time_s:g} s)"
                 if self.chip is not None else "float software")
        code = (f"; LSG input: clock, binary xyz code and joint code ({self.cfg.n_joint_code} curves per joint)"
                if self.cfg.n_joint_code else "")
        return (f"trainee {self.cfg.n_trainee} LIF, LSG {self.cfg.n_lsg} ({self.cfg.frac_alif:.0%} ALIF), "
                f"trainee plastic weights on {where}{code}")

    # ---------------------------------------------------------------------------------------------- targets
    def target_from_samples(self, joint_names, times_s, positions) -> tasks.TrajectoryBatch:
        """Validate a joint trajectory and resample it to the trainee's grid; raises TargetError."""
        names = list(joint_names)
        if sorted(names) != sorted(LEARNED_JOINTS) or len(set(names)) != len(names):
            raise TargetError(f"joint_names must be exactly {list(LEARNED_JOINTS)} (any order), got {names}")
        t = np.asarray(times_s, dtype=np.float64).reshape(-1)
        q = np.asarray(positions, dtype=np.float64)
        if t.size < 2:
            raise TargetError(f"need at least 2 points, got {t.size}")
        if q.shape != (t.size, 2):
            raise TargetError(f"every point needs exactly 2 positions (got array of shape {q.shape})")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(q))):
            raise TargetError("times and positions must be finite")
        if np.any(np.diff(t) <= 0) or t[0] < 0:
            raise TargetError("time_from_start must be >= 0 and strictly increasing")
        order = [names.index(j) for j in LEARNED_JOINTS]
        q = q[:, order]
        duration = self.T * self.dt
        if t[-1] > duration + TIME_TOLERANCE_S:
            raise TargetError(f"duration {t[-1]:.3f} s exceeds what the trainee represents "
                              f"({self.T} steps x {self.dt} s = {duration:.2f} s)")
        if t[0] <= TIME_TOLERANCE_S:
            if np.any(np.abs(q[0]) > HOME_TOLERANCE_RAD):
                raise TargetError(f"the trajectory must start at home (0 rad); first point is {q[0].tolist()}")
        else:
            t, q = np.concatenate([[0.0], t]), np.concatenate([np.zeros((1, 2)), q])
        lo, hi = self.limits[:, 0], self.limits[:, 1]
        if np.any(q < lo) or np.any(q > hi):
            raise TargetError(f"positions outside the joint limits {self.limits.round(4).tolist()} rad")
        grid = self.dt * np.arange(1, self.T + 1)
        qg = np.stack([np.interp(grid, t, q[:, i]) for i in range(2)], axis=1)
        omega = np.diff(np.concatenate([np.zeros((1, 2)), qg]), axis=0) / self.dt
        if self.vmax is not None and np.any(np.abs(omega) > self.vmax + 1e-9):
            raise TargetError(f"velocity {np.abs(omega).max():.3f} rad/s exceeds the limit {self.vmax.tolist()} rad/s")
        xyz = np.asarray(tasks.kin_xyz(self.kin, qg), dtype=np.float64)
        return tasks.TrajectoryBatch(omega=omega[None], q=qg[None], xyz=xyz[None], hit_limit=np.zeros(1, bool))

    # ---------------------------------------------------------------------------------------------- learning
    def _run(self, batch: int, *, record: bool):
        if self.chip is not None:
            return run_trainee_chip(self.chip, self.clock, self.w.W_out_trainee, batch, self.cfg,
                                    record_eprop=record)
        M = self.M0 if self._offset is None else self.M0 + self._offset
        n = self.cfg.n_clock
        return run_trainee(self.clock, M[:n].astype(np.float32), M[n:].astype(np.float32), self.w.W_out_trainee,
                           self.cfg, record_eprop=record)

    def reset(self) -> int:
        """Restore the meta-trained weights; returns the number of devices rewritten."""
        if self.chip is None:
            self._offset = None
            return 0
        rep = self.chip.reprogram(self.M0 - self.chip.target_weights())
        self.devices_written_total += int(rep.devices_written)
        return int(rep.devices_written)

    def learn(self, target, *, quantize: bool = True) -> LearnResult:
        """One-shot learning of ``target`` (a TrajectoryBatch of 1, or a JointTrajectory-like object with
        ``joint_names`` and ``points[].positions/time_from_start``)."""
        if not isinstance(target, tasks.TrajectoryBatch):
            target = self.target_from_message(target)
        t0 = time.perf_counter()
        restored = self.reset()
        train = self._run(1, record=True)
        L, _ = learning_signals("natural", self.w, target, train, self.cfg)
        dwi, dwr = eprop_update(train.psi, L, train.xbar, train.zbar, self.cfg.eta)
        delta = np.concatenate([dwi[0], dwr[0]]).astype(np.float64)
        if quantize and self.chip is None:  # software emulation of the chip's write resolution
            q = self.cfg.update_quantum
            steps = delta / q
            steps = (np.floor(steps + self._rng.random(steps.shape)) if self.update_rounding == "stochastic"
                     else np.rint(steps))
            delta = steps * q
        written = 0
        if self.chip is not None:
            rep = self.chip.reprogram(delta)  # rounded to the device resolution, only changed devices written
            written = int(rep.devices_written)
            self.devices_written_total += written
        else:
            self._offset = delta
        test = self._run(1, record=False)
        elapsed = time.perf_counter() - t0
        y_before, y_after = train.y[0].astype(np.float64), test.y[0].astype(np.float64)
        loss = [float(tasks.task_loss(y[None], target.omega, target.xyz, self.kin, self.cfg))
                for y in (y_before, y_after)]
        if not np.all(np.isfinite(y_after)):
            raise RuntimeError("the trainee produced a non-finite output")
        return LearnResult(loss_before=loss[0], loss_after=loss[1], devices_written=written + restored,
                           devices_restored=restored, update_time_s=elapsed, omega=y_after,
                           xyz_target=target.xyz[0], xyz_after=tasks.forward_xyz(y_after[None], self.kin, self.cfg)[0])

    def target_from_message(self, msg) -> tasks.TrajectoryBatch:
        """A trajectory_msgs/JointTrajectory (duck-typed: no rclpy needed) -> validated target."""
        points = list(msg.points)
        n = len(msg.joint_names)
        if any(len(p.positions) != n for p in points):
            raise TargetError(f"every point needs {n} positions (one per joint name)")
        times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in points]
        positions = np.array([list(p.positions) for p in points], dtype=np.float64).reshape(len(points), n)
        return self.target_from_samples(msg.joint_names, times, positions)
