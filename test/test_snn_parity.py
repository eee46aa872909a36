"""Parity with the paper's released meta-trained weights (shared/reference/ortner2025/robot_weights.npz).

Reference (README of the weights, 270 trajectories, noise-free, paper kinematics, clipped targets): trainee
20.5 Hz, LSG 10.0 Hz, loss 0.336 -> 0.0137 after one float update, 0.0278 with the update rounded to 1/16,
4.5-5 % of the plastic weights changed, end-effector error median 2.6 cm.

This test uses N = 45 trajectories. Tolerances are 4 standard deviations of the N = 45 batch statistic,
measured over 12 seeds (sd: LSG rate 0.30 Hz, loss before 0.039, after 0.0035, after quantised 0.0028, fraction
changed 0.0028; the trainee rate does not depend on the targets). The full-N numbers come from
``pcm-l2l eval-snn --reference --parity``.
"""

from __future__ import annotations

import numpy as np
import pytest

from pcm_l2l_ros.arm.kinematics import TaskKinematics
from pcm_l2l_ros.snn import episode, tasks
from pcm_l2l_ros.snn.params import SNNConfig, SNNWeights

N, SEED = 45, 2026


@pytest.fixture(scope="module")
def runs():
    cfg, kin = SNNConfig(), TaskKinematics.paper()
    w = SNNWeights.reference()
    tr = tasks.sample_trajectories(N, SEED, cfg, kin, mode="clip")
    train = episode.training_run(w, cfg)
    rf = episode.one_shot(w, tr, cfg, train=train)
    rq = episode.one_shot(w, tr, cfg, quantum=1 / 16, train=train)
    m = {k: episode.trajectory_metrics(y, tr, kin, cfg) for k, y in
         (("before", rf.y_before), ("float", rf.y_after), ("quant", rq.y_after))}
    return rf, rq, m


def test_rates(runs):
    rf, _, _ = runs
    assert abs(rf.rate_train_hz - 20.5) < 0.1
    assert abs(rf.rate_lsg_hz - 10.0) < 4 * 0.30


def test_losses(runs):
    _, _, m = runs
    before, after, quant = (float(m[k]["loss"].mean()) for k in ("before", "float", "quant"))
    assert abs(before - 0.336) < 4 * 0.039
    assert abs(after - 0.0137) < 4 * 0.0035
    assert abs(quant - 0.0278) < 4 * 0.0028
    assert before / after > 10  # one update learns the trajectory (reference: 24x)


def test_fraction_of_weights_changed(runs):
    rf, rq, _ = runs
    assert abs(rq.frac_changed - 0.0475) < 4 * 0.0028
    assert rf.frac_changed > 0.5  # the float update touches most weights (reference ~72 %)


def test_end_effector_error(runs):
    _, _, m = runs
    med_after = float(np.median(m["float"]["ee_err_cm"]))
    med_before = float(np.median(m["before"]["ee_err_cm"]))
    assert med_after < 6.0 < 30.0 < med_before  # reference: 2.6 cm after, 55.9 cm before
