"""One natural e-prop episode in software: training run, learning signals, one update, test run; and its metrics.

Episode (docs/architecture.md §2), for every target trajectory of a batch:

1. training run of the trainee on the clock with the initial weights (identical for every trajectory, so it is
   run once and shared), recording psi, xbar, zbar;
2. learning signals L (B, T, N): from the LSG driven by clock + binary target code (``signal="natural"``), or
   from the output error of the training run for the e-prop baselines (``"symmetric"``: B = W_out,
   ``"random"``: fixed random B);
3. one update of W_in and W_rec: ΔW = -eta Σ_t ē_preᵀ(psi ⊙ L), optionally rounded to ``quantum`` (nearest,
   as the paper's software; or as the chip writes it: ``rounding`` stochastic and clipping to the chip's
   ``w_max``, :func:`chip_w_max`);
4. test run with the updated weights (per trajectory).

Metrics (per trajectory, then summarised): loss 0.5·MSE_omega + 0.5·MSE_xyz, joint-omega RMSE (rad/s),
end-effector error = time-mean Euclidean distance between produced and target path (cm). With this definition
the released weights reproduce the reference numbers (mean 8.0 ± 11.3 cm, median 2.6 cm, p90 23.4 cm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcm_l2l_ros.snn import tasks
from pcm_l2l_ros.snn.eprop import chip_update, eprop_update, feedback_learning_signal, random_feedback
from pcm_l2l_ros.snn.lif import TraineeRun, run_trainee
from pcm_l2l_ros.snn.lsg import run_lsg
from pcm_l2l_ros.snn.params import DEFAULT_CONFIG, SNNConfig, SNNWeights

SIGNALS = ("natural", "symmetric", "random", "none")


@dataclass
class OneShotResult:
    """Outputs of a batch of one-shot episodes (B trajectories)."""

    y_before: np.ndarray        # (B, T, 2) trainee output before the update (training run), rad/s
    y_after: np.ndarray         # (B, T, 2) test-run output after the update, rad/s
    rate_train_hz: float        # trainee rate in the training run
    rate_test_hz: float         # trainee rate in the test runs
    rate_lsg_hz: float | None   # LSG rate (natural e-prop only)
    n_changed: np.ndarray       # (B,) entries of [W_in; W_rec] changed by the update (ΔW != 0)
    n_plastic: int              # number of plastic entries (n_in·N + N·N)
    dW_in: np.ndarray | None = None   # (B, n_in, N) if keep_dw
    dW_rec: np.ndarray | None = None  # (B, N, N) if keep_dw

    @property
    def frac_changed(self) -> float:
        return float(self.n_changed.mean()) / self.n_plastic


def training_run(w: SNNWeights, cfg: SNNConfig = DEFAULT_CONFIG) -> TraineeRun:
    """The training run (batch 1: the clock input and the initial weights are the same for every task)."""
    return run_trainee(tasks.clock_input(cfg, w.W_rec_trainee.dtype), w.W_in_trainee, w.W_rec_trainee,
                       w.W_out_trainee, cfg, record_eprop=True)


def learning_signals(signal: str, w: SNNWeights, traj: tasks.TrajectoryBatch, train: TraineeRun,
                     cfg: SNNConfig = DEFAULT_CONFIG, *, B_fb: np.ndarray | None = None,
                     rng: np.random.Generator | int | None = 0) -> tuple[np.ndarray, float | None]:
    """L (B, T, N) for ``signal`` in SIGNALS, and the LSG rate in Hz (natural only)."""
    dtype = w.W_rec_trainee.dtype
    if signal == "natural":
        lsg = run_lsg(traj.lsg_input(cfg, dtype), w.W_in_lsg, w.W_rec_lsg, w.W_out_lsg, cfg)
        return lsg.L, lsg.rate_hz(cfg)
    if signal == "symmetric":
        B_fb = w.W_out_trainee
    elif signal == "random":
        B_fb = B_fb if B_fb is not None else random_feedback(w.W_out_trainee, rng)
    elif signal == "none":
        return np.zeros((len(traj), cfg.T, cfg.n_trainee), dtype), None
    else:
        raise ValueError(f"signal must be one of {SIGNALS}, got {signal!r}")
    return feedback_learning_signal(train.y, traj.omega.astype(dtype), B_fb).astype(dtype), None


def one_shot(w: SNNWeights, traj: tasks.TrajectoryBatch, cfg: SNNConfig = DEFAULT_CONFIG, *,
             signal: str = "natural", eta: float | None = None, quantum: float | None = None,
             B_fb: np.ndarray | None = None, rng: np.random.Generator | int | None = 0, chunk: int = 90,
             keep_dw: bool = False, train: TraineeRun | None = None, rounding: str = "nearest",
             w_max: np.ndarray | None = None) -> OneShotResult:
    """Run one-shot episodes for every trajectory of ``traj`` (in chunks of ``chunk`` to bound memory).

    eta defaults to ``cfg.eta``; quantum None = float update. With ``quantum`` (1/16: the chip's write
    resolution) the update is rounded to it: ``rounding="nearest"`` and no ``w_max`` = the paper's software
    emulation (``tf.round``); ``rounding="stochastic"`` and/or ``w_max`` ((n_in + N, N) or broadcastable, weight
    units; :func:`chip_w_max`) = exactly the chip's rule (:func:`eprop.chip_update`), the stochastic rounding
    drawn from ``rng``.
    """
    eta = cfg.eta if eta is None else eta
    train = train if train is not None else training_run(w, cfg)
    if signal == "random" and B_fb is None:
        B_fb = random_feedback(w.W_out_trainee, rng)
    clk = tasks.clock_input(cfg, w.W_rec_trainee.dtype)
    psi, xbar, zbar = train.psi, train.xbar, train.zbar
    if psi is None or xbar is None or zbar is None:
        raise ValueError("the training run must record the e-prop traces (record_eprop=True)")
    as_chip = bool(quantum) and (rounding != "nearest" or w_max is not None)
    qrng = np.random.default_rng(rng) if as_chip and rounding == "stochastic" else None
    n_in = w.W_in_trainee.shape[0]
    ys, n_changed, dwi_all, dwr_all, test_spikes, lsg_rates = [], [], [], [], 0.0, []
    for s in range(0, len(traj), chunk):
        sub = traj.subset(slice(s, s + chunk))
        L, lsg_rate = learning_signals(signal, w, sub, train, cfg, B_fb=B_fb, rng=rng)
        if lsg_rate is not None:
            lsg_rates.append(lsg_rate * len(sub))
        if as_chip:
            dwi, dwr = eprop_update(psi, L, xbar, zbar, eta)
            M = np.concatenate([w.W_in_trainee, w.W_rec_trainee * (1 - np.eye(cfg.n_trainee))]).astype(np.float64)
            d = chip_update(np.concatenate([dwi, dwr], axis=1), M, w_max, float(quantum or 0.0), rounding, qrng)
            dwi, dwr = d[:, :n_in].astype(dwi.dtype), d[:, n_in:].astype(dwr.dtype)
        else:
            dwi, dwr = eprop_update(psi, L, xbar, zbar, eta, quantum=quantum)
        test = run_trainee(clk, w.W_in_trainee + dwi, w.W_rec_trainee + dwr, w.W_out_trainee, cfg)
        ys.append(test.y)
        test_spikes += float(test.z.sum())
        n_changed.append(np.count_nonzero(dwi, axis=(1, 2)) + np.count_nonzero(dwr, axis=(1, 2)))
        if keep_dw:
            dwi_all.append(dwi)
            dwr_all.append(dwr)
    y_after = np.concatenate(ys)
    B = len(traj)
    return OneShotResult(
        y_before=np.broadcast_to(train.y, (B,) + train.y.shape[1:]),
        y_after=y_after,
        rate_train_hz=train.rate_hz(cfg),
        rate_test_hz=test_spikes / (B * cfg.T * cfg.n_trainee) * 1000.0 / cfg.dt_ms,
        rate_lsg_hz=(sum(lsg_rates) / B) if lsg_rates else None,
        n_changed=np.concatenate(n_changed),
        n_plastic=cfg.n_clock * cfg.n_trainee + cfg.n_trainee ** 2,
        dW_in=np.concatenate(dwi_all) if keep_dw else None,
        dW_rec=np.concatenate(dwr_all) if keep_dw else None,
    )


def chip_w_max(w: SNNWeights, pcm_cfg) -> np.ndarray:
    """The weight mapped to full conductance for every entry of [W_in; W_rec] (n_in + N, N) when ``w`` is
    programmed on a chip of config ``pcm_cfg`` (per column or per core, as the chip computes it)."""
    from pcm_l2l_ros.pcm import PCMArray  # noqa: PLC0415 - lazy: the software episode does not need the chip

    M = np.concatenate([w.W_in_trainee, w.W_rec_trainee * (1 - np.eye(w.W_rec_trainee.shape[0]))])
    arr = PCMArray(M.astype(np.float64), pcm_cfg, rng=0, program=False)
    wm = np.asarray(arr.w_max_map, dtype=np.float64)              # (row blocks, N)
    return np.repeat(wm, int(pcm_cfg.core_size), axis=0)[: M.shape[0]]


# ---------------------------------------------------------------------------------------------------- metrics
def trajectory_metrics(y: np.ndarray, traj: tasks.TrajectoryBatch, kin, cfg: SNNConfig = DEFAULT_CONFIG
                       ) -> dict[str, np.ndarray]:
    """Per-trajectory metrics of outputs y (B, T, 2) in rad/s against the targets.

    loss (B,): 0.5·MSE_omega + 0.5·MSE_xyz; omega_mse (B, 2) per joint, (rad/s)²; ee_err_cm (B,): time-mean
    end-effector distance in cm; xyz (B, T, 3) produced path in m.
    """
    y = np.asarray(y, dtype=np.float64)
    xyz = tasks.forward_xyz(y, kin, cfg)
    d = tasks.ee_distance(xyz, traj.xyz)
    return {
        "loss": tasks.loss_terms(y, traj.omega, xyz, traj.xyz, per_trajectory=True)[0],
        "omega_mse": np.mean((y - traj.omega) ** 2, axis=1),
        "ee_err_cm": 100.0 * d.mean(axis=1),
        "xyz": xyz,
    }


def summary_metrics(m: dict[str, np.ndarray], prefix: str = "") -> dict[str, float]:
    """Batch summary: loss (mean over batch, = the official batch loss), omega RMSE per joint (rad/s; pooled over
    all trajectories and steps, and the mean of the per-trajectory RMSEs), end-effector error mean/sd/median/p90
    (cm)."""
    rmse = np.sqrt(m["omega_mse"].mean(axis=0))
    rmse_traj = np.sqrt(m["omega_mse"]).mean(axis=0)  # mean of the per-trajectory RMSEs
    out = {"loss": float(m["loss"].mean()), "omega_rmse_base": float(rmse[0]),
           "omega_rmse_shoulder": float(rmse[1]), "omega_rmse_base_traj_mean": float(rmse_traj[0]),
           "omega_rmse_shoulder_traj_mean": float(rmse_traj[1])}
    out.update({f"ee_{k}_cm": v for k, v in tasks.summarize(m["ee_err_cm"]).items()})
    return {prefix + k: v for k, v in out.items()}
