"""One registry of named chips: every name is one configuration, old names are aliases, and every path
keeps the chip it had (the README's numbers come from these configurations)."""

from __future__ import annotations

import dataclasses

import pytest

from pcm_l2l_ros.pcm import PCMConfig, presets
from pcm_l2l_ros.snn import onchip
from pcm_l2l_ros.snn.params import SNNConfig
from pcm_l2l_ros.vision.deploy import chip_configs


def test_every_name_is_one_configuration() -> None:
    configs = {name: presets.chip(name) for name in presets.PRESETS}
    assert len(set(configs.values())) == len(configs)  # no two names for the same chip
    for alias, name in presets.ALIASES.items():
        assert presets.chip(alias) == configs[name]
    with pytest.raises(ValueError, match="unknown PCM chip"):
        presets.chip("hermes_like_typo")


def test_the_paths_keep_their_chips() -> None:
    """The configurations each path built before the registry, field by field."""
    cfg = SNNConfig()
    q = cfg.update_quantum
    hermes = dict(device="hermes", devices_per_polarity=2, dac_bits=8, adc_bits=8, adc_range=10.0, out_noise=0.04,
                  read_noise="per_mvm", drift_compensation="per_column")
    # controller / eval-snn / chip-in-the-loop: HERMES with a per-column scale
    assert onchip.default_pcm_config(cfg) == PCMConfig(**hermes, scale="per_column", update_quantum=q,
                                                       update_rounding="stochastic")
    # vision node / eval-cnn: the same chip, stochastic rounding, w_max / 16 per core
    assert chip_configs() == chip_configs("hermes") == PCMConfig(**hermes, scale="per_column",
                                                                 update_rounding="stochastic")
    assert chip_configs("ideal") == PCMConfig.ideal(update_rounding="stochastic")
    # PCMConfig's classmethods are the per-core chips of aihwkit and HERMES
    assert PCMConfig.hermes_like() == PCMConfig(**hermes) == presets.chip("hermes_per_core")
    aih = PCMConfig.aihwkit_compat()
    assert (aih.device, aih.scale, aih.dac_bits, aih.adc_bits, aih.drift_reencode) == (
        "aihwkit_compat", "per_core", 7, 9, True)
    assert dataclasses.replace(aih, scale="per_column") == presets.chip("aihwkit_per_column")
