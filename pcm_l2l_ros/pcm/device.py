"""Statistical PCM device models: programming noise, drift and accumulated 1/f read noise.

Two calibrated parameter sets sit behind the same functions:

* ``AIHWKIT_PCM`` -- aihwkit's ``PCMLikeNoiseModel`` with its defaults, exactly (Nandakumar et al.,
  ICECS 2019; Joshi et al., Nat. Commun. 2020): g_max = 25 µS, t0 = 20 s, t_read = 250 ns,
  sigma_prog = 0.26348 + 1.9650 r - 1.1731 r^2 µS (r = g_T / g_max), folded-normal drift exponent nu
  drawn once from the *target* conductance, drift g = g_prog ((t_inf + t0) / t0)^-nu, and
  1/f read noise sigma/g = Q_s sqrt(ln((t_inf + t0 + t_read) / (2 t_read))) with
  Q_s = min(0.0088 / max(r_prog^0.65, 1e-3), 0.2) evaluated from g_prog (aihwkit issue #436 quirk).
* ``HERMES_ODP`` / ``HERMES_TDP`` -- aihwkit's ``HermesNoiseModel`` (Le Gallo et al., Nat. Electron. 2023),
  calibrated on the HERMES chip with one device per polarity (ODP, g_max 10.35 µS, t0 200 s) or two
  devices per polarity programmed with the MSF method (TDP, g_max 20.7 µS for the *pair*, t0 300 s);
  t_read = 512 ns, cubic sigma_prog, branch fits for mu_nu, sigma_nu and Q_s.

Units: conductances in µS, times in s. Every stochastic function takes a ``numpy.random.Generator``.
Equations, coefficients and sources: docs/device_model.md §2-§4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DeviceModel",
    "AIHWKIT_PCM",
    "HERMES_ODP",
    "HERMES_TDP",
    "device_model",
    "DEVICE_NAMES",
]

_ZERO_CLIP = 1e-7  # aihwkit's floor on r = |g| / g_max in the nu fits


@dataclass(frozen=True)
class DeviceModel:
    """One modelled conductance unit (a single PCM device, or an MSF-programmed HERMES device pair).

    Attributes:
        name: preset name.
        family: ``"pcm_like"`` (aihwkit PCMLikeNoiseModel fits) or ``"hermes"`` (HermesNoiseModel fits).
        g_max_uS: maximal conductance of the unit, µS (the value the core's w_max maps to).
        t0_s: drift reference time t0, s (first read after programming).
        t_read_s: read time of the 1/f noise fit, s.
        prog_coeff: polynomial coefficients c_i of sigma_prog = sum_i c_i r^i, µS at ``prog_coeff_g_max_uS``.
        prog_coeff_g_max_uS: g_max the polynomial was fitted at, µS (sigma scales with g_max / this).
        hermes_devices: 1 or 2; selects the HERMES sigma_nu and Q_s branches (ignored for pcm_like).
        physical_devices: number of physical PCM devices this unit stands for (2 for HERMES TDP).
    """

    name: str
    family: str
    g_max_uS: float
    t0_s: float
    t_read_s: float
    prog_coeff: tuple[float, ...]
    prog_coeff_g_max_uS: float
    hermes_devices: int = 1
    physical_devices: int = 1

    # ------------------------------------------------------------------ programming
    def sigma_prog(self, g_target: np.ndarray) -> np.ndarray:
        """Programming-noise std (µS) for target conductance ``g_target`` (µS)."""
        r = np.asarray(g_target, dtype=np.float64) / self.g_max_uS
        sig = np.zeros_like(r)
        for c in reversed(self.prog_coeff):  # Horner
            sig = sig * r + c
        return sig * (self.g_max_uS / self.prog_coeff_g_max_uS)

    def apply_programming_noise(
        self, g_target: np.ndarray, rng: np.random.Generator, scale: float = 1.0
    ) -> np.ndarray:
        """g_prog = max(g_T + scale * sigma_prog(g_T) * xi, 0), µS; applied to every device incl. g_T = 0."""
        g_target = np.asarray(g_target, dtype=np.float64)
        if scale == 0.0:
            return g_target.copy()
        g = g_target + scale * self.sigma_prog(g_target) * rng.standard_normal(g_target.shape)
        return np.maximum(g, 0.0)

    # ------------------------------------------------------------------ drift exponent
    def nu_moments(self, g_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mu_nu, sigma_nu) of the drift exponent before folding, from the target conductance (µS)."""
        r = np.maximum(np.abs(np.asarray(g_target, dtype=np.float64)) / self.g_max_uS, _ZERO_CLIP)
        lr = np.log(r)
        if self.family == "pcm_like":
            mu = np.clip(-0.0155 * lr + 0.0244, 0.049, 0.1)
            sd = np.clip(-0.0125 * lr - 0.0059, 0.008, 0.045)
            return mu, sd
        mu = np.where(
            r < 0.0945, np.clip(-0.0387 * lr - 0.0182, 0.072, 0.13), -0.0436 * r**2 - 0.0126 * r + 0.0736
        )
        if self.hermes_devices == 1:
            sd = np.where(
                r < 0.3039, np.clip(-0.0120 * lr - 0.0023, 0.0124, 0.04), -0.0165 * r**2 + 0.0116 * r + 0.0104
            )
        else:
            sd = np.where(
                r < 0.3055, np.clip(-0.0117 * lr - 0.0057, 0.0091, 0.04), -0.0118 * r**2 + 0.0093 * r + 0.0073
            )
        return mu, sd

    def sample_nu(self, g_target: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
        """Drift exponent nu = |mu_nu + sigma_nu xi| * scale (folded normal), drawn once at programming."""
        mu, sd = self.nu_moments(g_target)
        return np.abs(mu + sd * rng.standard_normal(mu.shape)) * scale

    # ------------------------------------------------------------------ drift and read noise
    def drift_factor(self, age_s: np.ndarray | float, nu: np.ndarray) -> np.ndarray:
        """Multiplicative drift ((age + t0) / t0)^-nu for age > 0 s, else 1 (age = time since programming)."""
        age = np.maximum(np.asarray(age_s, dtype=np.float64), 0.0)
        return np.where(age > 0.0, ((age + self.t0_s) / self.t0_s) ** (-nu), 1.0)

    def read_noise_factor(self, age_s: np.ndarray | float) -> np.ndarray:
        """Accumulated 1/f factor sqrt(ln((age + t0 + t_read) / (2 t_read))), dimensionless."""
        t = np.maximum(np.asarray(age_s, dtype=np.float64), 0.0) + self.t0_s
        return np.sqrt(np.log((t + self.t_read_s) / (2.0 * self.t_read_s)))

    def q_s(self, g: np.ndarray) -> np.ndarray:
        """Relative 1/f noise amplitude Q_s for conductance ``g`` (µS); aihwkit evaluates it at g_prog."""
        r = np.abs(np.asarray(g, dtype=np.float64)) / self.g_max_uS
        if self.family == "pcm_like":
            return np.minimum(0.0088 / np.maximum(r**0.65, 1e-3), 0.2)
        lr = np.log(np.maximum(r, 1e-30))
        if self.hermes_devices == 1:
            return np.where(
                r < 0.1591,
                np.clip(-0.0078 * lr + 0.0038, 0.0179, 0.04),
                0.0664 * r**3 - 0.1352 * r**2 + 0.0768 * r + 0.0088,
            )
        return np.where(
            r < 0.16,
            np.clip(-0.0117 * lr - 0.0069, 0.015, 0.04),
            0.0069 * r**3 - 0.0280 * r**2 + 0.0211 * r + 0.0123,
        )

    def read_sigma_rel(self, g_q: np.ndarray, age_s: np.ndarray | float) -> np.ndarray:
        """Relative read-noise std sigma/g = Q_s(g_q) * read_noise_factor(age) (g_q in µS)."""
        return self.q_s(g_q) * self.read_noise_factor(age_s)

    def apply_drift_and_read(
        self,
        g_prog: np.ndarray,
        nu: np.ndarray,
        age_s: np.ndarray | float,
        rng: np.random.Generator | None,
        *,
        drift_scale: float = 1.0,
        read_noise_scale: float = 1.0,
        g_qs: np.ndarray | None = None,
    ) -> np.ndarray:
        """g(t) = max(g_d + |g_d| * read_noise_scale * sigma_rel * xi, 0), g_d = g_prog * drift_factor (µS).

        ``nu`` is multiplied by ``drift_scale``; ``rng=None`` or ``read_noise_scale=0`` skips the read
        noise (and its clip). ``g_qs`` overrides the conductance Q_s is evaluated at (default g_prog).
        """
        g_prog = np.asarray(g_prog, dtype=np.float64)
        g_d = g_prog * self.drift_factor(age_s, nu * drift_scale) if drift_scale != 0.0 else g_prog.copy()
        if rng is None or read_noise_scale == 0.0:
            return g_d
        sig = self.read_sigma_rel(g_prog if g_qs is None else g_qs, age_s)
        return np.maximum(g_d + np.abs(g_d) * read_noise_scale * sig * rng.standard_normal(g_prog.shape), 0.0)


AIHWKIT_PCM = DeviceModel(
    name="aihwkit_compat",
    family="pcm_like",
    g_max_uS=25.0,
    t0_s=20.0,
    t_read_s=250e-9,
    prog_coeff=(0.26348, 1.9650, -1.1731),
    prog_coeff_g_max_uS=25.0,
)

HERMES_ODP = DeviceModel(
    name="hermes_odp",
    family="hermes",
    g_max_uS=10.35,
    t0_s=200.0,
    t_read_s=512e-9,
    prog_coeff=(0.15781817, 2.32443916, -2.16310839, 0.68841818),
    prog_coeff_g_max_uS=10.35,
    hermes_devices=1,
    physical_devices=1,
)

HERMES_TDP = DeviceModel(
    name="hermes_tdp",
    family="hermes",
    g_max_uS=20.7,
    t0_s=300.0,
    t_read_s=512e-9,
    prog_coeff=(0.16603222, 4.71806468, -8.48101252, 4.68961419),
    prog_coeff_g_max_uS=20.7,
    hermes_devices=2,
    physical_devices=2,
)

DEVICE_NAMES = ("aihwkit_compat", "hermes")


def device_model(name: str, devices_per_polarity: int) -> tuple[DeviceModel, int]:
    """Resolve a device name to (unit model, modelled units per polarity).

    ``aihwkit_compat`` models every physical device independently (units = devices_per_polarity, each
    with g_max 25 µS). ``hermes`` with 2 devices per polarity is one modelled unit (the MSF-programmed
    pair, g_max 20.7 µS), with 1 device per polarity the ODP fit (g_max 10.35 µS).
    """
    if devices_per_polarity not in (1, 2):
        raise ValueError(f"devices_per_polarity must be 1 or 2, got {devices_per_polarity}")
    if name == "aihwkit_compat":
        return AIHWKIT_PCM, devices_per_polarity
    if name == "hermes":
        return (HERMES_TDP, 1) if devices_per_polarity == 2 else (HERMES_ODP, 1)
    raise ValueError(f"unknown PCM device {name!r}; choose one of {DEVICE_NAMES}")
