"""Teach by demonstration, ROS-free part: the recorder (start at home, window, stop, bounded memory, stamps) and
the path from a recorded joint-state stream to the controller's target on its 10 ms grid. The node's service is
tested against the sim over DDS in test_controller_node.py."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_l2l_ros.arm.demonstration import DemonstrationError, DemonstrationRecorder
from pcm_l2l_ros.snn.families import sample_family
from pcm_l2l_ros.snn.params import SNNConfig

CFG = SNNConfig()
WINDOW = CFG.T * CFG.arm_time_per_step_s  # 2.49 s


def _recorder(**kw) -> DemonstrationRecorder:
    return DemonstrationRecorder(max_window_s=WINDOW, home_tolerance_rad=0.05, **kw)


def _stream(q_fn, rate_hz: float, duration_s: float, t0: float = 1234.5, jitter_s: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, duration_s + 1e-9, 1.0 / rate_hz)
    t = t + np.concatenate([[0.0], rng.uniform(-jitter_s, jitter_s, t.size - 1)])
    return t0 + t, np.stack([q_fn(x) for x in t])


def _lemniscate(t):
    s = 2 * np.pi * t / WINDOW
    return np.array([0.3 * np.sin(s), 0.2 * np.sin(2 * s)])


def test_window_ends_the_recording_and_keeps_the_samples_relative_to_the_start():
    rec = _recorder()
    rec.start(window_s=1.0)
    stamps, q = _stream(_lemniscate, 200.0, 2.0)
    done = [rec.add(s, p) for s, p in zip(stamps, q, strict=True)]
    k = done.index(True)
    assert stamps[k] - stamps[0] == pytest.approx(1.0, abs=1e-6)  # the sample at exactly 1 s completes the window
    assert not rec.recording and not any(done[k + 1 :])  # later samples are ignored
    demo = rec.stop()
    assert demo.ended_by == "window" and demo.samples == k + 1
    assert demo.times_s[0] == 0.0 and demo.duration_s == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(demo.positions, q[: k + 1])


def test_stop_ends_early_and_the_default_window_is_the_trainees_duration():
    rec = _recorder()
    rec.start()
    stamps, q = _stream(_lemniscate, 100.0, 5.0)
    for s, p in zip(stamps[:150], q[:150], strict=True):
        assert rec.add(s, p) is False
    demo = rec.stop()
    assert demo.ended_by == "stop" and demo.samples == 150 and demo.duration_s == pytest.approx(1.49)
    rec.start()
    done = [rec.add(s, p) for s, p in zip(stamps, q, strict=True)]
    assert rec.stop().duration_s == pytest.approx(WINDOW) and done.index(True) == 249


def test_a_demonstration_must_start_at_home():
    rec = _recorder()
    rec.start()
    with pytest.raises(DemonstrationError, match="start at home"):
        rec.add(10.0, [0.2, 0.0])
    assert not rec.recording  # nothing half-recorded stays behind
    with pytest.raises(DemonstrationError, match="no demonstration"):
        rec.stop()


def test_bad_samples_and_windows_are_refused():
    rec = _recorder()
    with pytest.raises(DemonstrationError, match="window_s"):
        rec.start(window_s=WINDOW + 0.1)
    with pytest.raises(DemonstrationError, match="window_s"):
        rec.start(window_s=float("nan"))
    rec.start()
    with pytest.raises(DemonstrationError, match="finite"):
        rec.add(1.0, [np.nan, 0.0])
    with pytest.raises(DemonstrationError, match="finite"):
        rec.add(1.0, [0.0, 0.0, 0.0])
    rec.add(1.0, [0.0, 0.0])
    assert rec.add(1.0, [0.0, 0.01]) is False and rec.add(0.5, [0.0, 0.01]) is False
    assert rec.dropped == 2  # stamps that do not increase are dropped
    with pytest.raises(DemonstrationError, match="at least 2 samples"):
        rec.stop()  # one sample is no trajectory


def test_memory_is_bounded_by_max_samples():
    rec = _recorder(max_samples=100)
    rec.start()
    stamps, q = _stream(_lemniscate, 10_000.0, 0.05)  # 500 samples in 50 ms: a flood
    done = [rec.add(s, p) for s, p in zip(stamps, q, strict=True)]
    assert done.index(True) == 100 and rec.stop().samples == 100
    with pytest.raises(ValueError, match="max_samples"):
        DemonstrationRecorder(WINDOW, 0.05, max_samples=10**9)


def test_a_recorded_stream_becomes_the_target_it_demonstrates():
    """A 1 kHz, jittered recording of a trajectory resamples onto the trainee's grid as that trajectory."""
    from pcm_l2l_ros.arm.kinematics import TaskKinematics
    from pcm_l2l_ros.snn.controller import LEARNED_JOINTS, OneShotController
    from pcm_l2l_ros.snn.params import SNNWeights

    truth = sample_family("lemniscate", 1, 4242, CFG, TaskKinematics.from_urdf())
    grid = CFG.arm_time_per_step_s * np.arange(0, CFG.T + 1)
    q_true = np.concatenate([np.zeros((1, 2)), truth.q[0]])

    def q_fn(t):
        return np.array([np.interp(t, grid, q_true[:, j]) for j in range(2)])

    rec = _recorder()
    rec.start()
    stamps, q = _stream(q_fn, 1000.0, 3.0, jitter_s=2e-4, seed=3)
    for s, p in zip(stamps, q, strict=True):
        if rec.add(s, p):
            break
    demo = rec.stop()
    ctl = OneShotController(SNNWeights.reference(), CFG, pcm=False)
    target = ctl.target_from_samples(LEARNED_JOINTS, demo.times_s, demo.positions)
    np.testing.assert_allclose(target.q[0], truth.q[0], atol=2e-3)  # rad, after 1 kHz sampling with jitter
    np.testing.assert_allclose(target.xyz[0], truth.xyz[0], atol=2e-3)  # m


def test_the_demo_offers_every_task_family_and_draws_its_held_out_target():
    from pcm_l2l_ros.demo import DEMO_SHAPES, pick_unseen_target
    from pcm_l2l_ros.snn.families import FAMILIES, family_rng, sample_family

    assert sorted(DEMO_SHAPES) == sorted(FAMILIES)
    batch, cfg, kin = pick_unseen_target(20261129, "lemniscate")
    first = sample_family("lemniscate", 16, family_rng("lemniscate", 20261129), cfg, kin)
    assert batch.family[0] == "lemniscate" and np.abs(batch.omega).max() <= 1.0 + 1e-9
    np.testing.assert_array_equal(batch.q[0], first.q[np.flatnonzero(np.abs(first.omega).max(axis=(1, 2)) <= 1.0)[0]])
    np.testing.assert_allclose(batch.q[0, -1], 0.0, atol=1e-6)  # a closed curve: back at home


def test_teach_cli_refuses_a_window_beyond_the_trainee_before_any_ros():
    import subprocess
    import sys

    for bad in ("3.0", "0", "nan"):
        r = subprocess.run(
            [sys.executable, "-m", "pcm_l2l_ros.cli", "teach", "--window", bad],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2 and "--window must be in (0, 2.49] s" in r.stderr, r.stderr


def test_the_target_starts_exactly_at_home_and_sampling_noise_above_the_velocity_limit_is_clipped():
    from pcm_l2l_ros.arm.demonstration import Demonstration, on_trainee_grid

    t = np.arange(0.0, 1.0 + 1e-9, 0.01)
    q = np.stack([0.02 + 0.5 * t, np.zeros_like(t)], axis=1)  # starts 0.02 rad off home, 0.5 rad/s
    q[50, 0] += 0.0052  # one sample 5 ms late: 1.04 x the 1 rad/s limit
    grid, qg = on_trainee_grid(Demonstration(t, q, "stop"), 0.01, 249, [1.0, 1.0])
    assert grid.shape == (249,) and qg.shape == (249, 2)
    omega = np.diff(np.concatenate([np.zeros((1, 2)), qg]), axis=0) / 0.01
    assert np.abs(omega).max() <= 1.0 + 1e-9  # clipped to the limit
    np.testing.assert_allclose(qg[0], [0.005, 0.0], atol=1e-9)  # relative to the first sample: no jump at the start
    np.testing.assert_allclose(qg[98], [0.495, 0.0], atol=0.006)  # and otherwise the recording
    np.testing.assert_allclose(qg[150:], np.broadcast_to(qg[-1], qg[150:].shape))  # held after the last sample
    q[50, 0] += 0.05  # a real excess (6 x the limit): refused
    with pytest.raises(DemonstrationError, match="slower"):
        on_trainee_grid(Demonstration(t, q, "stop"), 0.01, 249, [1.0, 1.0])
