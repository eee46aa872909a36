"""Program-and-verify, sparse reprogramming, write counters, endurance and energy of PCMArray.

Statistical checks use Z = 5 Monte Carlo standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pcm_l2l_ros.pcm import AIHWKIT_PCM, EnduranceError, PCMArray, PCMConfig, program_and_verify

Z = 5.0


def test_program_and_verify_noise_free_is_one_pulse() -> None:
    g_t = np.linspace(0, 25, 1000)
    g, pulses, nconv = program_and_verify(g_t, AIHWKIT_PCM, np.random.default_rng(0), noise_scale=0.0)
    np.testing.assert_array_equal(g, g_t)
    assert np.all(pulses == 1) and nconv == 0


def test_program_and_verify_pulse_count_statistics() -> None:
    """Each pulse verifies with p = P(|N(0, sigma_prog)| <= tol), so pulses ~ geometric truncated at K:
    E[pulses] = (1 - (1 - p)^K) / p."""
    n, tol, K = 100_000, 0.5, 30
    g_t = np.full(n, 20.0)
    g, pulses, nconv = program_and_verify(
        g_t, AIHWKIT_PCM, np.random.default_rng(1), tolerance_uS=tol, max_iterations=K
    )
    sig = float(AIHWKIT_PCM.sigma_prog(np.array(20.0)))
    p = math.erf(tol / (sig * math.sqrt(2)))
    expected = (1 - (1 - p) ** K) / p
    assert abs(pulses.mean() - expected) <= Z * pulses.std() / math.sqrt(n)
    assert pulses.min() >= 1 and pulses.max() <= K
    # statistical mode keeps aihwkit's calibrated post-programming spread
    assert abs((g - 20.0).std() - sig) <= Z * sig / math.sqrt(2 * n)


def test_program_and_verify_closed_loop_within_tolerance() -> None:
    g_t = np.full(20_000, 10.0)
    g, pulses, nconv = program_and_verify(
        g_t, AIHWKIT_PCM, np.random.default_rng(2), tolerance_uS=0.3, max_iterations=50, mode="closed_loop"
    )
    assert nconv == 0
    assert np.abs(g - g_t).max() <= 0.3
    g, pulses, nconv = program_and_verify(
        g_t, AIHWKIT_PCM, np.random.default_rng(2), tolerance_uS=0.05, max_iterations=3, mode="closed_loop"
    )
    assert nconv > 0 and pulses.max() == 3


def _reference_program_and_verify(g_target, model, rng, noise_scale, tolerance_uS, max_iterations, mode):
    """The pulse loop as numpy iterations, one standard_normal call per iteration (the implementation before
    the compiled loop)."""
    flat_t = np.asarray(g_target, dtype=np.float64).reshape(-1)
    n = flat_t.size
    sig_att = noise_scale * model.sigma_prog(flat_t)
    pulses, last, active = np.zeros(n, np.int32), np.empty(n), np.arange(n)
    for _ in range(max_iterations):
        if active.size == 0:
            break
        att = flat_t[active] + sig_att[active] * rng.standard_normal(active.size)
        pulses[active] += 1
        last[active] = att
        active = active[~(np.abs(att - flat_t[active]) <= tolerance_uS)]
    g = model.apply_programming_noise(flat_t, rng, noise_scale) if mode == "statistical" else np.maximum(last, 0.0)
    return g.reshape(np.shape(g_target)), pulses.reshape(np.shape(g_target)), int(active.size)


@pytest.mark.parametrize("mode", ["statistical", "closed_loop"])
def test_program_and_verify_equals_the_iteration_by_iteration_loop(mode: str) -> None:
    """The compiled pulse loop with its draws taken ahead in blocks gives bit for bit the conductances, pulses and
    non-converged count of the numpy loop that draws once per iteration, and leaves the generator where that loop
    leaves it (the next draws agree): sizes from 1 unit to more than one block of draws, loose and tight
    tolerances (many iterations: the block of draws is extended), truncation at max_iterations."""
    sizes = np.random.default_rng(0)
    for case in range(40):
        n = int(sizes.integers(1, 3000)) if case % 5 else 1
        g_t = sizes.uniform(0, 25, n) * (sizes.random(n) < 0.8)
        g_t = g_t.reshape(2, -1) if n % 2 == 0 else g_t
        tol = float(sizes.choice([0.05, 0.2, 0.5, 2.0]))
        iters = int(sizes.choice([1, 3, 30, 200]))
        scale = float(sizes.choice([0.5, 1.0]))
        a, b = np.random.default_rng(case), np.random.default_rng(case)
        got = program_and_verify(
            g_t, AIHWKIT_PCM, a, noise_scale=scale, tolerance_uS=tol, max_iterations=iters, mode=mode
        )
        want = _reference_program_and_verify(g_t, AIHWKIT_PCM, b, scale, tol, iters, mode)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[2] == want[2]
        np.testing.assert_array_equal(a.standard_normal(5), b.standard_normal(5))


def _expected_unit_mask(W_old, W_new, wmax):
    """Units (G+ / G-) whose target conductance differs."""
    p_old, p_new = np.clip(W_old / wmax, 0, 1), np.clip(W_new / wmax, 0, 1)
    m_old, m_new = np.clip(-W_old / wmax, 0, 1), np.clip(-W_new / wmax, 0, 1)
    return np.stack([p_old != p_new, m_old != m_new])


@pytest.mark.parametrize("device,dpp", [("aihwkit_compat", 1), ("aihwkit_compat", 2), ("hermes", 2)])
def test_sparse_reprogramming_writes_exactly_the_changed_devices(device: str, dpp: int) -> None:
    rng = np.random.default_rng(3)
    W = np.round(rng.uniform(-1, 1, (40, 30)) * 16) / 16
    W[0, 0] = 1.0
    cfg = PCMConfig(device=device, devices_per_polarity=dpp, w_max=1.0)
    arr = PCMArray(W, cfg, rng=4)
    counts0 = arr.write_counts.copy()
    g0 = arr.programmed_conductances()
    q = 1 / 16
    d = np.zeros_like(W)
    d[1, :10] = 0.4 * q  # rounds to 0: no write
    d[2, :10] = 0.6 * q  # one quantum up
    d[3, :10] = -3.2 * q  # three quanta down
    d[4, :] = -2.0  # to -w_max: sign flips write both sides
    d[0, 0] = 0.5  # already at w_max: clipped, no write
    rep = arr.reprogram(d)
    W_new = np.clip(W + np.rint(d / q) * q, -1, 1)
    np.testing.assert_array_equal(arr.target_weights(), W_new)
    unit_mask = _expected_unit_mask(W, W_new, 1.0)  # (2, n_in, n_out)
    dev_mask = np.repeat(unit_mask[:, None], dpp, axis=1)
    written = (arr.write_counts - counts0) > 0
    np.testing.assert_array_equal(written, dev_mask)
    assert rep.devices_written == int(dev_mask.sum())
    assert rep.weights_changed == int(np.count_nonzero(W_new != W))
    assert rep.pulses == int((arr.write_counts - counts0).sum())
    assert rep.energy_J == pytest.approx(rep.pulses * cfg.energy_per_pulse_J)
    assert arr.devices_written_total == rep.devices_written
    # devices that were not written keep their programmed state bit for bit
    g1 = arr.programmed_conductances()
    units_mask = unit_mask[:, None].repeat(arr.units, axis=1)
    np.testing.assert_array_equal(g1[~units_mask], g0[~units_mask])
    assert np.all(g1[units_mask] != g0[units_mask])
    # an update that rounds to zero everywhere writes nothing
    rep2 = arr.reprogram(np.full(W.shape, 0.3 * q))
    assert rep2.devices_written == 0 and rep2.pulses == 0


def test_stochastic_update_rounding_is_unbiased() -> None:
    W = np.zeros((100, 100))
    W[0, 0] = 1.0
    cfg = PCMConfig.ideal(w_max=1.0, update_rounding="stochastic")
    arr = PCMArray(W, cfg, rng=5)
    arr.reprogram(np.full(W.shape, 0.3 / 16))
    steps = (arr.target_weights() - W).ravel()[1:] * 16
    assert set(np.unique(np.round(steps, 9))) <= {0.0, 1.0}
    assert abs(steps.mean() - 0.3) <= Z * math.sqrt(0.3 * 0.7 / steps.size)


def test_accumulated_update_rounding_writes_what_small_updates_add_up_to() -> None:
    """``update_rounding="accumulate"``: four updates of 0.3 quantum each write one quantum in all (at the second:
    0.6 rounds to 1, chi = -0.4), where rounding each to the nearest quantum writes nothing; the remainder stays
    within half a quantum, a fork takes the accumulator with it, and program() clears it."""
    W = np.zeros((20, 30))
    W[0, 0] = 1.0
    q = 1.0 / 16
    written = {}
    for rounding in ("nearest", "accumulate"):
        arr = PCMArray(W, PCMConfig.ideal(w_max=1.0, update_rounding=rounding), rng=5)
        per_update = []
        for _ in range(4):
            before = arr.target_weights()
            arr.reprogram(np.full(W.shape, 0.3 * q))
            per_update.append(float(np.round((arr.target_weights() - before)[5, 5] / q, 9)))
        written[rounding] = per_update
        if rounding == "accumulate":
            np.testing.assert_allclose(arr._carry[1:], 0.2, atol=1e-12)  # 1.2 quanta asked, 1 written
            twin = arr.fork(3)
            twin.reprogram(np.full(W.shape, 0.3 * q))  # 0.5 -> rounds to even 0
            twin.reprogram(np.full(W.shape, 0.3 * q))  # 0.8 -> 1
            np.testing.assert_allclose((twin.target_weights() - arr.target_weights())[1:], q, atol=1e-12)
            arr.program()
            assert not arr._carry.any()
    assert written["nearest"] == [0.0, 0.0, 0.0, 0.0]
    assert written["accumulate"] == [0.0, 1.0, 0.0, 0.0]


def test_reprogrammed_devices_drift_from_their_own_programming_time() -> None:
    W = np.full((50, 50), 0.5)
    W[0, 0] = 1.0
    cfg = PCMConfig.ideal(w_max=1.0, drift=True, update_quantum=0.25)
    arr = PCMArray(W, cfg, rng=6)
    arr.drift(86400.0)
    d = np.zeros_like(W)
    d[10:20] = 0.25
    arr.reprogram(d)  # at t = 1 d: these restart their drift clock
    nu = arr.drift_exponents()[0, 0]  # G+ units; the G- units sit at 0 µS
    f = arr.model.drift_factor
    w = arr.weights()
    np.testing.assert_allclose(w[10:20], 0.75)  # age 0: no drift yet
    np.testing.assert_allclose(w[20:], 0.5 * f(86400.0, nu[20:]), rtol=1e-12)
    arr.drift(2 * 86400.0)
    w2 = arr.weights()
    np.testing.assert_allclose(w2[10:20], 0.75 * f(86400.0, nu[10:20]), rtol=1e-12)
    np.testing.assert_allclose(w2[20:], 0.5 * f(2 * 86400.0, nu[20:]), rtol=1e-12)


def test_endurance_limit_raises_and_leaves_state_unchanged() -> None:
    W = np.zeros((8, 8))
    W[0, 0] = 1.0
    cfg = PCMConfig.ideal(w_max=1.0, endurance_writes=3)  # noise-free: one pulse per write
    arr = PCMArray(W, cfg, rng=7)  # program: 1 write each
    d = np.zeros_like(W)
    d[1, 1] = 1 / 16
    arr.reprogram(d)
    arr.reprogram(d)  # G+ of (1, 1) now has 3 writes
    counts, target = arr.write_counts.copy(), arr.target_weights()
    with pytest.raises(EnduranceError):
        arr.reprogram(d)
    np.testing.assert_array_equal(arr.write_counts, counts)
    np.testing.assert_array_equal(arr.target_weights(), target)
    flag = PCMArray(W, cfg.replace(endurance_action="flag"), rng=7)
    for _ in range(2):
        flag.reprogram(d)
    rep = flag.reprogram(d)
    assert rep.endurance_exceeded == 1 and flag.endurance_exceeded.sum() == 1
    assert flag.write_counts[0, 0, 1, 1] == 4


def test_program_report_counts_every_device_and_pulse() -> None:
    W = np.random.default_rng(8).uniform(-1, 1, (64, 64))
    arr = PCMArray(W, PCMConfig.hermes_like(), rng=8, program=False)
    rep = arr.program()
    assert rep.devices_written == arr.n_devices == 4 * 64 * 64
    assert rep.pulses == int(arr.write_counts.sum()) == arr.pulses_total
    # HERMES TDP: the MSF-programmed pair is one unit: both devices see the same pulses
    np.testing.assert_array_equal(arr.write_counts[:, 0], arr.write_counts[:, 1])
    assert rep.energy_J == pytest.approx(rep.pulses * 10e-12)
    assert rep.max_iterations_used <= 30
