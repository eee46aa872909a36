"""Iterative program-and-verify, write counting, endurance and write energy.

Pulse model. Every iteration sends one write pulse to each unit that has not yet verified; the pulse
lands at g_T + attempt_noise_factor * sigma_prog(g_T) * xi (µS) and the verify read accepts it when
|g - g_T| <= tolerance. After ``max_iterations`` pulses the unit is left as is (counted as not
converged). Two modes decide what the final conductance is:

* ``"statistical"`` (default; required for the aihwkit golden numbers): the final conductance is drawn
  from the calibrated post-programming model, g_prog = max(g_T + sigma_prog xi, 0). aihwkit's
  sigma_prog was fitted on devices that *had been* programmed iteratively (Joshi et al. 2020), so the
  loop above is used only to count pulses, and the final state keeps the calibrated statistics.
* ``"closed_loop"``: the final conductance is the last attempt of the loop (error truncated to
  the tolerance when the unit converged), clipped at 0 µS.

With programming noise off every unit verifies after its first pulse and lands exactly on g_T.

Energy: ``energy_per_pulse_J`` (default ``DEFAULT_ENERGY_PER_PULSE_J`` = 10 pJ) per write pulse on one
physical device. This is an order-of-magnitude *assumption* for a SET/RESET pulse of a scaled
mushroom PCM cell (tens of µA for tens to hundreds of ns at about 1 V); the verify reads are not
counted (they cost far less than a write). Only relative numbers (write counts) are meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._kernels import verify_loop
from .device import DeviceModel

__all__ = [
    "DEFAULT_ENERGY_PER_PULSE_J",
    "EnduranceError",
    "ProgramReport",
    "UpdateReport",
    "program_and_verify",
]

DEFAULT_ENERGY_PER_PULSE_J = 10e-12  # J per write pulse per physical device (assumption, see module doc)


class EnduranceError(RuntimeError):
    """Raised when a write would push a device beyond its endurance limit (state is left unchanged)."""


@dataclass
class ProgramReport:
    """Result of programming the whole array.

    Attributes:
        devices_written: physical devices that received at least one pulse.
        pulses: total write pulses over all physical devices.
        energy_J: pulses * energy per pulse, J.
        max_iterations_used: most pulses any unit needed.
        not_converged: units that did not verify within max_iterations.
        endurance_exceeded: physical devices now beyond the endurance limit (``endurance_action="flag"``).
    """

    devices_written: int
    pulses: int
    energy_J: float
    max_iterations_used: int
    not_converged: int
    endurance_exceeded: int = 0


@dataclass
class UpdateReport:
    """Result of one sparse reprogramming step.

    Attributes:
        weights_changed: weights whose quantised target changed.
        devices_written: physical devices that received at least one pulse.
        pulses: total write pulses.
        energy_J: pulses * energy per pulse, J.
        not_converged: units that did not verify within max_iterations.
        endurance_exceeded: physical devices now beyond the endurance limit (``endurance_action="flag"``).
        devices_written_total: cumulative devices written by all updates and programming so far.
    """

    weights_changed: int
    devices_written: int
    pulses: int
    energy_J: float
    not_converged: int = 0
    endurance_exceeded: int = 0
    devices_written_total: int = 0


def program_and_verify(
    g_target: np.ndarray,
    model: DeviceModel,
    rng: np.random.Generator,
    *,
    noise_scale: float = 1.0,
    tolerance_uS: float = 0.5,
    max_iterations: int = 30,
    mode: str = "statistical",
    attempt_noise_factor: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Program the units to ``g_target`` (µS) by iterative program-and-verify.

    Args:
        g_target: target conductances, µS (any shape).
        model: device statistics (sigma_prog).
        rng: random generator.
        noise_scale: programming-noise scale (0 = ideal programming).
        tolerance_uS: verify acceptance band |g - g_T| <= tolerance, µS.
        max_iterations: maximal pulses per unit.
        mode: ``"statistical"`` or ``"closed_loop"`` (see module docstring).
        attempt_noise_factor: per-pulse landing std in units of sigma_prog(g_T).

    Returns:
        (g_prog µS, pulses per unit (int32, same shape), number of units that did not converge).
    """
    if mode not in ("statistical", "closed_loop"):
        raise ValueError(f"unknown programming mode {mode!r}")
    if max_iterations < 1:
        raise ValueError("max_iterations must be >= 1")
    g_target = np.asarray(g_target, dtype=np.float64)
    n = g_target.size
    flat_t = g_target.reshape(-1)
    if noise_scale == 0.0 or n == 0:
        return g_target.copy(), np.ones(g_target.shape, np.int32), 0

    sig_att = attempt_noise_factor * noise_scale * model.sigma_prog(flat_t)
    pulses = np.empty(n, np.int32)
    last = np.empty(n)
    # the loop's draws (one per pulse, iteration after iteration) are one stretch of the generator's normal stream:
    # drawn ahead in blocks (sequential standard_normal calls continue one stream), the extra draws then given back
    # by rewinding to before the last block and drawing only what was used: the generator ends where the
    # iteration-by-iteration loop leaves it
    flat_t = np.ascontiguousarray(flat_t)
    before_last, drawn_before_last = rng.bit_generator.state, 0
    xi = rng.standard_normal(4 * n)
    while True:
        used, not_conv = verify_loop(flat_t, sig_att, xi, float(tolerance_uS), int(max_iterations), pulses, last)
        if used >= 0:
            break
        before_last, drawn_before_last = rng.bit_generator.state, len(xi)
        xi = np.concatenate([xi, rng.standard_normal(len(xi))])
    if used < len(xi):
        rng.bit_generator.state = before_last
        rng.standard_normal(used - drawn_before_last)
    g = (
        model.apply_programming_noise(flat_t, rng, noise_scale)
        if mode == "statistical"
        else np.maximum(last, 0.0)
    )
    return g.reshape(g_target.shape), pulses.reshape(g_target.shape), not_conv
