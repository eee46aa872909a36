"""The task family of the one-shot robot-arm experiment: clock input, Brownian target trajectories,
binary coordinate code for the LSG, forward kinematics and the loss. The other task families (closed and open
curves people teach a robot) and family mixtures are in :mod:`pcm_l2l_ros.snn.families`.

Units: omega in rad/s of arm time, angles q in rad, Cartesian coordinates in m. One network step commands
``cfg.arm_time_per_step_s`` (0.01 s) of arm motion, so ``q_t = q_0 + 0.01 * sum_{s<=t} omega_s``.

Trajectory family (Ortner et al. 2025; docs/conventions.md §4): per joint (base, shoulder) a Brownian walk of the
angular velocity (step std ``0.65 * sqrt(0.01)``), smoothed with a normalised periodic Hann window of length 120
(front zero-padded, end padded with the reversed last 119 samples, centred slice kept), clipped to ±π rad/s,
integrated from q = 0. Two ways to respect the joint limits:

* ``mode="resample"`` (default, this project): targets whose angles leave the joint limits are rejected and
  redrawn, so every target is self-consistent (``q = ∫ omega``, ``xyz = FK(q)``).
* ``mode="clip"`` (the paper's code, used for parity with the released weights): the angles are clipped to the
  limits and the velocities are NOT corrected, so clipped targets are inconsistent (flagged in ``hit_limit``).

Functions that take arrays work on numpy arrays and on torch tensors (the meta-training differentiates them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pcm_l2l_ros.arm.kinematics import PAPER_TASK_LIMITS, TaskKinematics
from pcm_l2l_ros.arrays import cumsum as _cumsum
from pcm_l2l_ros.arrays import mean as _mean
from pcm_l2l_ros.arrays import stack as _stack
from pcm_l2l_ros.snn.params import DEFAULT_CONFIG, SNNConfig


# ---------------------------------------------------------------------------------------------- kinematics
def default_kinematics(paper: bool = False) -> TaskKinematics:
    """The task kinematics: ``TaskKinematics.from_urdf()`` (our arm, the package's convention; default) or, with
    ``paper=True``, ``TaskKinematics.paper()`` (closed form of the official code). docs/conventions.md §4."""
    return TaskKinematics.paper() if paper else TaskKinematics.from_urdf()


def kin_xyz(kin, q):
    """End-effector position (..., 3) in m for joint angles q (..., 2) = (base, shoulder) in rad."""
    p = kin.xyz(q[..., 0], q[..., 1])
    if isinstance(p, (tuple, list)):
        p = _stack(list(p), -1)
    return p


def joint_limits(kin=None) -> np.ndarray:
    """(2, 2) array [[lo_base, hi_base], [lo_shoulder, hi_shoulder]] in rad for the task.

    Taken from the kinematics object if it publishes them (``joint_limits`` / ``limits`` attribute),
    else the paper's safe space (base ±130°, shoulder ±70°; ``arm.kinematics.PAPER_TASK_LIMITS``).
    """
    for name in ("joint_limits", "limits", "task_limits"):
        lim = getattr(kin, name, None) if kin is not None else None
        if callable(lim):
            lim = lim()
        if lim is not None:
            lim = np.asarray(lim, dtype=np.float64)
            if lim.shape == (2,):  # symmetric ± limits
                lim = np.stack([-lim, lim], axis=1)
            if lim.shape == (2, 2):
                return lim
    return np.asarray(PAPER_TASK_LIMITS, dtype=np.float64)


# ---------------------------------------------------------------------------------------------- inputs
def clock_input(cfg: SNNConfig = DEFAULT_CONFIG, dtype=np.float32) -> np.ndarray:
    """Clock spikes (T, n_clock): neuron k spikes at t = k*50 + {0, 10, 20, 30, 40} ms (steps)."""
    x = np.zeros((cfg.T, cfg.n_clock), dtype=dtype)
    w, isi = int(cfg.clock_window_ms / cfg.dt_ms), int(cfg.clock_isi_ms / cfg.dt_ms)
    for k in range(cfg.n_clock):
        t = np.arange(k * w, min((k + 1) * w, cfg.T), isi)
        x[t, k] = 1
    return x


def encode_coords(xyz: np.ndarray, n_bits: int = 16, dtype=np.float32) -> np.ndarray:
    """Binary code of each coordinate: int((c + 1) * 2^(n_bits-1)), LSB first.

    xyz (..., C) in m -> (..., C * n_bits) of 0/1; coordinate c occupies columns [c*n_bits, (c+1)*n_bits).
    Valid for c in [-1, 1) m (the arm's reach is < 1 m).
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    code = ((xyz + 1.0) * 2.0 ** (n_bits - 1)).astype(np.int64)  # truncation toward zero, as int()
    bits = (code[..., None] >> np.arange(n_bits)) & 1
    return bits.reshape(*xyz.shape[:-1], xyz.shape[-1] * n_bits).astype(dtype)


def decode_coords(bits: np.ndarray, n_bits: int = 16) -> np.ndarray:
    """Inverse of :func:`encode_coords` up to the 2^-(n_bits-1) m resolution."""
    b = np.asarray(bits).reshape(*bits.shape[:-1], -1, n_bits).astype(np.int64)
    code = (b << np.arange(n_bits)).sum(-1)
    return code / 2.0 ** (n_bits - 1) - 1.0


def tuning_curves(v: np.ndarray, n: int, v_max: float, dtype=np.float32, gain: float = 1.0) -> np.ndarray:
    """Gaussian tuning curves (a place code): v (...) -> (..., n), curve k = exp(-((v - c_k) / s)^2 / 2) with
    centres c_k evenly spaced over [-v_max, v_max] and width s = their spacing, times ``gain`` (values in
    [0, gain]; a value a little beyond the range still excites the outermost curve, less). Neighbouring values
    give neighbouring codes, unlike the binary code, whose low bits flip at every quantum."""
    if n < 2 or not v_max > 0:
        raise ValueError(f"tuning_curves: need n >= 2 and v_max > 0, got {n}, {v_max}")
    c = np.linspace(-v_max, v_max, n)
    s = c[1] - c[0]
    d = (np.asarray(v, dtype=np.float64)[..., None] - c) / s
    return (gain * np.exp(-0.5 * d * d)).astype(dtype)


def joint_code(omega: np.ndarray, q: np.ndarray, cfg: SNNConfig = DEFAULT_CONFIG, dtype=np.float32) -> np.ndarray:
    """The joint-space target code (B, T, cfg.n_joint_code_in): tuning curves of omega* of each joint (rad/s, over
    ±joint_code_omega_max), then of q* of each joint (rad, over ±joint_code_q_max), peak ``joint_code_gain``."""
    n, g = cfg.n_joint_code, cfg.joint_code_gain
    parts = [tuning_curves(np.asarray(omega)[..., j], n, cfg.joint_code_omega_max, dtype, g) for j in range(cfg.n_out)]
    parts += [tuning_curves(np.asarray(q)[..., j], n, cfg.joint_code_q_max, dtype, g) for j in range(cfg.n_out)]
    return np.concatenate(parts, axis=-1)


def lsg_input(xyz: np.ndarray, cfg: SNNConfig = DEFAULT_CONFIG, dtype=np.float32, *,
              omega: np.ndarray | None = None, q: np.ndarray | None = None) -> np.ndarray:
    """LSG input (B, T, n_lsg_in): the clock, the binary code of the target xyz and, when ``cfg.n_joint_code``
    > 0, the joint code of the target's omega (rad/s) and q (rad) (:func:`joint_code`; both required then)."""
    xyz = np.asarray(xyz)
    clk = clock_input(cfg, dtype)
    parts = [np.broadcast_to(clk, (xyz.shape[0],) + clk.shape), encode_coords(xyz, cfg.n_coord_bits, dtype)]
    if cfg.n_joint_code:
        if omega is None or q is None:
            raise ValueError("lsg_input: this LSG reads the joint code of the target; pass omega and q")
        parts.append(joint_code(omega, q, cfg, dtype))
    return np.concatenate(parts, axis=-1)


# ---------------------------------------------------------------------------------------------- trajectories
def hann_periodic(n: int) -> np.ndarray:
    """Periodic Hann window of length n (TF default), normalised to sum 1."""
    w = 0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(n) / n)
    return w / w.sum()


def smooth_hann(omega: np.ndarray, n: int) -> np.ndarray:
    """Smooth (B, T, J) along time with a normalised periodic Hann window of length n.

    The front is padded with n-1 zeros, the end with the reversed last n-1 samples; the 'valid'
    cross-correlation is taken and the slice [n//2, n//2 + T) kept (as the official code).
    """
    B, T, J = omega.shape
    w = hann_periodic(n)
    tail = omega[:, T - (n - 1):][:, ::-1]
    pad = np.concatenate([np.zeros((B, n - 1, J)), omega, tail], axis=1)
    out = np.zeros_like(omega, dtype=np.float64)
    s = n // 2
    for k in range(n):
        out += w[k] * pad[:, s + k:s + k + T]
    return out


def brownian_omega(n: int, rng: np.random.Generator, cfg: SNNConfig = DEFAULT_CONFIG) -> np.ndarray:
    """n smoothed Brownian joint-velocity walks (n, T, 2) in rad/s, clipped to ±cfg.traj_omega_clip."""
    step = cfg.traj_delta * math.sqrt(cfg.traj_dt)
    raw = np.cumsum(rng.standard_normal((n, cfg.T, cfg.n_out)) * step, axis=1)
    return np.clip(smooth_hann(raw, cfg.traj_hann_len), -cfg.traj_omega_clip, cfg.traj_omega_clip)


def integrate_angles(omega, cfg: SNNConfig = DEFAULT_CONFIG, q0=None):
    """Joint angles q_t = q0 + dt_arm * cumsum(omega) (numpy or torch), shape of omega, rad."""
    q = cfg.arm_time_per_step_s * _cumsum(omega, 1)
    return q if q0 is None else q + q0


@dataclass
class TrajectoryBatch:
    """A batch of target trajectories. Arrays are float64 numpy; time on axis 1."""

    omega: np.ndarray       # (B, T, 2) target angular velocities (rad/s)
    q: np.ndarray           # (B, T, 2) target angles (rad)
    xyz: np.ndarray         # (B, T, 3) target end-effector path (m)
    hit_limit: np.ndarray   # (B,) bool: unclipped angles left the joint limits (only possible in mode 'clip')
    mode: str = "resample"
    family: np.ndarray | None = None   # (B,) object: task family of each target (snn/families.py), if known
    info: np.ndarray | None = None     # (B,) object: the generator's parameters of each target (dicts), if known

    def __len__(self) -> int:
        return self.omega.shape[0]

    def subset(self, idx) -> TrajectoryBatch:
        return TrajectoryBatch(self.omega[idx], self.q[idx], self.xyz[idx], self.hit_limit[idx], self.mode,
                               None if self.family is None else self.family[idx],
                               None if self.info is None else self.info[idx])

    def lsg_input(self, cfg: SNNConfig = DEFAULT_CONFIG, dtype=np.float32) -> np.ndarray:
        return lsg_input(self.xyz, cfg, dtype, omega=self.omega, q=self.q)


def sample_trajectories(n: int, rng: np.random.Generator | int | None, cfg: SNNConfig = DEFAULT_CONFIG,
                        kin=None, *, mode: str = "resample", limits_rad: np.ndarray | None = None,
                        oversample: float = 2.5) -> TrajectoryBatch:
    """Draw n target trajectories of the Brownian family.

    mode 'resample': reject targets whose angles leave ``limits_rad`` (default :func:`joint_limits`) and draw
    again (in blocks of ~``oversample``·n; about half the raw draws hit a limit with the paper's family).
    mode 'clip': the paper's code: clip the angles (not the velocities) to the limits.
    ``kin`` defaults to ``TaskKinematics.paper()``.
    """
    if mode not in ("resample", "clip"):
        raise ValueError(f"mode must be 'resample' or 'clip', got {mode!r}")
    rng = np.random.default_rng(rng)
    kin = kin if kin is not None else default_kinematics(paper=True)
    lim = joint_limits(kin) if limits_rad is None else np.asarray(limits_rad, dtype=np.float64)
    lo, hi = lim[:, 0], lim[:, 1]

    if mode == "clip":
        omega = brownian_omega(n, rng, cfg)
        q_raw = integrate_angles(omega, cfg)
        hit = np.any((q_raw < lo) | (q_raw > hi), axis=(1, 2))
        q = np.clip(q_raw, lo, hi)
    else:
        parts, have = [], 0
        while have < n:
            m = max(16, int(math.ceil((n - have) * oversample)))
            om = brownian_omega(m, rng, cfg)
            qq = integrate_angles(om, cfg)
            ok = ~np.any((qq < lo) | (qq > hi), axis=(1, 2))
            parts.append((om[ok], qq[ok]))
            have += int(ok.sum())
        omega = np.concatenate([p[0] for p in parts])[:n]
        q = np.concatenate([p[1] for p in parts])[:n]
        hit = np.zeros(n, dtype=bool)
    xyz = np.asarray(kin_xyz(kin, q), dtype=np.float64)
    return TrajectoryBatch(omega=omega, q=q, xyz=xyz, hit_limit=hit, mode=mode)


# ---------------------------------------------------------------------------------------------- loss, metrics
def forward_xyz(omega, kin, cfg: SNNConfig = DEFAULT_CONFIG):
    """End-effector path (B, T, 3) in m produced by velocity commands omega (B, T, 2), from q = 0."""
    return kin_xyz(kin, integrate_angles(omega, cfg))


def loss_terms(omega, omega_target, xyz, xyz_target, *, per_trajectory: bool = False):
    """(loss, MSE_omega, MSE_xyz) of outputs omega (B, T, 2) whose path xyz (B, T, 3) is known: THE task loss
    0.5·MSE_omega + 0.5·MSE_xyz (rad/s and m; numpy or torch).

    Means run over batch, time and dimension (as the official code); ``per_trajectory`` gives (B,) means over
    time and dimension.
    """
    axis = (-2, -1) if per_trajectory else None
    mse_omega = _mean((omega - omega_target) ** 2, axis)
    mse_xyz = _mean((xyz - xyz_target) ** 2, axis)
    return 0.5 * mse_omega + 0.5 * mse_xyz, mse_omega, mse_xyz


def task_loss(omega_pred, omega_target, xyz_target, kin, cfg: SNNConfig = DEFAULT_CONFIG, *,
              per_trajectory: bool = False):
    """0.5·MSE(omega) + 0.5·MSE(xyz) on the test run (numpy or torch), the path from ``forward_xyz``.

    Means run over batch, time and dimension (as the official code); ``per_trajectory`` returns (B,) means.
    """
    xyz = forward_xyz(omega_pred, kin, cfg)
    return loss_terms(omega_pred, omega_target, xyz, xyz_target, per_trajectory=per_trajectory)[0]


def rate_regulariser(z, f_target_hz: float, lam: float, cfg: SNNConfig = DEFAULT_CONFIG):
    """lam · Σ_j (mean_{b,t} z_j − f_target·dt)²; z (B, T, N) spikes (numpy or torch)."""
    f = f_target_hz * cfg.dt_ms / 1000.0
    r = _mean(_mean(z, 0), 0)
    return lam * ((r - f) ** 2).sum()


def ee_distance(xyz_pred: np.ndarray, xyz_target: np.ndarray) -> np.ndarray:
    """Euclidean end-effector distance (B, T) in m."""
    return np.linalg.norm(np.asarray(xyz_pred) - np.asarray(xyz_target), axis=-1)


def summarize(values: np.ndarray) -> dict[str, float]:
    """mean, sd, median, p90 of a 1-d sample."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "median": float(np.median(v)), "p90": float(np.percentile(v, 90))}
