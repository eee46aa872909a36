"""The trainee on the simulated PCM core, and the eval-snn command (small N)."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest

from pcm_l2l_ros.arm.kinematics import TaskKinematics
from pcm_l2l_ros.pcm import PCMConfig
from pcm_l2l_ros.snn import episode, onchip, tasks
from pcm_l2l_ros.snn.params import SNNConfig, SNNWeights

CFG = SNNConfig()
KIN = TaskKinematics.paper()


@pytest.fixture(scope="module")
def setup():
    w = SNNWeights.reference()
    tr = tasks.sample_trajectories(6, 99, CFG, KIN, mode="clip")
    return w, tr


def test_plastic_matrix_fits_one_core(setup):
    w, _ = setup
    M = onchip.plastic_matrix(w)
    assert M.shape == (255, 250) and np.all(np.diag(M[5:]) == 0)
    assert np.array_equal(M[:5], w.W_in_trainee.astype(np.float64))


@pytest.mark.parametrize("batch", [1, 3, 15, 16])
@pytest.mark.parametrize("preset", ["hermes_per_column", "aihwkit_compat"])
def test_compiled_chip_run_equals_the_per_step_mvm_path(setup, batch, preset):
    """run_trainee_chip (one compiled loop) = run_trainee_mvm(chip.mvm) bit for bit: spikes, outputs, e-prop
    traces, and the chip's noise stream afterwards (batch 16 takes the per-step path itself)."""
    from pcm_l2l_ros.pcm import PCMArray

    w, _ = setup
    pcm_cfg = onchip.default_pcm_config(CFG, preset=preset)
    a = PCMArray(onchip.plastic_matrix(w), pcm_cfg, rng=4)
    a.drift(3600.0)
    b = a.fork(None)
    b._normals = copy.deepcopy(a._normals)  # the same noise stream (fork draws a new one)
    clk = tasks.clock_input(CFG, np.float32)
    for record in (True, False):
        ref = onchip.run_trainee_mvm(a.mvm, clk, w.W_out_trainee, batch, CFG, record_eprop=record)
        run = onchip.run_trainee_chip(b, clk, w.W_out_trainee, batch, CFG, record_eprop=record)
        assert ref.z.sum() > 0
        for k in ("z", "y", "psi", "xbar", "zbar"):
            x, y = getattr(ref, k), getattr(run, k)
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(x, y)
    u = np.ones((2, a.n_in), np.float32)
    np.testing.assert_array_equal(a.mvm(u), b.mvm(u))


def test_ideal_chip_equals_software_quantised_update(setup):
    """With every non-ideality off, the on-chip episode is the software episode with ΔW rounded to 1/16."""
    w, tr = setup
    r = onchip.one_shot_pcm(w, tr, CFG, PCMConfig.ideal(update_quantum=CFG.update_quantum), drift_s=0.0)
    sw = episode.one_shot(w, tr, CFG, quantum=CFG.update_quantum)
    assert np.allclose(r.y_before, sw.y_before, atol=1e-4)
    l_chip = episode.trajectory_metrics(r.y_after, tr, KIN, CFG)["loss"]
    l_sw = episode.trajectory_metrics(sw.y_after, tr, KIN, CFG)["loss"]
    assert np.allclose(l_chip, l_sw, rtol=1e-3)
    assert np.array_equal(r.weights_changed, sw.n_changed)
    assert r.n_devices == 2 * 255 * 250  # ideal preset: one device per polarity


def test_hermes_chip_learns_with_sparse_writes(setup):
    w, tr = setup
    r = onchip.one_shot_pcm(w, tr, CFG, drift_s=3600.0, rng=1)
    m0 = episode.trajectory_metrics(r.y_before, tr, KIN, CFG)["loss"].mean()
    m1 = episode.trajectory_metrics(r.y_after, tr, KIN, CFG)["loss"].mean()
    assert m1 < 0.5 * m0
    assert r.n_devices == 4 * 255 * 250  # 2 + 2 devices per weight
    # sparse update: a few percent of the devices are written (paper: ~5 % of the weights change)
    assert 0 < r.devices_written.mean() < 0.15 * r.n_devices
    assert 15.0 < r.rate_train_hz < 25.0


def test_eval_command_small(tmp_path, capsys):
    from pcm_l2l_ros.snn import eval_cmd

    rc = eval_cmd.main(["--reference", "--n", "5", "--val-n", "4", "--eta-grid", "0.01", "0.1", "--drift", "3600",
                        "--plots", "2", "--out", str(tmp_path)])
    assert rc == 0
    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    conds = {(r["condition"], r["platform"]) for r in rows}
    assert {("no_update", "software"), ("natural_eprop", "software"), ("natural_eprop_q16", "software"),
            ("symmetric_eprop", "software"), ("random_eprop", "software"),
            ("natural_eprop", "pcm_3600s")} <= conds
    meta = json.loads((tmp_path / "metrics.json").read_text())
    assert meta["n"] == 5 and set(meta["eta_tuning"]) == {"symmetric", "random"}
    for f in ("paths_xyz.png", "paths_3d.png", "error_hist.png", "per_trajectory.csv"):
        assert (tmp_path / f).stat().st_size > 0


def test_eval_command_missing_checkpoint(tmp_path):
    from pcm_l2l_ros.snn import eval_cmd

    assert eval_cmd.main(["--checkpoint", str(tmp_path / "nope.npz"), "--out", str(tmp_path)]) == 2


def test_eval_command_with_checkpoint(tmp_path):
    """A project checkpoint (npz + sidecar) is loaded with its config and kinematics."""
    from pcm_l2l_ros.checkpoint import save_checkpoint
    from pcm_l2l_ros.snn import eval_cmd
    from pcm_l2l_ros.snn.params import CHECKPOINT_KIND

    cfg = SNNConfig(n_lsg=60)
    w = SNNWeights.init_random(cfg, 0)
    path = save_checkpoint(tmp_path / "ck.npz", w.to_dict(), kind=CHECKPOINT_KIND, seed=0,
                           config={**cfg.to_dict(), "kinematics": "urdf"}, command="test")
    rc = eval_cmd.main(["--checkpoint", str(path), "--n", "4", "--no-pcm", "--no-baselines", "--plots", "0",
                        "--out", str(tmp_path / "ev")])
    assert rc == 0
    meta = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert meta["kinematics"] == "urdf" and meta["trajectories"] == "resample"
    assert {r["condition"] for r in meta["rows"]} == {"no_update", "natural_eprop", "natural_eprop_q16"}
