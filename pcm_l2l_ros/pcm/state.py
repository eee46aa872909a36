"""The state a PCM array's parts share (``PCMArray`` = ``ConductanceState`` + ``DriftCompensation`` +
``CrossbarMVM`` + mapping and programming): the attributes ``PCMArray.__init__`` sets, declared once with their
types, and the methods one part calls in another. Declarations only; nothing here runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from .config import PCMConfig
    from .device import DeviceModel
    from .noise import NormalStream

__all__ = ["ArrayState"]


class ArrayState:
    """Attributes of ``PCMArray`` (see its docstring and ``__init__``); units: conductances µS, times s."""

    cfg: PCMConfig
    model: DeviceModel
    n_in: int
    n_out: int
    units: int                      # modelled conductance units per polarity
    phys_per_unit: int
    g_tot_uS: float                 # full conductance of one side of a cell, µS
    t_s: float                      # the array clock, s since the last full program()
    write_counts: np.ndarray        # (2, devices_per_polarity, n_in, n_out) write pulses per physical device
    _row_blocks: list[slice]
    _col_blocks: list[slice]
    _single_block: bool
    _programmed: bool
    _frozen_active: bool
    _scratch: dict[int, Any]         # per row block, periphery._Scratch (MVM work buffers)
    _wmax: np.ndarray               # (row blocks, n_out) w_max mapped to G_tot
    _wmax_full: np.ndarray          # (n_in, n_out)
    _W_target: np.ndarray           # (n_in, n_out) digital target weights
    _g_target: np.ndarray           # (2, units, n_in, n_out) target conductances, µS
    _g_prog: np.ndarray             # programmed conductances, µS
    _nu: np.ndarray                 # drift exponents
    _t_prog: np.ndarray             # programming time of every unit, s
    _xi: np.ndarray                 # frozen read-noise draws
    _baseline: np.ndarray           # (row blocks, n_out) drift-compensation reference
    _alpha: np.ndarray              # (row blocks, n_out) drift-compensation factors
    _abs_colmean: np.ndarray        # (row blocks, n_out) mean |W_target / w_max| per core column
    _carry: np.ndarray | None       # update_rounding="accumulate": the digital accumulator chi, quanta
    _wn: np.ndarray                 # (n_in, n_out) normalised weights
    _mats: list[np.ndarray]         # per row block, float32
    _mats_t: list[torch.Tensor]
    _vars: list[np.ndarray] | None  # per-MVM read-noise variances per row block (None: no read noise)
    _vars_t: list[torch.Tensor]
    _mats_shared: bool              # _mats / _vars are shared with a fork (copy before writing in place)
    _colf: list[np.ndarray]         # per row block, (n_out,) w_max * alpha
    _weff: np.ndarray | None        # every non-ideality off: the effective float32 matrix
    _periph: Any                    # periphery._Periphery
    _normals: NormalStream

    def _expand_rows(self, a: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _group_max(self, a: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _refresh_colf(self) -> None:
        raise NotImplementedError
