"""The readout's full scale on the chip, chosen by the on-chip accuracy of the inner loop on meta-training tasks.

The readout core holds W (channels x ways) in weight units up to ``readout_w_max``; every reprogramming writes the
delta-rule update rounded (stochastically) to the quantum ``readout_w_max / 16``. The full scale trades two
errors: too large, and the small steps of a 5-shot task (the delta rule averages over the support set) are mostly
rounded to zero or one quantum, a noisy update; too small, and the adapted weights clip. The first calibration
(:func:`pcm_l2l_ros.vision.maml.calibrate_readout_wmax`, the 99.9 % quantile of |W| over software adaptation)
only avoids clipping. :func:`calibrate_readout_wmax_on_chip` tries full scales ``factor x`` that quantile on the
chip the node deploys (programming noise, drift, read noise, stochastic rounding of the updates; the conv layers
ideal, so that the readout alone is measured) and keeps the one with the highest query accuracy after the inner
loop, averaged over the shot settings, on meta-training (background) tasks only, never the evaluation split;
ties go to the smaller Kullback-Leibler divergence KL(p_software || p_chip) of the query predictions (how closely
the chip follows the software inner loop). The divergence alone is not the criterion: for the 20-way model it is
lowest at 0.4 x the quantile, where the chip's 1-shot accuracy is 1.1 points below that at 1 x (background tasks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pcm_l2l_ros.vision import model as M
from pcm_l2l_ros.vision.deploy import FewShotChip, chip_configs, software_readout_probs, support_query_features
from pcm_l2l_ros.vision.maml import calibrate_readout_wmax
from pcm_l2l_ros.vision.sampler import TaskSampler

DEFAULT_FACTORS = (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 1.0)  # multiples of the 99.9 % quantile


@dataclass
class ReadoutScaleCalibration:
    """Result of :func:`calibrate_readout_wmax_on_chip` (weights in weight units)."""

    w_max: float  # the chosen full scale
    quantile_w_max: float  # the 99.9 % quantile of |W| (factor 1)
    factors: list[float]
    kl: dict[int, list[float]] = field(default_factory=dict)  # shots -> mean KL per factor (nats per query)
    agreement: dict[int, list[float]] = field(default_factory=dict)  # shots -> chip/software label agreement
    loss: dict[int, list[float]] = field(default_factory=dict)  # shots -> chip query cross-entropy (true labels)
    accuracy: dict[int, list[float]] = field(default_factory=dict)  # shots -> chip query accuracy
    mean_kl: list[float] = field(default_factory=list)  # mean over the shot settings, per factor
    mean_accuracy: list[float] = field(default_factory=list)  # mean over the shot settings, per factor (criterion)

    def to_dict(self) -> dict:
        return {"method": "chip_accuracy", "w_max": self.w_max, "quantile_w_max": self.quantile_w_max,
                "factors": self.factors, "mean_accuracy": self.mean_accuracy, "mean_kl": self.mean_kl,
                "kl_by_shots": {str(k): v for k, v in self.kl.items()},
                "agreement_by_shots": {str(k): v for k, v in self.agreement.items()},
                "loss_by_shots": {str(k): v for k, v in self.loss.items()},
                "accuracy_by_shots": {str(k): v for k, v in self.accuracy.items()}}


def sidecar_record(cal: ReadoutScaleCalibration, *, shots: Sequence[int], tasks: int, drift_s: float, preset: str,
                   seed: int, previous_w_max: float | None) -> dict:
    """The sidecar's ``config.readout_calibration``: the grid with the accuracy, loss, divergence and agreement
    per factor, and how the calibration was run (the same record from ``calibrate-cnn`` and ``train-cnn
    --export-calibration chip``)."""
    return {**cal.to_dict(), "shots": [int(k) for k in shots], "tasks_per_shots": int(tasks), "split": "background",
            "drift_s": float(drift_s), "preset": preset, "seed": int(seed), "previous_w_max": previous_w_max}


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over rows of KL(p || q), nats."""
    p = np.clip(p, 1e-12, 1.0)
    q = np.clip(q, 1e-12, 1.0)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1)))


def calibrate_readout_wmax_on_chip(params: dict[str, np.ndarray], cfg: M.CNNConfig, images: np.ndarray,
                                   shots: Sequence[int], n_tasks: int, rng: np.random.Generator, *,
                                   queries: int = 5, factors: Sequence[float] = DEFAULT_FACTORS,
                                   preset: str = "hermes_per_column", drift_s: float = 3600.0,
                                   n_instances: int = 3) -> ReadoutScaleCalibration:
    """Choose the readout full scale (see the module doc).

    images: meta-training (background) characters, (n_chars, drawings, 28, 28). shots: the task sizes the model
    serves (each weighs equally). n_tasks: tasks per shot setting. n_instances programmed readouts per factor,
    cycled over the tasks (a programmed chip is a sample). Raises ValueError on an empty or non-positive grid.
    """
    factors = [float(f) for f in factors]
    if not factors or any(not np.isfinite(f) or f <= 0 for f in factors):
        raise ValueError(f"factors must be positive and finite, got {factors}")
    if n_tasks < 1 or n_instances < 1 or not shots:
        raise ValueError("n_tasks, n_instances and shots must be positive / non-empty")
    ways = int(params["readout"].shape[1])
    base = calibrate_readout_wmax(params, cfg, TaskSampler(images, ways, max(shots), queries), 64,
                                  np.random.default_rng(int(rng.integers(1 << 31))))
    ideal = FewShotChip(params, cfg, chip_configs("ideal"), rng=0)
    readouts = []  # per factor, n_instances programmed readouts at 1 h (the conv layers stay ideal)
    for f in factors:
        rcfg = chip_configs(preset).replace(w_max=base * f, scale="per_core")
        arrays = []
        for _ in range(n_instances):
            # programmed as a whole chip, so that its noise stream (and the shipped sidecars) stay reproducible
            c = FewShotChip(params, cfg, chip_configs("ideal"), rng=int(rng.integers(1 << 31)), readout_pcm_cfg=rcfg)
            c.drift(drift_s)
            arrays.append(c.readout)
        readouts.append(arrays)
    res = ReadoutScaleCalibration(w_max=base, quantile_w_max=base, factors=factors)
    for k in shots:
        sampler = TaskSampler(images, ways, int(k), queries)
        kl = np.zeros(len(factors))
        agree = np.zeros(len(factors))
        loss = np.zeros(len(factors))
        acc = np.zeros(len(factors))
        for t in range(n_tasks):
            task = sampler.sample(rng)
            (hs,), (hq,) = support_query_features(ideal, task.support_x[None], task.query_x[None])
            p_sw = software_readout_probs(ideal, hs, task.support_y, hq)
            seed = int(rng.integers(1 << 31))
            for j, arrays in enumerate(readouts):
                r = ideal.adapt_features(hs, task.support_y, hq, cfg.inner_steps, np.random.default_rng(seed),
                                         track_steps=False, readout=arrays[t % n_instances])
                kl[j] += _kl(p_sw, r.probs)
                agree[j] += float(np.mean(r.labels == p_sw.argmax(1)))
                p_true = r.probs[np.arange(len(task.query_y)), task.query_y]
                loss[j] -= float(np.mean(np.log(np.clip(p_true, 1e-12, 1.0))))
                acc[j] += float(np.mean(r.labels == task.query_y))
        res.kl[int(k)] = (kl / n_tasks).round(6).tolist()
        res.agreement[int(k)] = (agree / n_tasks).round(6).tolist()
        res.loss[int(k)] = (loss / n_tasks).round(6).tolist()
        res.accuracy[int(k)] = (acc / n_tasks).round(6).tolist()
    res.mean_kl = np.mean([res.kl[int(k)] for k in shots], axis=0).round(6).tolist()
    res.mean_accuracy = np.mean([res.accuracy[int(k)] for k in shots], axis=0).round(6).tolist()
    best = np.lexsort((np.asarray(res.mean_kl), -np.asarray(res.mean_accuracy)))[0]  # accuracy, then KL
    res.w_max = round(base * factors[int(best)], 5)
    return res
