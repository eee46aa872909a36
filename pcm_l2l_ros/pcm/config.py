"""Configuration of a simulated PCM array: device, mapping, non-idealities, drift compensation, writes.

``PCMConfig`` holds every switch; the named chips (the paper's HERMES-like chip, aihwkit's defaults, the
ideal chip) are in :mod:`pcm_l2l_ros.pcm.presets`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .device import device_model
from .programming import DEFAULT_ENERGY_PER_PULSE_J

__all__ = ["PCMConfig"]


@dataclass(frozen=True)
class PCMConfig:
    """Configuration of a simulated PCM array (use the presets and ``dataclasses.replace``).

    Device and mapping:
        device: ``"aihwkit_compat"`` (PCMLikeNoiseModel, g_max 25 µS per device) or ``"hermes"``
            (HermesNoiseModel: ODP 10.35 µS, or TDP 20.7 µS per device pair).
        devices_per_polarity: 1 (single differential pair) or 2 (2 + 2 devices per weight).
        g_max_uS: maximal conductance of one modelled unit, µS; None = the device's calibrated value.
        w_max: weight magnitude mapped to full conductance; None = max|W| of each core (or column).
        scale: ``"per_core"`` or ``"per_column"`` (w_max per column of each core).
        core_size: rows and columns of one crossbar core.
    Non-idealities (each can be switched off):
        programming_noise, prog_noise_scale: programming noise on/off and its scale.
        drift, drift_scale: conductance drift on/off and the scale of nu.
        read_noise: ``"off"``, ``"frozen"`` (drawn once per drift()/program()/reprogram call, as aihwkit)
            or ``"per_mvm"`` (fresh 1/f read noise on every MVM, computed exactly as output noise of
            variance xn^2 @ V).
        read_noise_scale: scale of the 1/f read noise.
        q_s_from: ``"g_prog"`` (aihwkit code) or ``"g_target"`` (aihwkit docs) for Q_s.
        drift_reencode: aihwkit quirk (``BaseNoiseModel.apply_drift_noise``): drift and read noise act on
            the *programmed weights re-encoded* as a fresh conductance pair (one device at 0, per-core
            scale from max|W_prog|), not on the programmed conductances; nu stays per device slice.
            Needed to reproduce aihwkit's weight-level drift numbers (docs/device_model.md §9, T8/T9).
        pcm_read_noise: extra per-MVM output noise c * sqrt(sum |Wn| xn^2) (aihwkit PCM_READ w_noise;
            0.0175 in StandardHWATrainingPreset), normalised units.
        dac_bits: signed DAC bits (None = ideal inputs); 8 bits = 127 levels per sign.
        dac_range: fixed DAC full scale in input units (inputs clipped); None = max|x| per input vector.
        adc_bits: ADC bits (None = ideal); 8 bits = 127 levels per sign.
        adc_range: ADC clip bound, normalised output units.
        out_noise: additive Gaussian output noise std, normalised output units.
    Drift compensation:
        drift_compensation: ``"none"``, ``"global"`` (one alpha per core) or ``"per_column"``.
        drift_reference: ``"noisy"`` (readout through the periphery after programming) or ``"exact"``.
    Programming and updates:
        program_mode: ``"statistical"`` or ``"closed_loop"`` (see ``programming``).
        program_tolerance_uS, max_program_iterations: program-and-verify acceptance band (µS) and cap.
        update_quantum: weight-update step in weight units; None = w_max / 16 of each core.
        update_rounding: ``"nearest"`` or ``"stochastic"`` rounding of updates to the quantum, or
            ``"accumulate"``: the host keeps what rounding to the nearest quantum left unwritten (a digital
            accumulator chi per weight, in quanta, |chi| <= 1/2) and adds it to the next update, so updates smaller
            than a quantum add up instead of being lost or rounded at random (mixed-precision training with a
            chi accumulator, Nandakumar et al., Front. Neurosci. 2020); ``program()`` clears it.
        endurance_writes: write pulses a device survives (None = unlimited).
        endurance_action: ``"raise"`` (EnduranceError, nothing written) or ``"flag"`` (write and count).
        energy_per_pulse_J: energy per write pulse per physical device, J.
    """

    device: str = "aihwkit_compat"
    devices_per_polarity: int = 1
    g_max_uS: float | None = None
    w_max: float | None = None
    scale: str = "per_core"
    core_size: int = 256
    programming_noise: bool = True
    prog_noise_scale: float = 1.0
    drift: bool = True
    drift_scale: float = 1.0
    read_noise: str = "frozen"
    read_noise_scale: float = 1.0
    q_s_from: str = "g_prog"
    drift_reencode: bool = False
    pcm_read_noise: float = 0.0
    dac_bits: int | None = 8
    dac_range: float | None = None
    adc_bits: int | None = 8
    adc_range: float = 10.0
    out_noise: float = 0.04
    drift_compensation: str = "global"
    drift_reference: str = "noisy"
    program_mode: str = "statistical"
    program_tolerance_uS: float = 0.5
    max_program_iterations: int = 30
    update_quantum: float | None = None
    update_rounding: str = "nearest"
    endurance_writes: int | None = 10**8
    endurance_action: str = "raise"
    energy_per_pulse_J: float = DEFAULT_ENERGY_PER_PULSE_J

    def __post_init__(self) -> None:
        checks = {
            "scale": ("per_core", "per_column"),
            "read_noise": ("off", "frozen", "per_mvm"),
            "q_s_from": ("g_prog", "g_target"),
            "drift_compensation": ("none", "global", "per_column"),
            "drift_reference": ("noisy", "exact"),
            "program_mode": ("statistical", "closed_loop"),
            "update_rounding": ("nearest", "stochastic", "accumulate"),
            "endurance_action": ("raise", "flag"),
        }
        for field, allowed in checks.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"PCMConfig.{field}={getattr(self, field)!r}; allowed: {allowed}")
        device_model(self.device, self.devices_per_polarity)  # validates both
        for bits in (self.dac_bits, self.adc_bits):
            if bits is not None and bits < 2:
                raise ValueError("dac_bits/adc_bits must be >= 2 or None")
        if self.core_size < 1:
            raise ValueError("core_size must be >= 1")

    # ------------------------------------------------------------------ presets (pcm.presets holds the names)
    @classmethod
    def ideal(cls, **kw) -> PCMConfig:
        """Preset ``ideal``: every non-ideality off (``mvm`` is the exact float MVM x @ W up to float32)."""
        from .presets import chip  # noqa: PLC0415 - presets imports this module

        return chip("ideal", **kw)

    @classmethod
    def aihwkit_compat(cls, **kw) -> PCMConfig:
        """Preset ``aihwkit_compat``: aihwkit ``InferenceRPUConfig`` defaults (see ``pcm.presets``)."""
        from .presets import chip  # noqa: PLC0415

        return chip("aihwkit_compat", **kw)

    @classmethod
    def hermes_like(cls, **kw) -> PCMConfig:
        """Preset ``hermes_per_core``: HERMES TDP statistics (2 + 2 devices per weight), 8-bit DAC and ADC,
        per-MVM read noise, per-column drift compensation, one w_max per core (see ``pcm.presets``; the
        chip the nodes call ``hermes_like`` is ``hermes_per_column``)."""
        from .presets import chip  # noqa: PLC0415

        return chip("hermes_per_core", **kw)

    def replace(self, **kw) -> PCMConfig:
        """Shorthand for ``dataclasses.replace(self, **kw)``."""
        return dataclasses.replace(self, **kw)
