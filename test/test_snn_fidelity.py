"""Execution fidelity (snn/fidelity.py): learned velocities executed on the PyBullet arm follow the open-loop path
they integrate to, on targets of every task family; the check itself measures what it claims (a wrongly paced,
mirrored or shifted execution is caught)."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_l2l_ros.snn import families as F
from pcm_l2l_ros.snn import fidelity as fd
from pcm_l2l_ros.snn import tasks
from pcm_l2l_ros.snn.params import SNNConfig

CFG = SNNConfig()
KIN = tasks.default_kinematics()


@pytest.fixture(scope="module")
def sim():
    pytest.importorskip("pybullet")
    from pcm_l2l_ros.arm.sim import ArmSim

    with ArmSim() as s:
        yield s


def test_resample_stream_and_metrics():
    t = 0.3 + 0.004 * np.arange(800)            # a 250 Hz stream from t = 0.3 s
    v = np.stack([2 * t, -t, np.ones_like(t)], axis=1)
    out = fd.resample_stream(t, v, 0.5, 0.01, 249)
    grid = 0.5 + 0.01 * np.arange(1, 250)
    np.testing.assert_allclose(out, np.stack([2 * grid, -grid, np.ones_like(grid)], axis=1), atol=1e-12)
    with pytest.raises(ValueError):
        fd.resample_stream(t, v, 1.2, 0.01, 249)  # the recording ends at 3.496 s < 1.2 + 2.49 s
    a = np.zeros((2, 249, 3))
    b = a.copy()
    b[..., 2] += 0.01                              # 1 cm above
    m = fd.fidelity_metrics(a, a, b)
    np.testing.assert_allclose(m["open_loop_cm"], 0.0)
    np.testing.assert_allclose(m["executed_cm"], 1.0)
    np.testing.assert_allclose(m["tracking_cm"], 1.0)


def test_open_loop_path_is_the_integrated_command():
    tr = F.sample_family("arc", 3, F.family_rng("arc", 1), CFG, KIN)
    np.testing.assert_allclose(fd.open_loop_xyz(tr.omega, KIN, CFG), tr.xyz, atol=1e-12)
    np.testing.assert_allclose(fd.open_loop_xyz(tr.omega[0], KIN, CFG), tr.xyz[0], atol=1e-12)


def test_the_arm_executes_the_targets_of_every_family(sim):
    """A target's own velocities, executed as the node paces them, give its path within 1.5 mm."""
    for fam in F.FAMILIES:
        tr = F.sample_family(fam, 2, F.family_rng(fam, 3), CFG, KIN)
        for i in range(2):
            omega = np.clip(tr.omega[i], -1.0, 1.0)  # Brownian targets may exceed the arm's 1 rad/s
            ex, sent = fd.execute_in_sim(sim, omega, CFG)
            np.testing.assert_array_equal(sent, omega)
            m = fd.fidelity_metrics(tr.xyz[i], fd.open_loop_xyz(sent, KIN, CFG), ex)
            assert m["tracking_cm"] < 0.15, (fam, i, m)
            if fam != "brownian":
                assert m["open_loop_cm"] < 1e-9 and m["executed_cm"] < 0.15, (fam, i, m)


def test_the_check_catches_wrong_executions(sim):
    tr = F.sample_family("lemniscate", 1, F.family_rng("lemniscate", 4), CFG, KIN)
    target, omega = tr.xyz[0], tr.omega[0]
    ok = fd.path_error_cm(target, fd.execute_in_sim(sim, omega, CFG)[0])
    half = fd.path_error_cm(target, fd.execute_in_sim(sim, 0.5 * omega, CFG)[0])          # paced at 0.02 s
    mirrored = fd.path_error_cm(target, fd.execute_in_sim(sim, omega[:, ::-1], CFG)[0])   # joints swapped
    late = np.concatenate([np.zeros((5, 2)), omega[:-5]])                                # 50 ms late
    shifted = fd.path_error_cm(target, fd.execute_in_sim(sim, late, CFG)[0])
    assert ok < 0.15 and min(half, mirrored) > 20 * ok and shifted > 3 * ok, (ok, half, mirrored, shifted)


def test_learned_updates_are_executed_as_learned(sim):
    """The controller's one update on the chip, executed in PyBullet: the executed error equals the open-loop
    (learning) error within 1.5 mm."""
    from pcm_l2l_ros.snn.controller import OneShotController

    ctrl = OneShotController.from_checkpoint(pcm=True, seed=0)
    for fam in ("point_to_point", "ellipse"):
        tr = F.sample_family(fam, 1, F.family_rng(fam, 2), CFG, KIN)
        res = ctrl.learn(tr)
        ex, sent = fd.execute_in_sim(sim, res.omega, CFG)
        m = fd.fidelity_metrics(tr.xyz[0], fd.open_loop_xyz(sent, KIN, CFG), ex)
        assert m["tracking_cm"] < 0.15 and abs(m["executed_cm"] - m["open_loop_cm"]) < 0.15, (fam, m)
        np.testing.assert_allclose(fd.open_loop_xyz(res.omega, KIN, CFG), res.xyz_after, atol=1e-9)
