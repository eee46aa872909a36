"""Forward kinematics from the URDF chain vs PyBullet; the SNN task kinematics (URDF and paper conventions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pcm_l2l_ros.arm.kinematics import PAPER_TASK_LIMITS, TaskKinematics
from pcm_l2l_ros.arm.urdf import ee_position, fk, load_chain, rpy_to_matrix


@pytest.fixture(scope="module")
def chain():
    return load_chain()


def _random_q(chain, rng, n):
    return rng.uniform(chain.lower, chain.upper, size=(n, len(chain.movable)))


def test_fk_matches_pybullet_link_frames(chain):
    """Every link frame of 300 random configurations over the full joint ranges: <= 1 mm (measured ~1e-7 m,
    PyBullet's float32 link state)."""
    pb = pytest.importorskip("pybullet")
    rng = np.random.default_rng(1234)
    qs = _random_q(chain, rng, 300)
    cid = pb.connect(pb.DIRECT)
    try:
        body = pb.loadURDF(str(chain.path), useFixedBase=True, physicsClientId=cid)
        n = pb.getNumJoints(body, physicsClientId=cid)
        info = [pb.getJointInfo(body, i, physicsClientId=cid) for i in range(n)]
        index = {inf[1].decode(): i for i, inf in enumerate(info)}
        links = {i: inf[12].decode() for i, inf in enumerate(info)}
        frames = fk(chain, qs)  # batched
        worst_pos = worst_rot = 0.0
        for k, q in enumerate(qs):
            for name, qi in zip(chain.movable, q, strict=True):
                pb.resetJointState(body, index[name], float(qi), physicsClientId=cid)
            for i, link in links.items():
                ls = pb.getLinkState(body, i, computeForwardKinematics=True, physicsClientId=cid)
                pos, quat = np.array(ls[4]), ls[5]
                rot = np.array(pb.getMatrixFromQuaternion(quat)).reshape(3, 3)
                worst_pos = max(worst_pos, np.abs(frames[link][k, :3, 3] - pos).max())
                worst_rot = max(worst_rot, np.abs(frames[link][k, :3, :3] - rot).max())
    finally:
        pb.disconnect(physicsClientId=cid)
    assert worst_pos <= 1e-3, worst_pos
    assert worst_rot <= 1e-5, worst_rot


def test_fk_single_dict_and_batch_agree(chain):
    rng = np.random.default_rng(5)
    qs = _random_q(chain, rng, 20)
    batch = ee_position(chain, qs)
    for q, p in zip(qs, batch, strict=True):
        np.testing.assert_allclose(ee_position(chain, q), p, atol=1e-15)
        np.testing.assert_allclose(ee_position(chain, dict(zip(chain.movable, q, strict=True))), p, atol=1e-15)
    with pytest.raises(ValueError):
        fk(chain, np.zeros(3))
    with pytest.raises(KeyError):
        fk(chain, {"wrist": 0.0})


def test_rpy_convention():
    r, p, y = 0.3, -0.7, 1.1
    rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    np.testing.assert_allclose(rpy_to_matrix((r, p, y)), rz @ ry @ rx, atol=1e-15)


def test_task_kinematics_from_urdf_matches_fk(chain):
    tk = TaskKinematics.from_urdf()
    assert tk.convention == "urdf" and tk.joint_names == ("base_joint", "shoulder")
    rng = np.random.default_rng(7)
    q1 = rng.uniform(*tk.limits[0], size=500)
    q2 = rng.uniform(*tk.limits[1], size=500)
    q = np.zeros((500, len(chain.movable)))
    q[:, 0], q[:, 1] = q1, q2
    np.testing.assert_allclose(tk.xyz(q1, q2), ee_position(chain, q), rtol=0, atol=1e-9)
    # limits: the paper's task limits intersected with the URDF joint limits
    assert tk.limits[0] == (-2.1817, 2.1817)  # URDF ±125° is tighter than the paper's ±130°
    assert tk.limits[1] == pytest.approx(PAPER_TASK_LIMITS[1])  # paper ±70° is tighter than the URDF ±85°
    assert tk.in_limits(0.0, 0.0) and not tk.in_limits(2.2, 0.0)


def test_paper_closed_form():
    tk = TaskKinematics.paper()
    rng = np.random.default_rng(3)
    q1 = rng.uniform(-2.3, 2.3, size=(40, 7))
    q2 = rng.uniform(-1.2, 1.2, size=(40, 7))
    r = 0.05 + 0.87 * np.cos(q2)
    ref = np.stack([np.cos(q1) * r - 0.033 * np.sin(q1), -np.sin(q1) * r - 0.033 * np.cos(q1),
                    0.3585 + 0.87 * np.sin(q2)], -1)
    np.testing.assert_allclose(tk.xyz(q1, q2), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tk.limits, [[-math.radians(130), math.radians(130)],
                                           [-math.radians(70), math.radians(70)]], rtol=1e-15)
    assert tk.xyz(0.0, 0.0).shape == (3,)
    assert tk.xyz(np.zeros(4), 0.1).shape == (4, 3)  # broadcasting


@pytest.mark.parametrize("make", [TaskKinematics.paper, TaskKinematics.from_urdf])
def test_torch_matches_numpy_and_is_differentiable(make):
    torch = pytest.importorskip("torch")
    tk = make()
    rng = np.random.default_rng(11)
    q = rng.uniform(-1.0, 1.0, size=(64, 2))
    ref = tk.xyz(q[:, 0], q[:, 1])
    t64 = torch.tensor(q, dtype=torch.float64, requires_grad=True)
    out = tk.xyz(t64[:, 0], t64[:, 1])
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.shape == (64, 3)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=0, atol=1e-12)
    t32 = torch.tensor(q, dtype=torch.float32)
    out32 = tk.xyz(t32[:, 0], t32[:, 1])
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), ref, rtol=0, atol=1e-5)
    # the analytic gradient agrees with finite differences
    q1 = torch.tensor(q[:5, 0], dtype=torch.float64, requires_grad=True)
    q2 = torch.tensor(q[:5, 1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: tk.xyz(a, b), (q1, q2))
