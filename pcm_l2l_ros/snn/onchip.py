"""The trainee on a simulated PCM chip: [W_in; W_rec] (5 + 250 = 255 rows x 250 columns) on one 256x256 core.

Deployment (as in Ortner et al. 2025; docs/architecture.md §2.4):

* the plastic matrices are stacked into M = [W_in; W_rec ⊙ (1 - I)] (the diagonal is programmed to 0: no
  autapses) and programmed once on one core of a :class:`pcm_l2l_ros.pcm.PCMArray` (t = 0 s);
* at the evaluation time ``drift_s`` (1 h, 1 day) after programming, with the array's drift compensation, each
  step's synaptic current of the training run is the core's MVM of the input vector u^t = [x^t, z^{t-1}]
  (batched over trajectories); membrane, spikes, readout, eligibility traces, the LSG and ΔW run on the host;
* the one update ΔW (float, host) is handed to ``PCMArray.reprogram``, which rounds it to the update quantum
  (1/16 in weight units, as the paper) and program-and-verifies only the devices whose target changed; the
  number of devices written is reported;
* the test run uses the reprogrammed core's MVM the same way.

The DAC is exact here: u^t is binary (clock spikes and trainee spikes), so any DAC with abs-max input scaling
maps it to its two extreme levels 0 and full scale without rounding error. Steps where u^t is all zero
(no input spike and no trainee spike) issue no MVM and inject zero current (event-driven read: no pulses
are applied to the crossbar), so ADC/output noise only enters when the core is actually read.

Each trajectory starts from the same programmed state of the core (the chip is restored to the meta-learned
weights between tasks); the training runs of a batch are independent reads of that state.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
from numba import njit
from tqdm import tqdm

from pcm_l2l_ros.pcm._kernels import fused_mvm
from pcm_l2l_ros.snn import tasks
from pcm_l2l_ros.snn.episode import learning_signals
from pcm_l2l_ros.snn.eprop import eprop_update, random_feedback
from pcm_l2l_ros.snn.lif import TraineeRun, trainee_step_kernel
from pcm_l2l_ros.snn.params import DEFAULT_CONFIG, SNNConfig, SNNWeights

log = logging.getLogger(__name__)


def default_pcm_config(cfg: SNNConfig = DEFAULT_CONFIG, rounding: str = "stochastic",
                       preset: str = "hermes_per_column"):
    """The controller's chip: preset ``hermes_per_column`` (the paper-like chip: HERMES statistics, 2+2 devices
    per weight, 8-bit DAC/ADC, per-MVM read noise, per-column drift compensation, per-column weight scale: with a
    per-core scale the few large weights of a core shrink every other column's signal relative to the fixed
    output noise), or another ``preset`` of :mod:`pcm_l2l_ros.pcm.presets`, with the update quantum of the paper
    (1/16 in weight units).

    ``rounding`` of the one update to that quantum: ``"stochastic"`` (default; unbiased, so a network
    meta-trained with float updates keeps its expected update on the chip) or ``"nearest"`` (the paper's
    deterministic rounding, for weights meta-trained with it, such as the released reference weights)."""
    from pcm_l2l_ros.pcm import chip  # noqa: PLC0415

    return chip(preset, update_quantum=cfg.update_quantum, update_rounding=rounding)


def plastic_matrix(w: SNNWeights) -> np.ndarray:
    """M = [W_in; W_rec with zero diagonal], (n_clock + N, N), float64."""
    return stack_plastic(w.W_in_trainee, w.W_rec_trainee)


def stack_plastic(W_in: np.ndarray, W_rec: np.ndarray) -> np.ndarray:
    """[W_in; W_rec with zero diagonal] as one float64 matrix, the layout programmed on the core."""
    W_rec = np.array(W_rec, dtype=np.float64)
    np.fill_diagonal(W_rec, 0.0)
    return np.concatenate([np.asarray(W_in, dtype=np.float64), W_rec])


def run_trainee_mvm(mvm, x: np.ndarray, W_out: np.ndarray, B: int, cfg: SNNConfig = DEFAULT_CONFIG, *,
                    record_eprop: bool = False, dtype=np.float32) -> TraineeRun:
    """Run B trials of the trainee whose synaptic currents come from ``mvm(u)`` with u = [x^t, z^{t-1}]
    (rows, n_in + N) -> (rows, N); x (T, n_in) is the shared input (the clock). Rows of u that are all zero
    are not sent to ``mvm`` (zero current). One Python-level MVM call per step: the general path (any
    ``mvm``, any array); :func:`run_trainee_chip` is the same run on one core in one compiled loop."""
    T, n_in = x.shape
    N = W_out.shape[0]
    W_out = np.ascontiguousarray(W_out, dtype=dtype)
    v, zp, y = np.zeros((B, N), dtype), np.zeros((B, N), dtype), np.zeros((B, W_out.shape[1]), dtype)
    xbar, zbar, r = np.zeros((B, n_in), dtype), np.zeros((B, N), dtype), np.zeros((B, N), np.int64)
    z_o, y_o, psi_o, xb_o, zb_o = _run_buffers(B, T, n_in, N, W_out.shape[1], record_eprop, dtype)
    u = np.zeros((B, n_in + N), np.float32)
    cur = np.zeros((B, N), dtype)
    for t in range(T):
        u[:, :n_in] = x[t]
        u[:, n_in:] = zp
        active = np.flatnonzero(u.any(axis=1))
        cur[:] = 0.0
        if active.size:
            cur[active] = mvm(u[active])
        x_t = np.ascontiguousarray(u[:, :n_in], dtype=dtype)
        trainee_step_kernel(t, cur, x_t, v, zp, r, y, xbar, zbar, W_out, dtype(cfg.alpha), dtype(cfg.kappa),
                            dtype(cfg.v_th_trainee), int(cfg.n_ref), dtype(cfg.gamma), bool(record_eprop),
                            z_o, y_o, psi_o, xb_o, zb_o)
    return _trainee_run(record_eprop, z_o, y_o, psi_o, xb_o, zb_o)


def _run_buffers(B: int, T: int, n_in: int, N: int, n_out: int, record_eprop: bool, dtype):
    z_o, y_o = np.empty((B, T, N), dtype), np.empty((B, T, n_out), dtype)
    if record_eprop:
        return z_o, y_o, np.empty((B, T, N), dtype), np.empty((B, T, n_in), dtype), np.empty((B, T, N), dtype)
    empty = np.empty((0, 0, 0), dtype)
    return z_o, y_o, empty, empty, empty


def _trainee_run(record_eprop: bool, z_o, y_o, psi_o, xb_o, zb_o) -> TraineeRun:
    if record_eprop:
        return TraineeRun(z=z_o, y=y_o, psi=psi_o, xbar=xb_o, zbar=zb_o)
    return TraineeRun(z=z_o, y=y_o)


@njit(cache=True, fastmath=False)
def _chip_trainee_steps(  # pragma: no cover - compiled
    t0, t1, x, mat, var_mat, noise_buf, pos, end, dac_nlev, dac_range, normalise, out_noise, adc_nlev, adc_range,
    colf, noise, v, zp, r, y, xbar, zbar, W_out, alpha, kappa, v_th, n_ref, gamma, record_eprop,
    z_o, y_o, psi_o, xb_o, zb_o,
):
    """Steps t0 .. t1 - 1 of ``run_trainee_mvm`` with the core's MVM ``fused_mvm`` (the call ``PCMArray.mvm``
    makes for a small batch) and its noise draws taken in order from noise_buf[pos:end].

    Returns (t, pos, need): t = the first step not run (t1 when all ran), pos = the next unused draw, need =
    the draws step t needs (it stops there when they are not all in noise_buf[pos:end])."""
    T, n_in = x.shape
    B, N = v.shape
    m = mat.shape[1]
    dt = v.dtype
    u = np.empty((B, n_in + N), np.float32)
    cur = np.zeros((B, N), dt)
    x_t = np.empty((B, n_in), dt)
    active = np.empty(B, np.int64)
    for t in range(t0, t1):
        n_act = 0
        for b in range(B):
            on = False
            for i in range(n_in):
                u[b, i] = x[t, i]
                x_t[b, i] = x[t, i]
                on = on or x[t, i] != 0.0
            for j in range(N):
                u[b, n_in + j] = zp[b, j]
                on = on or zp[b, j] != 0.0
            if on:
                active[n_act] = b
                n_act += 1
        need = n_act * m if noise else 0
        if pos + need > end:
            return t, pos, need
        cur[:] = 0.0
        if n_act > 0:
            ua = np.empty((n_act, n_in + N), np.float32)
            for a in range(n_act):
                ua[a] = u[active[a]]
            out = fused_mvm(ua, mat, var_mat, noise_buf, pos, dac_nlev, dac_range, normalise, out_noise, adc_nlev,
                            adc_range, colf)
            pos += need
            for a in range(n_act):
                for j in range(N):
                    cur[active[a], j] = out[a, j]
        trainee_step_kernel(t, cur, x_t, v, zp, r, y, xbar, zbar, W_out, alpha, kappa, v_th, n_ref, gamma,
                            record_eprop, z_o, y_o, psi_o, xb_o, zb_o)
    return t1, pos, 0


def run_trainee_chip(chip, x: np.ndarray, W_out: np.ndarray, B: int, cfg: SNNConfig = DEFAULT_CONFIG, *,
                     record_eprop: bool = False, dtype=np.float32) -> TraineeRun:
    """``run_trainee_mvm(chip.mvm, ...)`` for a :class:`pcm_l2l_ros.pcm.PCMArray` ``chip``, bit for bit (the
    same MVM kernel, the same noise draws in the same order), without a Python call per step: the 249 steps
    run in one compiled loop that leaves it only to refill the chip's noise buffer (every 64 steps at
    batch 1). Arrays or batches that ``PCMArray.mvm`` computes another way (several cores, batch >= 16, every
    non-ideality off) take ``run_trainee_mvm``."""
    op = chip.fused_operands(B)
    if op is None:
        return run_trainee_mvm(chip.mvm, x, W_out, B, cfg, record_eprop=record_eprop, dtype=dtype)
    T, n_in = x.shape
    N = W_out.shape[0]
    W_out = np.ascontiguousarray(W_out, dtype=dtype)
    x = np.ascontiguousarray(x, dtype=np.float32)
    v, zp, y = np.zeros((B, N), dtype), np.zeros((B, N), dtype), np.zeros((B, W_out.shape[1]), dtype)
    xbar, zbar, r = np.zeros((B, n_in), dtype), np.zeros((B, N), dtype), np.zeros((B, N), np.int64)
    bufs = _run_buffers(B, T, n_in, N, W_out.shape[1], record_eprop, dtype)
    state = (v, zp, r, y, xbar, zbar, W_out, dtype(cfg.alpha), dtype(cfg.kappa), dtype(cfg.v_th_trainee),
             int(cfg.n_ref), dtype(cfg.gamma), bool(record_eprop), *bufs)
    periph = (op.dac_nlev, op.dac_range, op.normalise, op.out_noise, op.adc_nlev, op.adc_range, op.colf, op.noise)
    no_draws = np.zeros(0, np.float32)
    t = 0
    while t < T:
        buf, pos, end = op.stream.window() if op.noise else (no_draws, 0, 0)
        t, pos, need = _chip_trainee_steps(t, T, x, op.mat, op.var_mat, buf, pos, end, *periph, *state)
        if op.noise:
            op.stream.commit(pos)
        if t < T:  # step t needs draws beyond the buffered chunk: the stream refills (as mvm's reserve does)
            buf, start = op.stream.reserve(need)
            t, _, _ = _chip_trainee_steps(t, t + 1, x, op.mat, op.var_mat, buf, start, start + need, *periph, *state)
    return _trainee_run(record_eprop, *bufs)


@dataclass
class OnChipResult:
    """One-shot episodes on the simulated chip, B trajectories."""

    y_before: np.ndarray          # (B, T, 2) training-run output on chip (before the update), rad/s
    y_after: np.ndarray           # (B, T, 2) test-run output on chip after the update, rad/s
    devices_written: np.ndarray   # (B,) physical PCM devices written by the update
    weights_changed: np.ndarray   # (B,) weights whose quantised target changed
    n_devices: int                # physical devices of the array
    n_weights: int                # weights on the array (255 * 250)
    rate_train_hz: float
    rate_test_hz: float
    drift_s: float
    program_devices_written: int  # devices written by the initial full programming

    @property
    def frac_devices_written(self) -> float:
        return float(self.devices_written.mean()) / self.n_devices


def one_shot_pcm(w: SNNWeights, traj: tasks.TrajectoryBatch, cfg: SNNConfig = DEFAULT_CONFIG, pcm_cfg=None, *,
                 drift_s: float = 3600.0, signal: str = "natural", eta: float | None = None,
                 B_fb: np.ndarray | None = None, rng: np.random.Generator | int | None = 0,
                 progress: bool = False) -> OnChipResult:
    """Natural e-prop (or a baseline ``signal``) with the trainee's W_in/W_rec on one simulated PCM core.

    The core is programmed at t = 0 s and read at ``drift_s`` (drift compensation as set in ``pcm_cfg``,
    default :func:`default_pcm_config`); the update is applied by sparse reprogramming at ``drift_s``.
    """
    from pcm_l2l_ros.pcm import PCMArray  # noqa: PLC0415

    rng = np.random.default_rng(rng)
    pcm_cfg = pcm_cfg if pcm_cfg is not None else default_pcm_config(cfg)
    eta = cfg.eta if eta is None else eta
    dtype = np.float32
    B = len(traj)
    M = plastic_matrix(w)
    base = PCMArray(M, pcm_cfg, rng=rng, program=False)
    prog = base.program()
    if drift_s > 0:
        base.drift(drift_s)
    clk = tasks.clock_input(cfg, dtype)
    train = run_trainee_chip(base, clk, w.W_out_trainee, B, cfg, record_eprop=True)
    if signal == "random" and B_fb is None:
        B_fb = random_feedback(w.W_out_trainee, rng)
    L, _ = learning_signals(signal, w, traj, train, cfg, B_fb=B_fb, rng=rng)

    y_after = np.empty((B, cfg.T, cfg.n_out), dtype)
    written = np.zeros(B, np.int64)
    changed = np.zeros(B, np.int64)
    test_spikes = 0.0
    for b in tqdm(range(B), desc=f"on-chip episodes (drift {drift_s:g} s)", disable=not progress, leave=False):
        dwi, dwr = eprop_update(train.psi[b:b + 1], L[b:b + 1], train.xbar[b:b + 1], train.zbar[b:b + 1], eta)
        chip = copy.deepcopy(base)
        rep = chip.reprogram(np.concatenate([dwi[0], dwr[0]]).astype(np.float64))
        written[b], changed[b] = rep.devices_written, rep.weights_changed
        test = run_trainee_chip(chip, clk, w.W_out_trainee, 1, cfg)
        y_after[b] = test.y[0]
        test_spikes += float(test.z.sum())
    log.info("on-chip: %d trajectories at drift %g s, mean devices written %.0f of %d", B, drift_s,
             written.mean(), base.n_devices)
    return OnChipResult(
        y_before=train.y, y_after=y_after, devices_written=written, weights_changed=changed,
        n_devices=base.n_devices, n_weights=M.size, rate_train_hz=train.rate_hz(cfg),
        rate_test_hz=test_spikes / (B * cfg.T * cfg.n_trainee) * 1000.0 / cfg.dt_ms, drift_s=float(drift_s),
        program_devices_written=int(prog.devices_written),
    )
