"""The arm model urdf/edscorbot.urdf: well-formed, physically plausible, matches ED-Scorbot, loads in PyBullet."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pcm_l2l_ros.arm.urdf import URDFError, default_urdf_path, load_chain

# public kinematic facts of the ED-Scorbot model (docs/conventions.md §4): origin xyz, rpy, axis, limit (rad)
ARM_MD = {
    "base_joint": ((0, 0, 0.17), (0, 0, 0.4119), (0, 0, 1), 2.1817),
    "shoulder": ((0.05, -0.096, 0.1885), (0, -0.3840, 0), (0, 1, 0), 1.4835),
    "elbow": ((0.30, 0.021, 0), (0, 0.2094, 0), (0, -1, 0), 1.9635),
    "pitch": ((0.25, 0.058, 0), (0, 0, 0), (0, -1, 0), 1.5708),
    "roll": ((0.054, -0.024, 0), (0, 0, 0), (-1, 0, 0), 3.1416),
}


@pytest.fixture(scope="module")
def chain():
    return load_chain()


def test_joints_match_arm_md(chain):
    assert chain.movable == ("base_joint", "shoulder", "elbow", "pitch", "roll")
    for name, (xyz, rpy, axis, lim) in ARM_MD.items():
        j = chain.joint(name)
        assert j.type == "revolute"
        np.testing.assert_allclose(j.origin_xyz, xyz, atol=1e-12)
        np.testing.assert_allclose(j.origin_rpy, rpy, atol=1e-12)
        np.testing.assert_allclose(j.axis, axis, atol=1e-12)
        assert (j.lower, j.upper) == (-lim, lim)
        assert j.velocity == 1.0
        assert j.effort > 0 and j.damping >= 0
    assert chain.tip == "tool_point"
    assert chain.root == "base"
    assert chain.links["base"].mass == pytest.approx(3.6)


def test_every_link_has_a_plausible_inertial(chain):
    assert len(chain.links) == len(chain.joints) + 1
    for link in chain.links.values():
        assert link.has_inertial, f"link {link.name} has no inertial"
        assert 0 < link.mass < 10, link.name
        eig = np.linalg.eigvalsh(link.inertia)
        assert np.all(eig > 0), f"{link.name}: inertia not positive definite: {eig}"
        a, b, c = sorted(eig)  # triangle inequality of principal moments (a physical rigid body)
        assert a + b >= c * (1 - 1e-9), f"{link.name}: principal moments {eig} violate a + b >= c"
        # a body of mass m cannot have all moments below m * (1 mm)^2 or above m * (1 m)^2
        assert link.mass * 1e-6 <= eig.max() <= link.mass * 1.0, link.name


def test_limits_are_sane(chain):
    assert np.all(chain.lower < 0) and np.all(chain.upper > 0)
    assert np.all(chain.upper - chain.lower <= 2 * math.pi + 1e-3)
    assert np.all(chain.velocity_limits > 0) and np.all(np.isfinite(chain.velocity_limits))


def test_malformed_urdf_is_rejected(tmp_path):
    good = default_urdf_path().read_text()
    cases = {
        "lower_gt_upper": good.replace('lower="-1.4835" upper="1.4835"', 'lower="1.4835" upper="-1.4835"'),
        "unknown_parent": good.replace('<parent link="forearm"/>', '<parent link="nope"/>'),
        "bad_number": good.replace('xyz="0.30 0.021 0"', 'xyz="0.30 abc 0"'),
        "zero_axis": good.replace('<axis xyz="-1 0 0"/>', '<axis xyz="0 0 0"/>'),
        "not_xml": good[:200],
        "floating": good.replace('name="pitch" type="revolute"', 'name="pitch" type="floating"'),
    }
    for name, text in cases.items():
        p = tmp_path / f"{name}.urdf"
        p.write_text(text)
        with pytest.raises(URDFError):
            load_chain(p)


def test_loads_in_pybullet_and_holds_still_under_gravity(chain):
    pb = pytest.importorskip("pybullet")
    cid = pb.connect(pb.DIRECT)
    try:
        pb.setGravity(0, 0, -9.81, physicsClientId=cid)
        pb.setTimeStep(0.002, physicsClientId=cid)
        body = pb.loadURDF(str(chain.path), useFixedBase=True, flags=pb.URDF_USE_INERTIA_FROM_FILE,
                           physicsClientId=cid)
        n = pb.getNumJoints(body, physicsClientId=cid)
        infos = [pb.getJointInfo(body, i, physicsClientId=cid) for i in range(n)]
        movable = [i for i, info in enumerate(infos) if info[2] == pb.JOINT_REVOLUTE]
        assert [infos[i][1].decode() for i in movable] == list(chain.movable)
        for i in movable:
            name = infos[i][1].decode()
            j = chain.joint(name)
            assert infos[i][8:11] == pytest.approx((j.lower, j.upper, j.effort))
            assert infos[i][11] == pytest.approx(j.velocity)
        mass = sum(pb.getDynamicsInfo(body, i, physicsClientId=cid)[0] for i in range(n))  # fixed base: 0
        assert mass == pytest.approx(sum(lk.mass for lk in chain.links.values()) - chain.links["base"].mass)
        # hold the home pose with the URDF's effort limits for 2 s: no blow-up, stays put
        for _ in range(1000):
            pb.setJointMotorControlArray(body, movable, pb.POSITION_CONTROL, targetPositions=[0.0] * len(movable),
                                         forces=[chain.joint(infos[i][1].decode()).effort for i in movable],
                                         physicsClientId=cid)
            pb.stepSimulation(physicsClientId=cid)
        q = np.array([s[0] for s in pb.getJointStates(body, movable, physicsClientId=cid)])
        assert np.all(np.isfinite(q)) and np.abs(q).max() < 1e-3
        # free motion (motors off, damping only) from a raised pose stays finite and within the limits
        for i in movable:
            pb.setJointMotorControl2(body, i, pb.VELOCITY_CONTROL, force=0.0, physicsClientId=cid)
        for _ in range(1000):
            pb.stepSimulation(physicsClientId=cid)
        st = pb.getJointStates(body, movable, physicsClientId=cid)
        q = np.array([s[0] for s in st])
        qd = np.array([s[1] for s in st])
        assert np.all(np.isfinite(q)) and np.all(np.isfinite(qd)) and np.abs(qd).max() < 50
        assert np.all(q >= chain.lower - 0.05) and np.all(q <= chain.upper + 0.05)
    finally:
        pb.disconnect(physicsClientId=cid)
