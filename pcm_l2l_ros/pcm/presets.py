"""Named simulated chips: one registry, one configuration per name, used by every caller.

=====================  ==============================================================================
name                   chip
=====================  ==============================================================================
``hermes_per_column``  the paper's chip: HERMES TDP device statistics (2 + 2 devices per weight), 8-bit
                       DAC and ADC (ADC at +-10, output noise 0.04 as aihwkit's
                       StandardHWATrainingPreset), per-MVM read noise, per-column drift compensation and
                       a per-column weight-to-conductance scale (each column's max|W| maps to g_max, as
                       the chip's per-column gain). The chip of the controller, the vision service and
                       every number the README reports.
``hermes_per_core``    the same with one w_max per 256 x 256 core (``PCMConfig.hermes_like()``).
``aihwkit_compat``     aihwkit's ``InferenceRPUConfig`` defaults: PCMLikeNoiseModel, one pair per weight,
                       per-core scale, frozen read noise, 7-bit DAC with abs-max input scaling, 9-bit
                       ADC clipped at +-12, output noise 0.06, global drift compensation with the noisy
                       reference, aihwkit's re-encoding of the programmed weights before drift.
``aihwkit_per_column`` ``aihwkit_compat`` with a per-column scale.
``ideal``              every non-ideality off: ``mvm`` is the exact float MVM x @ W.
=====================  ==============================================================================

Task settings (update quantum and rounding of the writes) are not part of a chip: callers pass them as
overrides, ``chip(name, update_quantum=..., update_rounding=...)``. Old names stay accepted
(``ALIASES``): ``hermes_like`` and ``hermes`` (what the nodes and ``eval-cnn`` called the paper's chip)
are ``hermes_per_column``.
"""

from __future__ import annotations

from typing import Any

from .config import PCMConfig

__all__ = ["PRESETS", "ALIASES", "PRESET_NAMES", "resolve", "chip"]

_HERMES = dict(device="hermes", devices_per_polarity=2, dac_bits=8, adc_bits=8, adc_range=10.0, out_noise=0.04,
               read_noise="per_mvm", drift_compensation="per_column")
_AIHWKIT = dict(device="aihwkit_compat", devices_per_polarity=1, dac_bits=7, dac_range=None, adc_bits=9,
                adc_range=12.0, out_noise=0.06, read_noise="frozen", drift_compensation="global",
                drift_reencode=True)

#: name -> the PCMConfig fields that differ from ``PCMConfig()``'s defaults
PRESETS: dict[str, dict[str, Any]] = {
    "hermes_per_column": {**_HERMES, "scale": "per_column"},
    "hermes_per_core": {**_HERMES, "scale": "per_core"},
    "aihwkit_compat": {**_AIHWKIT, "scale": "per_core"},
    "aihwkit_per_column": {**_AIHWKIT, "scale": "per_column"},
    "ideal": dict(programming_noise=False, drift=False, read_noise="off", dac_bits=None, adc_bits=None,
                  out_noise=0.0, drift_compensation="none"),
}
#: old name -> preset
ALIASES = {"hermes_like": "hermes_per_column", "hermes": "hermes_per_column"}
#: every accepted name (presets, then aliases)
PRESET_NAMES = (*PRESETS, *ALIASES)


def resolve(name: str) -> str:
    """The preset a name (or an old alias) stands for; ValueError for an unknown name."""
    name = ALIASES.get(name, name)
    if name not in PRESETS:
        raise ValueError(f"unknown PCM chip {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    return name


def chip(name: str, **overrides: Any) -> PCMConfig:
    """The configuration of the named chip, with ``overrides`` (any PCMConfig field) applied."""
    return PCMConfig(**{**PRESETS[resolve(name)], **overrides})
