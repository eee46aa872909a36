"""The paper's few-shot CNN (Ortner et al. 2025; docs/architecture.md §3.1), functional PyTorch.

4 x [conv 3x3 stride 2 (56 channels, no bias) -> ReLU -> BatchNorm without affine] -> global max-pool
-> dense readout without bias (logits = h @ W, W of shape (channels, ways)).

BatchNorm uses **per-task batch statistics**: statistics over (images, H, W) of one group of images,
where a group is one task's support set or one task's query set (the transductive MAML convention; this
fixes the official code's train/eval BN mismatch). With ``bn_stats='support'`` the query set is
normalised with the support set's statistics instead (non-transductive; for classifying single images).

Input convention is per checkpoint: our loader gives ink = 1; ``input_convention='background1'``
(released Ortner et al. weights) feeds 1 - x. Padding: ``'symmetric'`` = pad 1 on every side (ours);
``'tf_same'`` = TensorFlow SAME padding (extra pixel bottom/right when needed; the released weights were
trained in TF).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

CONV_NAMES = ("conv1", "conv2", "conv3", "conv4")
KIND = "cnn_maml"


@dataclass
class CNNConfig:
    ways: int = 5
    channels: int = 56
    inner_steps: int = 4
    inner_lr: float = 0.1
    input_convention: str = "ink1"  # 'ink1' (ours) or 'background1' (released weights)
    padding: str = "symmetric"  # 'symmetric' or 'tf_same'
    bn_eps: float = 1e-3  # TF/Keras BatchNormalization default
    readout_w_max: float | None = None  # chip full scale of the readout (calibrated at export), weight units

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CNNConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def init_params(cfg: CNNConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """He-normal conv kernels (OIHW) and a zero readout, float32."""
    p = {}
    c_in = 1
    for name in CONV_NAMES:
        std = np.sqrt(2.0 / (c_in * 9))
        p[name] = (rng.standard_normal((cfg.channels, c_in, 3, 3)) * std).astype(np.float32)
        c_in = cfg.channels
    p["readout"] = np.zeros((cfg.channels, cfg.ways), np.float32)
    return p


def to_torch(params: dict[str, np.ndarray], requires_grad: bool = False) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(np.asarray(v, np.float32), requires_grad=requires_grad) for k, v in params.items()}


def to_numpy(params: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in params.items()}


def prepare_input(x: np.ndarray | torch.Tensor, cfg: CNNConfig) -> torch.Tensor:
    """ink-1 images (..., 28, 28) -> float tensor in the checkpoint's input convention."""
    x = torch.as_tensor(np.asarray(x, np.float32)) if not torch.is_tensor(x) else x.float()
    if cfg.input_convention == "background1":
        return 1.0 - x
    if cfg.input_convention != "ink1":
        raise ValueError(f"unknown input_convention {cfg.input_convention!r}")
    return x


def pad_amounts(h: int, w: int, padding: str) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) zero padding of an h x w map before a 3x3 stride-2 conv."""
    if padding == "symmetric":
        return 1, 1, 1, 1
    if padding == "tf_same":  # total = max((out-1)*2 + 3 - in, 0), out = ceil(in/2); extra goes bottom/right
        th = max(((h + 1) // 2 - 1) * 2 + 3 - h, 0)
        tw = max(((w + 1) // 2 - 1) * 2 + 3 - w, 0)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    raise ValueError(f"unknown padding {padding!r}")


def _pad(x: torch.Tensor, padding: str) -> torch.Tensor:
    t, b, left, right = pad_amounts(*x.shape[-2:], padding)
    return F.pad(x, (left, right, t, b))


def batch_norm_groups(y: torch.Tensor, n_groups: int, eps: float,
                      stats_from: torch.Tensor | None = None) -> torch.Tensor:
    """BatchNorm without affine, statistics per group: y (G*n, C, H, W) with G groups of n images.

    stats_from: optional (G, 2, C) tensor of (mean, var) to use instead of the batch statistics.
    """
    gn, c, h, w = y.shape
    yg = y.reshape(n_groups, gn // n_groups, c, h, w)
    if stats_from is None:
        mean = yg.mean(dim=(1, 3, 4), keepdim=True)
        var = yg.var(dim=(1, 3, 4), unbiased=False, keepdim=True)
    else:
        mean = stats_from[:, 0].reshape(n_groups, 1, c, 1, 1)
        var = stats_from[:, 1].reshape(n_groups, 1, c, 1, 1)
    return ((yg - mean) / torch.sqrt(var + eps)).reshape(gn, c, h, w)


def conv_block(params: dict[str, torch.Tensor], x: torch.Tensor, name: str, cfg: CNNConfig) -> torch.Tensor:
    """conv (no bias, stride 2) -> ReLU; x (N, C, H, W)."""
    return F.relu(F.conv2d(_pad(x, cfg.padding), params[name], stride=2))


WeightNoise = float | tuple[float, ...]  # one relative std for every conv layer, or one per layer (CONV_NAMES)


def parse_weight_noise(text: str | float) -> WeightNoise:
    """``"0.06"`` -> 0.06 (every conv layer); ``"0.1,0.06,0.06,0.06"`` -> one relative std per conv layer, in
    the order conv1..conv4 (e.g. scaled to each layer's measured error on the chip). Values must be finite and
    >= 0."""
    try:
        vals = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise ValueError(f"weight noise {text!r} is not a number or {len(CONV_NAMES)} comma-separated numbers"
                         ) from None
    if len(vals) not in (1, len(CONV_NAMES)):
        raise ValueError(f"weight noise needs 1 or {len(CONV_NAMES)} values (conv1..conv4), got {len(vals)}")
    if not all(np.isfinite(v) and v >= 0 for v in vals):
        raise ValueError(f"weight noise must be finite and >= 0, got {vals}")
    return vals[0] if len(vals) == 1 else tuple(vals)


def layer_weight_noise(weight_noise: WeightNoise | list[float], name: str) -> float:
    """The relative weight-noise std of conv layer ``name`` under a scalar or per-layer setting."""
    if isinstance(weight_noise, (tuple, list)):
        return float(weight_noise[CONV_NAMES.index(name)])
    return float(weight_noise)


def noisy_conv_kernels(params: dict[str, torch.Tensor], weight_noise: WeightNoise,
                       draw: Any) -> dict[str, torch.Tensor]:
    """One simulated chip for hardware-aware training: each conv kernel read as W + sigma_l * max|W_o| * xi.

    ``max|W_o|`` is per output channel (OIHW; one crossbar column, the deployment's per-column w_max),
    ``sigma_l`` the layer's relative std (:func:`layer_weight_noise`), ``xi = draw(shape)`` a standard normal
    tensor (drawn for every conv layer in order, also where sigma_l is 0, so that a run's random stream does
    not depend on the setting). The noise is a constant: gradients pass through to W unchanged. Other
    entries of ``params`` are returned as they are.
    """
    out = dict(params)
    for k in CONV_NAMES:
        if k not in params:
            continue
        w = params[k]
        xi = draw(tuple(w.shape))
        col_max = w.detach().abs().amax(dim=(1, 2, 3), keepdim=True)
        out[k] = w + layer_weight_noise(weight_noise, k) * col_max * xi
    return out


def any_weight_noise(weight_noise: WeightNoise | list[float]) -> bool:
    """True when some conv layer gets weight noise."""
    vals = weight_noise if isinstance(weight_noise, (tuple, list)) else (weight_noise,)
    return any(float(v) > 0 for v in vals)


def features(params: dict[str, torch.Tensor], x: torch.Tensor, cfg: CNNConfig, mvm_noise: float = 0.0,
             gen: torch.Generator | None = None) -> torch.Tensor:
    """x (G, n, 28, 28) already in the checkpoint's input convention -> h (G, n, channels).

    mvm_noise (hardware-aware training only): every conv output gets Gaussian noise of standard deviation
    ``mvm_noise * s * w_max_o``, a fresh draw per output (per MVM) from ``gen``, where s is the largest input
    magnitude of the output's 3x3 x channels patch (the DAC's abs-max input scale) and w_max_o = max|W_o| the
    output channel's (crossbar column's) full-scale weight: the chip's output noise in its normalised units
    (docs/device_model.md §5).

    Each of the G groups (a task's support set or query set) gets its own BN statistics: the network runs
    once per group with the native batch norm (batch statistics over n, H, W), which on a CPU is about 2x
    faster forward+backward than normalising all groups at once through reshapes (:func:`batch_norm_groups`;
    same numbers to float rounding, test_vision_model.py; bench/maml_step.py).
    """
    g, n = x.shape[:2]
    out = []
    for t in range(g):
        y = x[t].reshape(n, 1, *x.shape[2:])
        for name in CONV_NAMES:
            w = params[name]
            y_in = y
            if cfg.padding == "symmetric":  # pad 1 on every side, inside the convolution (no copy)
                y = F.conv2d(y, w, stride=2, padding=1)
            else:
                y = F.conv2d(_pad(y, cfg.padding), w, stride=2)
            if mvm_noise:  # s: the DAC scale of each input vector (3x3 patch x channels), abs-max
                s = F.max_pool2d(_pad(y_in.detach().abs().amax(dim=1, keepdim=True), cfg.padding), 3, stride=2)
                w_max = w.detach().abs().amax(dim=(1, 2, 3)).reshape(1, -1, 1, 1)
                xi = torch.randn(y.shape, generator=gen, dtype=y.dtype).to(y.device)
                y = y + mvm_noise * s * w_max * xi
            y = F.batch_norm(F.relu(y), None, None, training=True, eps=cfg.bn_eps)
        out.append(y.amax(dim=(2, 3)))
    return torch.stack(out)


def features_support_stats(params: dict[str, torch.Tensor], xs: torch.Tensor, xq: torch.Tensor,
                           cfg: CNNConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-transductive variant: the query set is normalised with the support set's statistics.

    xs (G, ns, 28, 28), xq (G, nq, 28, 28) -> (hs (G, ns, C), hq (G, nq, C)).
    """
    g, ns = xs.shape[:2]
    nq = xq.shape[1]
    ys = xs.reshape(g * ns, 1, *xs.shape[2:])
    yq = xq.reshape(g * nq, 1, *xq.shape[2:])
    for name in CONV_NAMES:
        ys, yq = conv_block(params, ys, name, cfg), conv_block(params, yq, name, cfg)
        c = ys.shape[1]
        ysg = ys.reshape(g, ns, c, *ys.shape[2:])
        stats = torch.stack([ysg.mean(dim=(1, 3, 4)), ysg.var(dim=(1, 3, 4), unbiased=False)], dim=1)
        ys = batch_norm_groups(ys, g, cfg.bn_eps, stats)
        yq = batch_norm_groups(yq, g, cfg.bn_eps, stats)
    return ys.amax(dim=(2, 3)).reshape(g, ns, -1), yq.amax(dim=(2, 3)).reshape(g, nq, -1)


def delta_rule_grad(h: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Gradient of the mean softmax-CE w.r.t. the readout: (1/n) sum h (p - onehot(y))^T.

    h (G, n, C), y (G, n) int, w (G, C, ways) -> (G, C, ways). The readout update -alpha * this is the
    delta rule alpha * mean((y - p) h^T).
    """
    p = torch.softmax(h @ w, dim=-1)
    onehot = F.one_hot(y, w.shape[-1]).to(p.dtype)
    return h.transpose(1, 2) @ (p - onehot) / h.shape[1]


def adapt_readout(h: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, steps: int, lr: float,
                  first_order: bool = False) -> list[torch.Tensor]:
    """Inner loop: ``steps`` SGD steps on the readout; returns [W^0, ..., W^steps], each (G, C, ways).

    Differentiable (second order) unless first_order, in which case each step's gradient is detached.
    """
    ws = [w0]
    w = w0
    for _ in range(steps):
        g = delta_rule_grad(h, y, w)
        if first_order:
            g = g.detach()
        w = w - lr * g
        ws.append(w)
    return ws


def restrict_ways(params: dict[str, np.ndarray], cfg: CNNConfig, ways: int
                  ) -> tuple[dict[str, np.ndarray], CNNConfig]:
    """The same model for ``ways`` <= cfg.ways classes: the first ``ways`` readout columns (one chip, one model)."""
    if not 2 <= ways <= cfg.ways:
        raise ValueError(f"a {cfg.ways}-way model serves 2..{cfg.ways} ways, not {ways}")
    if ways == cfg.ways:
        return params, cfg
    p = dict(params)
    p["readout"] = np.ascontiguousarray(params["readout"][:, :ways])
    return p, CNNConfig.from_dict({**cfg.to_dict(), "ways": ways})


# ---------------------------------------------------------------------------------------------- checkpoints
def released_weights_path() -> Path:
    from pcm_l2l_ros.paths import shared_dir  # noqa: PLC0415

    return shared_dir() / "reference" / "ortner2025" / "omniglot_weights.npz"


def load_released(path: str | Path | None = None) -> tuple[dict[str, np.ndarray], CNNConfig]:
    """The released 5-way weights (TF HWIO) as our OIHW params + their config (background = 1).

    Symmetric padding: with it the released weights reach ~98 % (5w5s); TF SAME padding gives ~74 %.
    """
    path = Path(path) if path is not None else released_weights_path()
    with np.load(path, allow_pickle=False) as z:
        params = {name: np.ascontiguousarray(z[f"kernel_{i + 1}"].transpose(3, 2, 0, 1)).astype(np.float32)
                  for i, name in enumerate(CONV_NAMES)}
        params["readout"] = z["w_readout"].astype(np.float32)
    cfg = CNNConfig(ways=params["readout"].shape[1], channels=params["readout"].shape[0],
                    input_convention="background1", padding="symmetric")
    return params, cfg


def load_model(path: str | Path) -> tuple[dict[str, np.ndarray], CNNConfig, dict[str, Any]]:
    """Load one of our checkpoints (kind 'cnn_maml'); returns (params, config, sidecar)."""
    from pcm_l2l_ros.checkpoint import load_checkpoint  # noqa: PLC0415

    arrays, meta = load_checkpoint(path, kind=KIND)
    cfg = CNNConfig.from_dict(meta.get("config", {}))
    return arrays, cfg, meta


def shipped_model_path(ways: int) -> Path:
    from pcm_l2l_ros.paths import MODELS_DIR  # noqa: PLC0415

    return MODELS_DIR / f"cnn_{ways}way.npz"
