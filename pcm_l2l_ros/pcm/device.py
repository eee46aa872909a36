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
Equations, coefficients and sources: docs/device_model.md §2-§4. The formulas are compiled once
(``pcm._device_kernels``); these methods are their array forms, and the arrays' per-weight state uses the same
scalar functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import _device_kernels as K

__all__ = [
    "DeviceModel",
    "AIHWKIT_PCM",
    "HERMES_ODP",
    "HERMES_TDP",
    "device_model",
    "DEVICE_NAMES",
]


def _flat64(*arrays: np.ndarray | float) -> tuple[tuple[int, ...], list[np.ndarray]]:
    """(broadcast shape, the arrays broadcast to it as contiguous flat float64) for the elementwise kernels."""
    arrs = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in arrays))
    return arrs[0].shape, [np.ascontiguousarray(a).reshape(-1) for a in arrs]


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

    @property
    def variant(self) -> int:
        """The fit family as the device kernels name it (``_device_kernels.PCM_LIKE``, ``HERMES_1``, ``HERMES_2``)."""
        if self.family == "pcm_like":
            return K.PCM_LIKE
        return K.HERMES_1 if self.hermes_devices == 1 else K.HERMES_2

    @cached_property
    def _coeffs(self) -> np.ndarray:
        return np.asarray(self.prog_coeff, dtype=np.float64)

    @property
    def _prog_scale(self) -> float:
        return self.g_max_uS / self.prog_coeff_g_max_uS

    # ------------------------------------------------------------------ programming
    def sigma_prog(self, g_target: np.ndarray) -> np.ndarray:
        """Programming-noise std (µS) for target conductance ``g_target`` (µS)."""
        shape, (g,) = _flat64(g_target)
        out = np.empty_like(g)
        K.sigma_prog_array(g, self.g_max_uS, self._coeffs, self._prog_scale, out)
        return out.reshape(shape)

    def apply_programming_noise(
        self, g_target: np.ndarray, rng: np.random.Generator, scale: float = 1.0
    ) -> np.ndarray:
        """g_prog = max(g_T + scale * sigma_prog(g_T) * xi, 0), µS; applied to every device incl. g_T = 0."""
        shape, (g,) = _flat64(g_target)
        if scale == 0.0:
            return g.reshape(shape).copy()
        xi = rng.standard_normal(g.shape[0])
        out = np.empty_like(g)
        K.programming_noise_array(g, self.g_max_uS, self._coeffs, self._prog_scale, float(scale), xi, out)
        return out.reshape(shape)

    # ------------------------------------------------------------------ drift exponent
    def nu_moments(self, g_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mu_nu, sigma_nu) of the drift exponent before folding, from the target conductance (µS)."""
        shape, (g,) = _flat64(g_target)
        mu, sd = np.empty_like(g), np.empty_like(g)
        K.nu_moments_array(g, self.g_max_uS, self.variant, mu, sd)
        return mu.reshape(shape), sd.reshape(shape)

    def sample_nu(self, g_target: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
        """Drift exponent nu = |mu_nu + sigma_nu xi| * scale (folded normal), drawn once at programming."""
        shape, (g,) = _flat64(g_target)
        xi = rng.standard_normal(g.shape[0])
        out = np.empty_like(g)
        K.nu_from_normals_array(g, self.g_max_uS, self.variant, xi, float(scale), out)
        return out.reshape(shape)

    # ------------------------------------------------------------------ drift and read noise
    def drift_factor(self, age_s: np.ndarray | float, nu: np.ndarray) -> np.ndarray:
        """Multiplicative drift ((age + t0) / t0)^-nu for age > 0 s, else 1 (age = time since programming)."""
        shape, (age, n) = _flat64(age_s, nu)
        out = np.empty_like(age)
        K.drift_factor_array(age, n, self.t0_s, out)
        return out.reshape(shape)

    def read_noise_factor(self, age_s: np.ndarray | float) -> np.ndarray:
        """Accumulated 1/f factor sqrt(ln((age + t0 + t_read) / (2 t_read))), dimensionless."""
        shape, (age,) = _flat64(age_s)
        out = np.empty_like(age)
        K.read_noise_factor_array(age, self.t0_s, self.t_read_s, out)
        return out.reshape(shape)

    def q_s(self, g: np.ndarray) -> np.ndarray:
        """Relative 1/f noise amplitude Q_s for conductance ``g`` (µS); aihwkit evaluates it at g_prog."""
        shape, (gf,) = _flat64(g)
        out = np.empty_like(gf)
        K.q_s_array(gf, self.g_max_uS, self.variant, out)
        return out.reshape(shape)

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
