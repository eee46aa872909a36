"""Parameters and weights of the natural e-prop robot-arm controller (trainee + learning-signal generator).

Conventions (the official code of Ortner et al. 2025; docs/conventions.md §2, §3):

* one network step is ``dt_ms`` = 1 ms of network time; a trial has ``T`` = 249 steps;
* membrane decay ``alpha = exp(-dt/tau_m)``, readout decay ``kappa = exp(-dt/tau_out)``, threshold
  adaptation decay ``rho = exp(-dt/tau_a)``; no ``(1 - alpha)`` input factor; reset by subtraction;
* the trainee's readouts are the angular velocities of the base and the shoulder joint. The task integrates
  them with ``arm_time_per_step_s`` = 0.01 s per step (a trial commands 2.49 s of arm motion), so omega is in
  rad/s of arm time;
* weight matrices are stored ``(n_pre, n_post)`` (row = presynaptic, the product is ``x @ W``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

WEIGHT_NAMES = ("W_in_trainee", "W_rec_trainee", "W_out_trainee", "W_in_lsg", "W_rec_lsg", "W_out_lsg")
CHECKPOINT_KIND = "snn_l2l"


@dataclass(frozen=True)
class SNNConfig:
    """Hyper-parameters of trainee, LSG, inner update and task (defaults = the paper's code defaults).

    Units: times in ms of network time unless the name says otherwise; rates in Hz; thresholds and weights
    are dimensionless (membrane units).
    """

    n_trainee: int = 250
    n_lsg: int = 800
    frac_alif: float = 0.3          # fraction of LSG neurons that are ALIF (the LAST ones)
    n_clock: int = 5
    n_coord_bits: int = 16          # bits per Cartesian coordinate in the LSG input
    # joint-space target code in the LSG input (not in the paper; 0 = the paper's input): per joint, Gaussian
    # tuning curves over the target's angular velocity omega* (rad/s) and angle q* (rad), see tasks.joint_code
    n_joint_code: int = 0           # tuning curves per joint and per variable (4 * n_joint_code inputs)
    joint_code_omega_max: float = 1.5   # centres span [-max, max] rad/s
    joint_code_q_max: float = 1.6       # centres span [-max, max] rad
    joint_code_gain: float = 1.0        # peak input of a tuning curve (the binary code's inputs are 0/1); under
    #                                     Adam a gain g learns the code's weights as fast as a g-fold learning rate
    n_out: int = 2                  # trainee readouts: omega of base and shoulder (rad/s)
    n_coords: int = 3               # Cartesian target coordinates x, y, z (m)
    T: int = 249                    # steps per trial
    dt_ms: float = 1.0
    tau_m_ms: float = 20.0
    tau_out_ms: float = 20.0
    tau_a_ms: float = 600.0
    beta: float = 1.6               # threshold adaptation strength of the LSG's ALIF neurons
    v_th_trainee: float = 0.6
    v_th_lsg: float = 1.3
    n_ref: int = 5                  # refractory steps (spike + 4 blocked steps)
    gamma: float = 0.3              # pseudo-derivative dampening
    eta: float = 1e-4               # inner-loop (one-shot) learning rate
    arm_time_per_step_s: float = 0.01
    f_target_trainee_hz: float = 20.0
    f_target_lsg_hz: float = 10.0
    reg_lambda: float = 0.25
    # clock: neuron k spikes every clock_isi_ms during [k*clock_window_ms, (k+1)*clock_window_ms)
    clock_window_ms: int = 50
    clock_isi_ms: int = 10
    # Brownian trajectory family (docs/conventions.md §4): velocity random walk, Hann smoothing, clipping
    traj_delta: float = 0.65        # Brownian scale; step std = traj_delta * sqrt(traj_dt)
    traj_dt: float = 0.01
    traj_hann_len: int = 120
    traj_omega_clip: float = math.pi   # rad/s
    update_quantum: float = 1.0 / 16.0  # rounding step of the quantised one-shot update (weight units)

    # ---------------------------------------------------------------- derived quantities
    @property
    def alpha(self) -> float:
        """Membrane decay per step, exp(-dt/tau_m)."""
        return math.exp(-self.dt_ms / self.tau_m_ms)

    @property
    def kappa(self) -> float:
        """Readout (and learning-signal) decay per step, exp(-dt/tau_out)."""
        return math.exp(-self.dt_ms / self.tau_out_ms)

    @property
    def rho(self) -> float:
        """Threshold-adaptation decay per step, exp(-dt/tau_a)."""
        return math.exp(-self.dt_ms / self.tau_a_ms)

    @property
    def n_lsg_alif(self) -> int:
        return self.n_lsg - self.n_lsg_lif

    @property
    def n_lsg_lif(self) -> int:
        # as in the official code: n_lif = n - int(frac * n)
        return self.n_lsg - int(self.frac_alif * self.n_lsg)

    @property
    def n_lsg_in(self) -> int:
        """LSG input size: clock + binary codes of the target coordinates (53 by default) + the joint code."""
        return self.n_clock + self.n_coords * self.n_coord_bits + self.n_joint_code_in

    @property
    def n_joint_code_in(self) -> int:
        """Inputs of the joint-space target code: omega* and q* of each of the n_out joints."""
        return 2 * self.n_out * self.n_joint_code

    @property
    def ref_gate(self) -> float:
        """A neuron is refractory when its counter r^{t-1} exceeds this value."""
        return 0.1

    def lsg_beta(self, dtype=np.float64) -> np.ndarray:
        """Per-neuron adaptation strength of the LSG: 0 for the first LIF neurons, beta for the ALIF ones."""
        b = np.zeros(self.n_lsg, dtype=dtype)
        b[self.n_lsg_lif:] = self.beta
        return b

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SNNConfig:
        """Build from a dict (e.g. a checkpoint sidecar's ``config``); unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **kw) -> SNNConfig:
        return dataclasses.replace(self, **kw)


#: the default configuration (frozen, safe as a default argument)
DEFAULT_CONFIG = SNNConfig()


@dataclass
class SNNWeights:
    """The six weight matrices, named as in the released checkpoint (row = presynaptic, ``x @ W``)."""

    W_in_trainee: np.ndarray    # (n_clock, n_trainee)
    W_rec_trainee: np.ndarray   # (n_trainee, n_trainee); diagonal unused (no autapses)
    W_out_trainee: np.ndarray   # (n_trainee, 2) -> omega (rad/s)
    W_in_lsg: np.ndarray        # (n_lsg_in, n_lsg)
    W_rec_lsg: np.ndarray       # (n_lsg, n_lsg); diagonal unused
    W_out_lsg: np.ndarray       # (n_lsg, n_trainee) -> learning signals
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(getattr(self, k).shape) for k in WEIGHT_NAMES}

    def to_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in WEIGHT_NAMES}

    def astype(self, dtype) -> SNNWeights:
        return SNNWeights(**{k: np.ascontiguousarray(getattr(self, k), dtype=dtype) for k in WEIGHT_NAMES},
                          meta=dict(self.meta))

    def copy(self) -> SNNWeights:
        return SNNWeights(**{k: getattr(self, k).copy() for k in WEIGHT_NAMES}, meta=dict(self.meta))

    @staticmethod
    def expected_shapes(cfg: SNNConfig) -> dict[str, tuple[int, ...]]:
        return {
            "W_in_trainee": (cfg.n_clock, cfg.n_trainee),
            "W_rec_trainee": (cfg.n_trainee, cfg.n_trainee),
            "W_out_trainee": (cfg.n_trainee, cfg.n_out),
            "W_in_lsg": (cfg.n_lsg_in, cfg.n_lsg),
            "W_rec_lsg": (cfg.n_lsg, cfg.n_lsg),
            "W_out_lsg": (cfg.n_lsg, cfg.n_trainee),
        }

    def check(self, cfg: SNNConfig) -> None:
        """Raise ValueError if a shape does not match ``cfg``."""
        exp = self.expected_shapes(cfg)
        bad = {k: (self.shapes()[k], exp[k]) for k in WEIGHT_NAMES if self.shapes()[k] != exp[k]}
        if bad:
            raise ValueError(f"weight shapes do not match the config (got, expected): {bad}")

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], dtype=np.float32, meta=None) -> SNNWeights:
        missing = [k for k in WEIGHT_NAMES if k not in arrays]
        if missing:
            raise KeyError(f"missing weight arrays: {missing}")
        return cls(**{k: np.ascontiguousarray(arrays[k], dtype=dtype) for k in WEIGHT_NAMES}, meta=meta or {})

    @classmethod
    def from_npz(cls, path: str | Path, dtype=np.float32) -> SNNWeights:
        """Load a plain npz with the six arrays (no sidecar check; use ``load`` for checkpoints)."""
        with np.load(path, allow_pickle=False) as z:
            return cls.from_arrays({k: z[k] for k in z.files}, dtype=dtype, meta={"path": str(path)})

    @classmethod
    def reference(cls, dtype=np.float32) -> SNNWeights:
        """The paper's released meta-trained weights (shared/reference/ortner2025/robot_weights.npz).

        For comparison only: these are not this project's weights and must never be shipped as ours.
        """
        from pcm_l2l_ros.paths import shared_dir  # noqa: PLC0415

        w = cls.from_npz(shared_dir() / "reference" / "ortner2025" / "robot_weights.npz", dtype=dtype)
        w.meta["source"] = "ortner2025 released weights (reference)"
        return w

    @classmethod
    def load(cls, path: str | Path, cfg: SNNConfig | None = None, dtype=np.float32) -> tuple[SNNWeights, SNNConfig]:
        """Load a project checkpoint (npz + sidecar json, kind ``snn_l2l``); returns (weights, config).

        The config comes from the sidecar's ``config`` unless ``cfg`` is given.
        """
        from pcm_l2l_ros.checkpoint import load_checkpoint  # noqa: PLC0415

        arrays, side = load_checkpoint(path, kind=CHECKPOINT_KIND)
        cfg = cfg or SNNConfig.from_dict(side.get("config") or {})
        w = cls.from_arrays(arrays, dtype=dtype, meta={"path": str(path), "sidecar": side})
        w.check(cfg)
        return w, cfg

    def widen_lsg(self, cfg: SNNConfig, n_lsg: int, rng: np.random.Generator | int | None = None,
                  noise: float = 0.1) -> SNNWeights:
        """These weights with an LSG of ``n_lsg`` neurons, computing exactly the same learning signals.

        Function-preserving widening (Chen et al. 2016, "Net2Net"): the LIF neurons keep the first places and the
        ALIF ones the last (the layout of :class:`SNNConfig`); each added neuron receives the input and recurrent
        weights of a random old neuron of its kind plus noise, so it spikes like its peers, but its outgoing
        recurrent weights and learning-signal weights are 0 until meta-training changes them. The trainee's
        weights are untouched. The rate regulariser sees the new neurons, the outputs do not.
        """
        if n_lsg < cfg.n_lsg:
            raise ValueError(f"widen_lsg: n_lsg {n_lsg} is smaller than the checkpoint's {cfg.n_lsg}")
        self.check(cfg)
        rng = np.random.default_rng(rng)
        new = cfg.replace(n_lsg=n_lsg)
        old_lif, new_lif = cfg.n_lsg_lif, new.n_lsg_lif
        if new.n_lsg_alif < cfg.n_lsg_alif or new_lif < old_lif:
            raise ValueError("widen_lsg: the wider LSG must have at least as many LIF and ALIF neurons")
        # old neuron k sits at place[k] in the wider network
        place = np.concatenate([np.arange(old_lif), new_lif + np.arange(cfg.n_lsg_alif)])
        added = np.setdiff1d(np.arange(n_lsg), place)
        # each added neuron copies the incoming weights of a random old neuron of its kind, plus noise of
        # `noise` x the weights' spread (symmetry breaking), so it spikes about as often as its peers
        src = np.where(added < new_lif, rng.integers(0, old_lif, added.size),
                       old_lif + rng.integers(0, cfg.n_lsg_alif, added.size))
        rec = self.W_rec_lsg.astype(np.float64) * (1.0 - np.eye(cfg.n_lsg))  # no autapse to copy
        W_in = np.zeros((new.n_lsg_in, n_lsg))
        W_in[:, place] = self.W_in_lsg
        W_in[:, added] = self.W_in_lsg[:, src] + noise * float(self.W_in_lsg.std()) * rng.standard_normal(
            (new.n_lsg_in, added.size))
        W_rec = np.zeros((n_lsg, n_lsg))
        W_rec[np.ix_(place, place)] = self.W_rec_lsg
        W_rec[np.ix_(place, added)] = rec[:, src] + noise * float(rec.std()) * rng.standard_normal(
            (cfg.n_lsg, added.size))
        W_out = np.zeros((n_lsg, new.n_trainee))
        W_out[place] = self.W_out_lsg
        arrays = self.to_dict() | {"W_in_lsg": W_in, "W_rec_lsg": W_rec, "W_out_lsg": W_out}
        meta = dict(self.meta) | {"widened_lsg": {"from": cfg.n_lsg, "to": n_lsg}}
        return SNNWeights.from_arrays(arrays, dtype=self.W_in_lsg.dtype, meta=meta)

    def add_joint_code(self, cfg: SNNConfig, n_joint_code: int) -> SNNWeights:
        """These weights with the LSG input extended by a joint-space target code of ``n_joint_code`` tuning
        curves per joint and variable (:func:`pcm_l2l_ros.snn.tasks.joint_code`), computing exactly the same
        learning signals: the new input rows of W_in_lsg are 0 until meta-training changes them."""
        if cfg.n_joint_code:
            raise ValueError(f"add_joint_code: the LSG already has a joint code ({cfg.n_joint_code} per joint)")
        if n_joint_code < 2:
            raise ValueError(f"add_joint_code: n_joint_code must be >= 2, got {n_joint_code}")
        self.check(cfg)
        new = cfg.replace(n_joint_code=n_joint_code)
        W_in = np.zeros((new.n_lsg_in, cfg.n_lsg), dtype=self.W_in_lsg.dtype)
        W_in[:cfg.n_lsg_in] = self.W_in_lsg   # the code is appended after the clock and the binary code
        meta = dict(self.meta) | {"added_joint_code": n_joint_code}
        return SNNWeights.from_arrays(self.to_dict() | {"W_in_lsg": W_in}, dtype=self.W_in_lsg.dtype, meta=meta)

    @classmethod
    def init_random(cls, cfg: SNNConfig, rng: np.random.Generator | int | None = None,
                    dtype=np.float32) -> SNNWeights:
        """Initialisation of the official code: W_in, W_rec ~ N(0, 1/fan_in); trainee W_out additionally
        scaled by (1 - exp(-1/20)); LSG W_out Glorot-uniform."""
        rng = np.random.default_rng(rng)

        def gauss(n_in, n_out):
            return rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)

        lim = math.sqrt(6.0 / (cfg.n_lsg + cfg.n_trainee))
        arrays = {
            "W_in_trainee": gauss(cfg.n_clock, cfg.n_trainee),
            "W_rec_trainee": gauss(cfg.n_trainee, cfg.n_trainee),
            "W_out_trainee": gauss(cfg.n_trainee, cfg.n_out) * (1.0 - math.exp(-1.0 / 20.0)),
            "W_in_lsg": gauss(cfg.n_lsg_in, cfg.n_lsg),
            "W_rec_lsg": gauss(cfg.n_lsg, cfg.n_lsg),
            "W_out_lsg": rng.uniform(-lim, lim, (cfg.n_lsg, cfg.n_trainee)),
        }
        return cls.from_arrays(arrays, dtype=dtype, meta={"source": "random init"})


def default_checkpoint_path() -> Path:
    """Where this project's shipped meta-trained checkpoint lives (may not exist yet)."""
    from pcm_l2l_ros.paths import MODELS_DIR  # noqa: PLC0415

    return MODELS_DIR / "snn_l2l.npz"
