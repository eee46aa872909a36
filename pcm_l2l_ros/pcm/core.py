"""The simulated PCM array's public names, from the modules that hold them (one concept each):
``pcm.config`` (PCMConfig), ``pcm.presets`` (named chips), ``pcm.array`` (PCMArray: mapping, device state,
programming), ``pcm.periphery`` (the MVM through DAC, ADC and noise), ``pcm.compensation`` (drift
compensation), ``pcm.noise`` (the MVM noise stream).
"""

from .array import PCMArray
from .config import PCMConfig
from .periphery import FusedMVM

__all__ = ["PCMConfig", "PCMArray", "FusedMVM"]
