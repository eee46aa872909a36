"""Meta-training of natural e-prop (trainee + learning-signal generator) in PyTorch.

One *episode* per target trajectory, exactly the inner loop of the Numba kernels (Ortner et al.
2025; docs/architecture.md §2.2), written with torch tensors so that the outer loss can be
differentiated:

1. **training run** of the trainee (250 LIF, clock input only, Ortner update order: refractory gate on
   ``r^{t-1} > 0.1``, reset by subtraction of ``v_th z^{t-1}``, no autapses). It records the
   pseudo-derivative ``psi^t = gamma/v_th * max(0, 1 - |v^t - v_th|/v_th)`` (0 while refractory) and the
   presynaptic traces ``ebar_in^t = alpha ebar_in^{t-1} + x^t``, ``ebar_rec^t = alpha ebar_rec^{t-1} + z^{t-1}``.
   The trainee only sees the clock, so the training run is the same for every task of a batch: it is
   computed once, with batch 1.
2. **LSG run** (LIF + the last ``frac_alif`` neurons ALIF, adaptive threshold ``A = v_th + beta a``, reset
   subtracts ``A^t z^{t-1}``) on clock + 16-bit target code; the learning signals are its leaky readout
   ``L^t = kappa L^{t-1} + z_lsg^t W_out_lsg``.
3. **one update** of W_in and W_rec (diagonal masked at use): ``W' = W - eta * sum_t ebar^t.T (psi^t * L^t)``,
   one weight set per task of the batch.
4. **test run** of the trainee with W' from zero state; its leaky readout is the joint angular velocity
   omega (rad/s of arm time).

Outer loss (on the test run): ``0.5 MSE(omega - omega*) + 0.5 MSE(xyz - xyz*)`` with
``q = q0 + arm_time_per_step_s * cumsum(omega)`` and ``xyz = TaskKinematics.xyz(q1, q2)`` (metres); the
kinematics is whatever ``tasks`` uses for the targets (our URDF chain by default, ``TaskKinematics.from_urdf()``;
the paper's closed form with ``.paper()``). Plus the rate regulariser
``reg_lambda * sum_j (rate_j - f_target)^2`` (rates in spikes/ms; trainee: mean of training and test run,
20 Hz; LSG: 10 Hz).

Spikes are differentiated with the surrogate gradient ``dz/dv = psi`` (the same pseudo-derivative, with the
adaptive threshold for the LSG: ``dz/dA = -psi``), also through the reset term and the adaptation variable.
Each recurrent run is one custom ``torch.autograd.Function`` (``snn.surrogate.LIFRun``): the forward loop runs without
an autograd graph and the backward is a hand-written BPTT (adjoint) loop, checked against finite differences
in ``test/test_snn_metatrain.py``. Two variants of the outer gradient:

* ``second_order=True`` (default, as the official TF code): the gradient also flows through psi and ebar
  of the training run into the trainee's initial weights;
* ``second_order=False`` (first-order): psi and ebar are treated as constants (stop-gradient); W_in, W_rec
  still get the direct path through W' and the test run.

**Hardware-aware meta-training** (:class:`ChipInTheLoop`, the official code's default ``noise_trainee`` and
``quantize_trainee``): each outer iteration the trainee's plastic matrix is programmed on a fresh simulated PCM
core (``pcm_l2l_ros.pcm``, the controller's chip) and read at the drift time; both runs use the chip's weights
``W + E`` (E = chip weight error, a constant: straight-through) and the one update is rounded to the update
quantum (1/16, stochastic or nearest) with a straight-through estimator, so the LSG learns updates that survive
the chip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from pcm_l2l_ros.quantum import check_rounding, round_to_quantum_ste
from pcm_l2l_ros.snn import families as families_mod
from pcm_l2l_ros.snn import tasks
from pcm_l2l_ros.snn.params import WEIGHT_NAMES, SNNConfig, SNNWeights
from pcm_l2l_ros.snn.surrogate import leaky_filter, leaky_filter_matrix, lif_run

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------- chip in the loop
@dataclass
class ChipInTheLoop:
    """Hardware-aware meta-training settings: a simulated PCM chip for the trainee's [W_in; W_rec].

    ``drift_s``: read time after programming (s; the chip error E includes programming noise, drift with
    drift compensation and the frozen read noise of :meth:`PCMArray.weights`); ``update_quantum`` /
    ``update_rounding``: rounding of the one update (weight units; 0 = float update); ``seed``: the chips'
    noise stream. ``pcm_cfg`` None = :func:`pcm_l2l_ros.snn.onchip.default_pcm_config`."""

    drift_s: float = 3600.0
    update_quantum: float = 1.0 / 16.0
    update_rounding: str = "stochastic"
    seed: int = 0
    chip_noise: bool = True
    pcm_cfg: object = None

    def __post_init__(self) -> None:
        check_rounding(self.update_rounding)
        if self.drift_s < 0 or self.update_quantum < 0:
            raise ValueError("drift_s and update_quantum must be >= 0")
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Restart the noise streams from ``seed`` (default: the current one)."""
        if seed is not None:
            self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def weight_error(self, W_in: torch.Tensor, W_rec: torch.Tensor, cfg: SNNConfig):
        """(E_in, E_rec): what a freshly programmed chip, read at ``drift_s``, adds to W_in / W_rec."""
        from pcm_l2l_ros.pcm import PCMArray  # noqa: PLC0415
        from pcm_l2l_ros.snn import onchip  # noqa: PLC0415

        if not self.chip_noise:
            return torch.zeros_like(W_in), torch.zeros_like(W_rec)
        M = onchip.stack_plastic(W_in.detach().double().numpy(), W_rec.detach().double().numpy())
        pcm_cfg = self.pcm_cfg if self.pcm_cfg is not None else onchip.default_pcm_config(cfg)
        chip = PCMArray(M, pcm_cfg, rng=self._rng)
        if self.drift_s > 0:
            chip.drift(self.drift_s)
        E = torch.as_tensor(chip.weights() - M, dtype=W_in.dtype)
        n_in = W_in.shape[0]
        return E[:n_in], E[n_in:]

    def quantise(self, dW: torch.Tensor) -> torch.Tensor:
        if self.update_quantum <= 0:
            return dW
        return round_to_quantum_ste(dW, self.update_quantum, self.update_rounding, self._gen)


# --------------------------------------------------------------------------------------------------- model
@dataclass
class EpisodeOut:
    """What one batched episode produces (time-major tensors)."""

    omega: torch.Tensor          # (T, B, 2) test-run output, rad/s
    omega_before: torch.Tensor   # (T, 1, 2) training-run output (the same for every task), rad/s
    z_train: torch.Tensor        # (T, 1, N) trainee spikes, training run
    z_test: torch.Tensor         # (T, B, N) trainee spikes, test run
    z_lsg: torch.Tensor          # (T, B, N_lsg) LSG spikes
    dW_in: torch.Tensor          # (B, n_clock, N) the one-shot update (already times -eta)
    dW_rec: torch.Tensor         # (B, N, N)


@dataclass
class TrainingRun:
    """The trainee's training run (shared by every task of a batch) with its eligibility factors."""

    z: torch.Tensor      # (T, 1, N) spikes
    psi: torch.Tensor    # (T, 1, N) pseudo-derivative (postsynaptic factor)
    e_in: torch.Tensor   # (T, n_clock) filtered clock input (presynaptic trace, input weights)
    e_rec: torch.Tensor  # (T, N) filtered previous-step spikes (presynaptic trace, recurrent weights)


class NaturalEprop(torch.nn.Module):
    """Trainee + LSG with meta-learnable initial weights (the six arrays of :class:`SNNWeights`)."""

    def __init__(self, cfg: SNNConfig, weights: SNNWeights, dtype=torch.float32, second_order: bool = True,
                 chip: ChipInTheLoop | None = None):
        super().__init__()
        weights.check(cfg)
        self.cfg = cfg
        self.second_order = second_order
        self.chip = chip  # hardware-aware meta-training (None: software, float update)
        self.dtype = dtype
        for k in WEIGHT_NAMES:
            setattr(self, k, torch.nn.Parameter(torch.tensor(np.asarray(getattr(weights, k)), dtype=dtype)))
        N, M = cfg.n_trainee, cfg.n_lsg
        self.register_buffer("mask_tr", 1.0 - torch.eye(N, dtype=dtype), persistent=False)
        self.register_buffer("mask_lsg", 1.0 - torch.eye(M, dtype=dtype), persistent=False)
        self.register_buffer("beta_lsg", torch.tensor(cfg.lsg_beta(np.float64), dtype=dtype), persistent=False)
        self.register_buffer("K_kappa", leaky_filter_matrix(cfg.T, cfg.kappa, dtype), persistent=False)
        self.register_buffer("K_alpha", leaky_filter_matrix(cfg.T, cfg.alpha, dtype), persistent=False)
        self._has_alif = cfg.n_lsg_alif > 0

    # ------------------------------------------------------------------ weights in and out
    def weights(self) -> SNNWeights:
        return SNNWeights.from_arrays({k: getattr(self, k).detach().cpu().numpy() for k in WEIGHT_NAMES},
                                      dtype=np.float32)

    def load_weights(self, weights: SNNWeights) -> None:
        with torch.no_grad():
            for k in WEIGHT_NAMES:
                getattr(self, k).copy_(torch.as_tensor(np.asarray(getattr(weights, k)), dtype=self.dtype))

    # ------------------------------------------------------------------ runs
    def trainee_run(self, X: torch.Tensor, W_in: torch.Tensor, W_rec: torch.Tensor):
        """Trainee run on clock X (T, n_clock) with shared (n_clock, N)/(N, N) or per-task (B, ...) weights.

        Returns (Z, V, NR), time-major (T, B, N); B = 1 for shared weights."""
        c = self.cfg
        if W_in.dim() == 3:
            I = torch.einsum("ti,bij->tbj", X, W_in)  # noqa: E741
            Wr = W_rec * self.mask_tr
        else:
            I = (X @ W_in).unsqueeze(1)  # noqa: E741
            Wr = W_rec * self.mask_tr
        return lif_run(I, Wr, None, c.v_th_trainee, c.alpha, c.rho, c.n_ref, c.gamma, c.ref_gate)

    def lsg_run(self, X_lsg: torch.Tensor):
        """LSG run on its input X_lsg (T, B, n_lsg_in); returns (learning signals L (T, B, N), spikes)."""
        c = self.cfg
        T, B, n_in = X_lsg.shape
        I = (X_lsg.reshape(T * B, n_in) @ self.W_in_lsg).reshape(T, B, -1)  # noqa: E741
        beta = self.beta_lsg if self._has_alif else None
        Z, _, _ = lif_run(I, self.W_rec_lsg * self.mask_lsg, beta, c.v_th_lsg, c.alpha, c.rho, c.n_ref,
                          c.gamma, c.ref_gate)
        M = Z.shape[-1]
        L = leaky_filter(self.K_kappa, (Z.reshape(T * B, M) @ self.W_out_lsg).reshape(T, B, -1))
        return L, Z

    def readout(self, Z: torch.Tensor) -> torch.Tensor:
        """Leaky trainee readout y^t = kappa y^{t-1} + z^t W_out (T, B, 2)."""
        T, B, N = Z.shape
        return leaky_filter(self.K_kappa, (Z.reshape(T * B, N) @ self.W_out_trainee).reshape(T, B, -1))

    def training_run(self, X_clock: torch.Tensor, W_in: torch.Tensor, W_rec: torch.Tensor) -> TrainingRun:
        """The trainee's training run on the clock and its eligibility traces (the factors of every update)."""
        c = self.cfg
        Z, V, NR = self.trainee_run(X_clock, W_in, W_rec)
        psi = (c.gamma / c.v_th_trainee) * torch.clamp(1.0 - (V - c.v_th_trainee).abs() / c.v_th_trainee,
                                                       min=0.0) * NR
        Zp = torch.cat([torch.zeros_like(Z[:1, 0]), Z[:-1, 0]], dim=0)
        return TrainingRun(Z, psi, self.K_alpha @ X_clock, self.K_alpha @ Zp)

    def update_from_signals(self, tr: TrainingRun, L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The one e-prop update (dW_in (B, n_clock, N), dW_rec (B, N, N), already times -eta) for learning
        signals L (T, B, N): dW_ij = -eta * sum_t ebar_i(t) psi_j(t) L_j(t), no autapses."""
        G = tr.psi * L                                       # (T, B, N)
        eta = self.cfg.eta
        dW_in = -eta * torch.einsum("ti,tbj->bij", tr.e_in, G)
        dW_rec = -eta * torch.einsum("ti,tbj->bij", tr.e_rec, G) * self.mask_tr
        return dW_in, dW_rec

    def episode(self, X_clock: torch.Tensor, X_lsg: torch.Tensor) -> EpisodeOut:
        """Training run -> LSG -> one update -> test run, for a batch of tasks.

        X_clock: (T, n_clock) clock spikes; X_lsg: (T, B, n_lsg_in) LSG input (clock + target code)."""
        c = self.cfg
        W_in, W_rec = self.W_in_trainee, self.W_rec_trainee
        if self.chip is not None:  # the chip's weights; the error is a constant (straight-through)
            E_in, E_rec = self.chip.weight_error(W_in, W_rec, c)
            W_in, W_rec = W_in + E_in, W_rec + E_rec
        if self.second_order:
            tr = self.training_run(X_clock, W_in, W_rec)
        else:
            with torch.no_grad():
                tr = self.training_run(X_clock, W_in, W_rec)
        Ztr = tr.z
        L, Zl = self.lsg_run(X_lsg)
        dW_in, dW_rec = self.update_from_signals(tr, L)
        if self.chip is not None:
            dW_in, dW_rec = self.chip.quantise(dW_in), self.chip.quantise(dW_rec)
        W_in1 = W_in.unsqueeze(0) + dW_in
        W_rec1 = W_rec.unsqueeze(0) + dW_rec
        Zte, _, _ = self.trainee_run(X_clock, W_in1, W_rec1)
        omega = self.readout(Zte)
        omega0 = self.readout(Ztr)
        return EpisodeOut(omega, omega0, Ztr, Zte, Zl, dW_in, dW_rec)


# --------------------------------------------------------------------------------------------------- task, loss
@dataclass
class Batch:
    """A batch of tasks as tensors: LSG input (T, B, n_lsg_in) and targets (B, T, .), plus the source."""

    X_lsg: torch.Tensor
    omega: torch.Tensor     # (B, T, 2) rad/s
    xyz: torch.Tensor       # (B, T, 3) m
    traj: tasks.TrajectoryBatch

    def __len__(self) -> int:
        return self.omega.shape[0]


def make_batch(n: int, rng: np.random.Generator, cfg: SNNConfig, kin, dtype=torch.float32,
               mode: str = "resample", families=None) -> Batch:
    """Sample n target trajectories and build the LSG input (clock + 16-bit code of xyz).

    ``families``: mixing weights of the task families (``families.parse_mixture``: a mapping or
    ``"name:w,..."``); None = the Brownian family only (``tasks.sample_trajectories``, targets that leave the
    joint limits redrawn: the same draws as before families existed)."""
    return batch_from(families_mod.sample_mixture(n, rng, families, cfg, kin, mode=mode), cfg, dtype)


def batch_from(tr: tasks.TrajectoryBatch, cfg: SNNConfig, dtype=torch.float32) -> Batch:
    """A :class:`Batch` (tensors) of target trajectories ``tr``."""
    X_lsg = torch.as_tensor(tr.lsg_input(cfg, np.float32), dtype=dtype).transpose(0, 1).contiguous()
    return Batch(X_lsg, torch.as_tensor(tr.omega, dtype=dtype), torch.as_tensor(tr.xyz, dtype=dtype), tr)


def clock_tensor(cfg: SNNConfig, dtype=torch.float32) -> torch.Tensor:
    """The (fixed) clock input (T, n_clock)."""
    return torch.as_tensor(tasks.clock_input(cfg, np.float32), dtype=dtype)


def outer_loss(model: NaturalEprop, X_clock: torch.Tensor, batch: Batch, kin):
    """Meta-training loss of one batched episode: task loss of the test run + rate regulariser.

    Returns (total, metrics dict of floats, EpisodeOut)."""
    cfg = model.cfg
    out = model.episode(X_clock, batch.X_lsg)
    omega = out.omega.transpose(0, 1)                                   # (B, T, 2)
    xyz = tasks.forward_xyz(omega, kin, cfg)
    task, mse_w, mse_x = tasks.loss_terms(omega, batch.omega, xyz, batch.xyz)
    B = omega.shape[0]
    z_tr = torch.cat([out.z_train.expand(-1, B, -1), out.z_test], dim=0).transpose(0, 1)  # both runs
    reg_tr = tasks.rate_regulariser(z_tr, cfg.f_target_trainee_hz, cfg.reg_lambda, cfg)
    reg_lsg = tasks.rate_regulariser(out.z_lsg.transpose(0, 1), cfg.f_target_lsg_hz, cfg.reg_lambda, cfg)
    total = task + reg_tr + reg_lsg
    hz = 1000.0 / cfg.dt_ms
    task_d, mse_w_d, mse_x_d = float(task.detach()), float(mse_w.detach()), float(mse_x.detach())
    m = {"loss": task_d, "mse_omega": mse_w_d, "mse_xyz": mse_x_d,
         "reg": float((reg_tr + reg_lsg).detach()), "rate_trainee_hz": float(z_tr.detach().mean()) * hz,
         "rate_lsg_hz": float(out.z_lsg.detach().mean()) * hz}
    return total, m, out


@torch.no_grad()
def evaluate(model: NaturalEprop, X_clock: torch.Tensor, batch: Batch, kin, chunk: int = 64) -> dict:
    """Validation numbers on a fixed batch: loss before / after the one update, MSEs, end-effector error
    (median / mean over trajectories, cm), firing rates (Hz); for a batch of several task families also the
    median end-effector error after the update per family (``ee_median_cm_after_<family>``)."""
    cfg = model.cfg
    om_after, rates_lsg = [], []
    out = None
    for s in range(0, len(batch), chunk):
        sub = Batch(batch.X_lsg[:, s:s + chunk], batch.omega[s:s + chunk], batch.xyz[s:s + chunk],
                    batch.traj.subset(slice(s, s + chunk)))
        out = model.episode(X_clock, sub.X_lsg)
        om_after.append(out.omega.transpose(0, 1).double().numpy())
        rates_lsg.append(float(out.z_lsg.mean()))
    om_after = np.concatenate(om_after)
    om_before = np.broadcast_to(out.omega_before.transpose(0, 1).double().numpy(), om_after.shape)
    tgt_w, tgt_x = batch.traj.omega, batch.traj.xyz
    res = {}
    for tag, om in (("before", om_before), ("after", om_after)):
        xyz = np.asarray(tasks.forward_xyz(om, kin, cfg))
        loss, mse_w, mse_x = tasks.loss_terms(om, tgt_w, xyz, tgt_x)
        ee = 100.0 * tasks.ee_distance(xyz, tgt_x).mean(axis=1)
        res[f"loss_{tag}"] = float(loss)
        res[f"mse_omega_{tag}"] = float(mse_w)
        res[f"mse_xyz_{tag}"] = float(mse_x)
        res[f"ee_median_cm_{tag}"] = float(np.median(ee))
        res[f"ee_mean_cm_{tag}"] = float(ee.mean())
    fam = batch.traj.family
    if fam is not None and len(set(fam)) > 1:
        for f in dict.fromkeys(fam):
            res[f"ee_median_cm_after_{f}"] = float(np.median(ee[fam == f]))  # ee: after the update (last tag)
    hz = 1000.0 / cfg.dt_ms
    res["rate_trainee_hz"] = float(out.z_train.mean()) * hz
    res["rate_lsg_hz"] = float(np.mean(rates_lsg)) * hz
    res["n"] = len(batch)
    return res
