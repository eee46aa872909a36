"""pcm_l2l_ros.pcm: simulated phase-change-memory (PCM) in-memory-computing cores (ROS-free).

Public API (the model: docs/device_model.md)::

    from pcm_l2l_ros.pcm import PCMArray, chip         # chip(name): the named chips of pcm.presets
    arr = PCMArray(W, chip("hermes_per_column"), rng=0)  # W (n_in, n_out), y = x @ W; programs the devices
    arr.drift(3600.0)                                    # 1 h after programming
    y = arr.mvm(x)                                       # x (batch, n_in) -> (batch, n_out)
    rep = arr.reprogram(delta_w)                         # sparse update, rep.devices_written, rep.energy_J
"""

from .array import PCMArray
from .config import PCMConfig
from .device import AIHWKIT_PCM, DEVICE_NAMES, HERMES_ODP, HERMES_TDP, DeviceModel, device_model
from .presets import PRESET_NAMES, PRESETS, chip
from .programming import (
    DEFAULT_ENERGY_PER_PULSE_J,
    EnduranceError,
    ProgramReport,
    UpdateReport,
    program_and_verify,
)

__all__ = [
    "PCMArray",
    "PCMConfig",
    "PRESETS",
    "PRESET_NAMES",
    "chip",
    "DeviceModel",
    "AIHWKIT_PCM",
    "HERMES_ODP",
    "HERMES_TDP",
    "DEVICE_NAMES",
    "device_model",
    "DEFAULT_ENERGY_PER_PULSE_J",
    "EnduranceError",
    "ProgramReport",
    "UpdateReport",
    "program_and_verify",
]
