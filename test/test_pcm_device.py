"""Device-level golden numbers of aihwkit's PCMLikeNoiseModel (docs/device_model.md §9).

Tolerances are derived from Monte Carlo standard errors (SE): the reference numbers are themselves Monte Carlo
estimates from aihwkit with N_SPEC = 2e5 samples per point, printed to a finite number of decimals, and ours
use N samples. A check passes when |ours - reference| <= Z * sqrt(SE_ours^2 + SE_ref^2) + half the last printed
digit, with Z = 5 (a false failure has probability ~6e-7 per check). SE of a mean: s / sqrt(N); SE of a
standard deviation: s * sqrt((kurtosis - 1) / (4 N)) with the sample kurtosis (exact to first order for any
distribution).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from pcm_l2l_ros.pcm import AIHWKIT_PCM, HERMES_ODP, HERMES_TDP

Z = 5.0
N = 200_000
N_SPEC = 200_000
M = AIHWKIT_PCM
YEAR_S = 365 * 86400.0

# docs/device_model.md §9, T1-T3: g_T -> (sigma, MC std(g_prog - g_T), MC mean(g_prog - g_T), MC mean nu, MC std nu)
PROG_NU_TABLE = {
    0.0: (0.2635, 0.1535, 0.1047, 0.1003, 0.0441),
    1.0: (0.3402, 0.3401, -0.0009, 0.0746, 0.0335),
    2.5: (0.4482, 0.4481, 0.0002, 0.0601, 0.0228),
    5.0: (0.6096, 0.6085, 0.0005, 0.0493, 0.0142),
    10.0: (0.8618, 0.8620, -0.0019, 0.0490, 0.0080),
    15.0: (1.0202, 1.0199, 0.0014, 0.0490, 0.0080),
    20.0: (1.0847, 1.0834, 0.0002, 0.0490, 0.0080),
    25.0: (1.0554, 1.0555, 0.0006, 0.0490, 0.0080),
}

# docs/device_model.md §9 (T4, T5) full chain: g_T -> {t_inf: (mean g/g_T, std g/g_T)}
CHAIN_TABLE = {
    2.5: {1.0: (0.998, 0.243), 3600.0: (0.737, 0.212), 86400.0: (0.616, 0.205), YEAR_S: (0.447, 0.199)},
    10.0: {1.0: (0.998, 0.109), 3600.0: (0.776, 0.095), 86400.0: (0.665, 0.090), YEAR_S: (0.501, 0.085)},
    25.0: {1.0: (0.998, 0.056), 3600.0: (0.776, 0.056), 86400.0: (0.665, 0.061), YEAR_S: (0.500, 0.066)},
}


def se_mean(x: np.ndarray) -> float:
    return float(np.std(x) / math.sqrt(x.size))


def se_std(x: np.ndarray) -> float:
    kurt = float(stats.kurtosis(x, fisher=False))
    return float(np.std(x) * math.sqrt(max(kurt - 1.0, 0.0) / (4.0 * x.size)))


def assert_mc(ours: float, se_ours: float, spec: float, se_spec: float, digits: int, what: str) -> None:
    tol = Z * math.hypot(se_ours, se_spec) + 0.5 * 10.0**-digits
    assert abs(ours - spec) <= tol, f"{what}: ours {ours:.5f} vs spec {spec:.5f} (tol {tol:.5f})"


@pytest.mark.parametrize("g_t", sorted(PROG_NU_TABLE))
def test_t1_programming_noise(g_t: float) -> None:
    """T1 (and T2 for g_T = 0): programming-noise std and mean vs aihwkit, incl. the clipped zero device."""
    sig_formula, mc_std, mc_mean, _, _ = PROG_NU_TABLE[g_t]
    assert M.sigma_prog(np.array(g_t)) == pytest.approx(sig_formula, abs=5e-5)
    rng = np.random.default_rng(int(g_t * 10) + 1)
    err = M.apply_programming_noise(np.full(N, g_t), rng) - g_t
    # the spec's MC has the same spread; its SE is scaled by our sample's spread and kurtosis
    se_spec_m, se_spec_s = se_mean(err) * math.sqrt(N / N_SPEC), se_std(err) * math.sqrt(N / N_SPEC)
    assert_mc(float(err.std()), se_std(err), mc_std, se_spec_s, 4, f"std(g_prog-g_T) at {g_t} µS")
    assert_mc(float(err.mean()), se_mean(err), mc_mean, se_spec_m, 4, f"mean(g_prog-g_T) at {g_t} µS")
    assert abs(err.mean() - (mc_mean if g_t == 0 else 0.0)) < 0.01 + Z * se_mean(err)


def test_t2_zero_device_analytic() -> None:
    """T2: the zero device is N(0, 0.26348) clipped at 0: mean sigma/sqrt(2 pi),
    std sigma sqrt(1/2 - 1/(2 pi)), P(g = 0) = 1/2."""
    s0 = 0.26348
    g = M.apply_programming_noise(np.zeros(N), np.random.default_rng(7))
    assert_mc(float(g.mean()), se_mean(g), s0 / math.sqrt(2 * math.pi), 0.0, 6, "zero-device mean")
    assert_mc(float(g.std()), se_std(g), s0 * math.sqrt(0.5 - 0.5 / math.pi), 0.0, 6, "zero-device std")
    p0 = float(np.mean(g == 0.0))
    assert abs(p0 - 0.5) <= Z * math.sqrt(0.25 / N)


@pytest.mark.parametrize("g_t", sorted(PROG_NU_TABLE))
def test_t3_drift_exponent(g_t: float) -> None:
    """T3: nu = |N(mu_nu, sigma_nu)| from the target conductance: MC mean and std vs aihwkit and vs the
    exact folded-normal moments."""
    *_, mc_mean, mc_std = PROG_NU_TABLE[g_t]
    nu = M.sample_nu(np.full(N, g_t), np.random.default_rng(100 + int(g_t * 10)))
    mu, sd = M.nu_moments(np.array(g_t))
    fold = stats.foldnorm(c=float(mu / sd), scale=float(sd))
    f = math.sqrt(N / N_SPEC)
    assert_mc(float(nu.mean()), se_mean(nu), mc_mean, se_mean(nu) * f, 4, f"mean nu at {g_t} µS")
    assert_mc(float(nu.std()), se_std(nu), mc_std, se_std(nu) * f, 4, f"std nu at {g_t} µS")
    assert_mc(float(nu.mean()), se_mean(nu), fold.mean(), 0.0, 8, f"mean nu vs folded normal at {g_t} µS")
    assert_mc(float(nu.std()), se_std(nu), fold.std(), 0.0, 8, f"std nu vs folded normal at {g_t} µS")


def test_t3_nu_fit_breakpoints() -> None:
    """mu_nu hits its floor 0.049 at r >= 0.2045 and 0.1 at r <= 0.0076; the zero device uses r = 1e-7."""
    mu, sd = M.nu_moments(np.array([0.0, 0.0076 * 25, 0.2046 * 25, 0.33 * 25, 25.0]))
    np.testing.assert_allclose(mu, [0.1, 0.1, 0.049, 0.049, 0.049], atol=2e-4)
    np.testing.assert_allclose(sd[[0, 3, 4]], [0.045, 0.008, 0.008], atol=1e-4)


@pytest.mark.parametrize("g_t", sorted(CHAIN_TABLE))
def test_t4_t5_full_chain(g_t: float) -> None:
    """T4/T5: programming, drift from the same nu, and a read-noise snapshot at t_inf; mean and std of
    g / g_T at 1 s, 1 h, 1 d, 1 y."""
    rng = np.random.default_rng(1000 + int(g_t))
    n = 100_000
    g_target = np.full(n, g_t)
    g_prog = M.apply_programming_noise(g_target, rng)
    nu = M.sample_nu(g_target, rng)
    f = math.sqrt(n / N_SPEC)
    for t_inf, (spec_mean, spec_std) in CHAIN_TABLE[g_t].items():
        ratio = M.apply_drift_and_read(g_prog, nu, t_inf, rng) / g_t
        assert_mc(
            float(ratio.mean()),
            se_mean(ratio),
            spec_mean,
            se_mean(ratio) * f,
            3,
            f"mean g/g_T at {g_t} µS, {t_inf} s",
        )
        assert_mc(
            float(ratio.std()),
            se_std(ratio),
            spec_std,
            se_std(ratio) * f,
            3,
            f"std g/g_T at {g_t} µS, {t_inf} s",
        )


def test_t6_read_noise_factors() -> None:
    """T6: deterministic read-noise factor sqrt(ln((t + t0 + t_read) / (2 t_read))) and Q_s."""
    t = np.array([0.0, 1.0, 3600.0, 86400.0, YEAR_S])  # the reference's "3.15e7" is 1 y = 365 d
    np.testing.assert_allclose(M.read_noise_factor(t), [4.1838, 4.1897, 4.7648, 5.0868, 5.6370], atol=1e-4)
    g = np.array([25.0, 20.0, 10.0, 2.5, 1.0])
    np.testing.assert_allclose(M.q_s(g), [0.00880, 0.01017, 0.01596, 0.03931, 0.07131], atol=1e-4 * 0.5)
    assert M.q_s(np.array(0.0)) == pytest.approx(0.2)


def test_drift_law_and_no_drift_at_t0() -> None:
    """g_drift = g_prog ((t + t0) / t0)^-nu; no drift at t_inf = 0 (aihwkit applies drift only for t > t0)."""
    nu = np.array([0.05, 0.1])
    np.testing.assert_allclose(M.drift_factor(0.0, nu), 1.0)
    np.testing.assert_allclose(M.drift_factor(3600.0, nu), (3620.0 / 20.0) ** -nu)
    g = M.apply_drift_and_read(np.array([10.0, 10.0]), nu, 3600.0, None)
    np.testing.assert_allclose(g, 10.0 * (3620.0 / 20.0) ** -nu)


def test_hermes_presets_match_spec_coefficients() -> None:
    """HERMES presets (docs/device_model.md §2-§4): g_max, t0, t_read and hand-evaluated branch fits."""
    assert (HERMES_TDP.g_max_uS, HERMES_TDP.t0_s, HERMES_TDP.t_read_s) == (20.7, 300.0, 512e-9)
    assert (HERMES_ODP.g_max_uS, HERMES_ODP.t0_s, HERMES_ODP.t_read_s) == (10.35, 200.0, 512e-9)
    # sigma_prog at g_max: sum of the cubic coefficients
    assert HERMES_TDP.sigma_prog(np.array(20.7)) == pytest.approx(
        0.16603222 + 4.71806468 - 8.48101252 + 4.68961419
    )
    assert HERMES_ODP.sigma_prog(np.array(0.0)) == pytest.approx(0.15781817)
    r = 0.5
    mu, sd = HERMES_TDP.nu_moments(np.array(r * 20.7))
    assert mu == pytest.approx(-0.0436 * r**2 - 0.0126 * r + 0.0736)
    assert sd == pytest.approx(-0.0118 * r**2 + 0.0093 * r + 0.0073)
    mu, sd = HERMES_ODP.nu_moments(np.array(0.05 * 10.35))
    assert mu == pytest.approx(min(max(-0.0387 * math.log(0.05) - 0.0182, 0.072), 0.13))
    assert sd == pytest.approx(min(max(-0.0120 * math.log(0.05) - 0.0023, 0.0124), 0.04))
    assert HERMES_TDP.q_s(np.array(r * 20.7)) == pytest.approx(
        0.0069 * r**3 - 0.0280 * r**2 + 0.0211 * r + 0.0123
    )
    assert HERMES_ODP.q_s(np.array(0.1 * 10.35)) == pytest.approx(
        min(max(-0.0078 * math.log(0.1) + 0.0038, 0.0179), 0.04)
    )
    assert HERMES_TDP.read_noise_factor(0.0) == pytest.approx(math.sqrt(math.log((300 + 512e-9) / 1024e-9)))


# ------------------------------------------------------------ the compiled formulas = the documented equations
def _documented(model, g: np.ndarray, age: np.ndarray, nu: np.ndarray) -> dict[str, np.ndarray]:
    """docs/device_model.md §2-§4 written out with numpy, branch by branch (the oracle of the compiled kernels)."""
    r = g / model.g_max_uS
    sig = sum(c * r**i for i, c in enumerate(model.prog_coeff)) * (model.g_max_uS / model.prog_coeff_g_max_uS)
    rc = np.maximum(np.abs(r), 1e-7)
    lr = np.log(rc)
    lq = np.log(np.maximum(np.abs(r), 1e-30))
    if model.family == "pcm_like":
        mu, sd = np.clip(-0.0155 * lr + 0.0244, 0.049, 0.1), np.clip(-0.0125 * lr - 0.0059, 0.008, 0.045)
        q = np.minimum(0.0088 / np.maximum(np.abs(r) ** 0.65, 1e-3), 0.2)
    else:
        mu = np.where(rc < 0.0945, np.clip(-0.0387 * lr - 0.0182, 0.072, 0.13), -0.0436 * rc**2 - 0.0126 * rc + 0.0736)
        if model.hermes_devices == 1:
            sd = np.where(rc < 0.3039, np.clip(-0.0120 * lr - 0.0023, 0.0124, 0.04),
                          -0.0165 * rc**2 + 0.0116 * rc + 0.0104)
            q = np.where(r < 0.1591, np.clip(-0.0078 * lq + 0.0038, 0.0179, 0.04),
                         0.0664 * r**3 - 0.1352 * r**2 + 0.0768 * r + 0.0088)
        else:
            sd = np.where(rc < 0.3055, np.clip(-0.0117 * lr - 0.0057, 0.0091, 0.04),
                          -0.0118 * rc**2 + 0.0093 * rc + 0.0073)
            q = np.where(r < 0.16, np.clip(-0.0117 * lq - 0.0069, 0.015, 0.04),
                         0.0069 * r**3 - 0.0280 * r**2 + 0.0211 * r + 0.0123)
    t = np.maximum(age, 0.0) + model.t0_s
    return {
        "sigma_prog": sig,
        "mu_nu": mu,
        "sigma_nu": sd,
        "q_s": q,
        "drift": np.where(age > 0, ((np.maximum(age, 0.0) + model.t0_s) / model.t0_s) ** (-nu), 1.0),
        "read": np.sqrt(np.log((t + model.t_read_s) / (2.0 * model.t_read_s))),
    }


@pytest.mark.parametrize("model", [AIHWKIT_PCM, HERMES_ODP, HERMES_TDP], ids=lambda m: m.name)
def test_compiled_device_formulas_equal_the_documented_equations(model) -> None:
    """Every branch of every fit (conductances from 0 to g_max, through each branch point), drift from age 0 on."""
    rng = np.random.default_rng(0)
    breaks = np.array([0.0076, 0.0945, 0.1591, 0.16, 0.2046, 0.3039, 0.3055, 0.33]) * model.g_max_uS
    g = np.concatenate([[0.0, model.g_max_uS], rng.random(4000) * model.g_max_uS, breaks, np.nextafter(breaks, 0)])
    age = np.concatenate([[0.0, -1.0], rng.random(g.size - 2) * 10 ** rng.uniform(0, 8, g.size - 2)])
    nu = rng.random(g.size) * 0.15
    want = _documented(model, g, age, nu)
    mu, sd = model.nu_moments(g)
    got = {"sigma_prog": model.sigma_prog(g), "mu_nu": mu, "sigma_nu": sd, "q_s": model.q_s(g),
           "drift": model.drift_factor(age, nu), "read": model.read_noise_factor(age)}
    for name, value in got.items():
        np.testing.assert_allclose(value, want[name], rtol=1e-12, atol=1e-15, err_msg=name)
    assert model.drift_factor(3600.0, nu[:4000].reshape(40, 100)).shape == (40, 100)  # broadcasting kept
