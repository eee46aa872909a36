"""Task families of the arm experiment (snn/families.py): every generator gives realisable targets (home, at
rest, limits, 1 rad/s, q = ∫ω, xyz = FK(q)), with its family's defining shape; seeds are deterministic and the
evaluation streams are not training streams; the Brownian family is the paper's generator, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pcm_l2l_ros.snn import families as F
from pcm_l2l_ros.snn import tasks
from pcm_l2l_ros.snn.params import SNNConfig

CFG = SNNConfig()
KIN = tasks.default_kinematics()  # URDF convention, as our checkpoint
LIM = tasks.joint_limits(KIN)
SHAPED = [f for f in F.FAMILIES if f != "brownian"]
N = 48


@pytest.fixture(scope="module", params=SHAPED)
def shaped(request):
    fam = request.param
    return fam, F.sample_family(fam, N, F.family_rng(fam, 99), CFG, KIN)


def _motion(q: np.ndarray) -> np.ndarray:
    """The path with home prepended and the samples at rest (repeated points) removed, (m, 2)."""
    p = np.concatenate([np.zeros((1, 2)), q])
    keep = np.concatenate([[True], np.linalg.norm(np.diff(p, axis=0), axis=1) > 1e-12])
    return p[keep]


def _proper_crossings(p: np.ndarray) -> int:
    """Number of proper crossings between non-adjacent segments of the polyline p (m, 2); the closing pair
    (first and last segment, which meet at home on a closed path) is not counted."""
    a, b = p[:-1], p[1:]
    d = b - a
    n = len(a)

    def orient(o, r, s):  # sign of (r - o) x (s - o), broadcast
        return (r[..., 0] - o[..., 0]) * (s[..., 1] - o[..., 1]) - (r[..., 1] - o[..., 1]) * (s[..., 0] - o[..., 0])

    A, B = a[:, None], b[:, None]
    C, D = a[None, :], b[None, :]
    scale = np.linalg.norm(d, axis=1).max() ** 2
    eps = 1e-12 * scale
    o1, o2 = orient(A, B, C), orient(A, B, D)
    o3, o4 = orient(C, D, A), orient(C, D, B)
    cross = (o1 * o2 < -eps * eps) & (o3 * o4 < -eps * eps)
    i, j = np.nonzero(np.triu(cross, k=2))
    closing = (i == 0) & (j == n - 1)
    return int(np.sum(~closing))


def _conic_residual(p: np.ndarray) -> tuple[float, float]:
    """Relative residual of the best conic A x² + B xy + C y² + D x + E y = 0 through home (the path starts
    there) and its discriminant B² − 4AC (< 0: an ellipse)."""
    x, y = p[:, 0] / np.abs(p).max(), p[:, 1] / np.abs(p).max()
    M = np.stack([x * x, x * y, y * y, x, y], axis=1)
    _, s, vt = np.linalg.svd(M, full_matrices=False)
    A, B, C = vt[-1, :3]
    return float(s[-1] / s[0]), float(B * B - 4 * A * C)


def _turning(p: np.ndarray) -> np.ndarray:
    """Signed turning angle (rad) between consecutive segments of the polyline p."""
    d = np.diff(p, axis=0)
    ang = np.arctan2(d[:, 1], d[:, 0])
    return (np.diff(ang) + math.pi) % (2 * math.pi) - math.pi


# ----------------------------------------------------------------------------------------- common properties
def test_every_family_gives_realisable_targets(shaped):
    fam, tr = shaped
    dt = CFG.arm_time_per_step_s
    assert tr.omega.shape == tr.q.shape == (N, CFG.T, 2) and tr.xyz.shape == (N, CFG.T, 3)
    assert list(tr.family) == [fam] * N and len(tr.info) == N
    # q = ∫ω from home exactly, xyz = FK(q): the target is what the trainee's velocities would produce
    np.testing.assert_allclose(tr.q, tasks.integrate_angles(tr.omega, CFG), rtol=0, atol=1e-12)
    np.testing.assert_allclose(tr.xyz, tasks.kin_xyz(KIN, tr.q), rtol=0, atol=1e-12)
    # within the joint limits (with the margin) and the URDF velocity limit of 1 rad/s
    assert (tr.q >= F.LIMIT_MARGIN * LIM[:, 0] - 1e-12).all() and (tr.q <= F.LIMIT_MARGIN * LIM[:, 1] + 1e-12).all()
    assert np.abs(tr.omega).max() <= F.VELOCITY_MARGIN * F.VELOCITY_LIMIT_RAD_S + 1e-12
    # starts at home and at rest (the arm is at 0 rad at t = 0; the first step barely moves), ends at rest
    assert np.abs(tr.q[:, 0]).max() <= 0.05 * dt
    assert np.abs(tr.omega[:, 0]).max() < 0.05 and np.abs(tr.omega[:, -1]).max() < 0.05
    # size: up to the largest feasible scale (fit_scale = remaining headroom), for the shapes never below
    # MIN_SIZE of it (point-to-point goals are uniform in the reachable box, at least 0.1 rad away)
    headroom = F.fit_scale(tr.q, LIM, CFG)
    assert (headroom >= 1.0 - 1e-9).all()
    assert fam == "point_to_point" or (headroom <= 1.0 / F.MIN_SIZE + 1e-6).all()
    assert headroom.min() < 1.1  # some targets reach the joint or velocity limit
    assert np.abs(tr.q).max(axis=(1, 2)).min() > 0.01  # none is degenerate


def test_generators_are_deterministic_per_seed(shaped):
    fam, tr = shaped
    again = F.sample_family(fam, N, F.family_rng(fam, 99), CFG, KIN)
    assert np.array_equal(tr.omega, again.omega)
    other = F.sample_family(fam, N, F.family_rng(fam, 100), CFG, KIN)
    assert not np.allclose(tr.omega, other.omega)


# ----------------------------------------------------------------------------------------- defining properties
@pytest.mark.parametrize("fam", F.CLOSED_FAMILIES)
def test_closed_curves_end_where_they_start(fam):
    tr = F.sample_family(fam, N, F.family_rng(fam, 5), CFG, KIN)
    assert np.abs(tr.q[:, -1]).max() < 1e-12
    ext = np.abs(tr.q).max(axis=(1, 2))
    assert (ext > 0.02).all()  # a loop, not a point


@pytest.mark.parametrize("fam", ["ellipse", "arc"])
def test_ellipses_and_arcs_lie_on_an_ellipse(fam):
    tr = F.sample_family(fam, N, F.family_rng(fam, 6), CFG, KIN)
    for i in range(N):
        res, disc = _conic_residual(_motion(tr.q[i]))
        assert res < 1e-6 and disc < 0, (i, res, disc)
    circles = [i for i in range(N) if tr.info[i]["axis_ratio"] == 1.0]
    if fam == "ellipse":
        assert circles  # circles are part of the family
        for i in circles:  # equidistant from the centre
            p = _motion(tr.q[i])
            r = np.linalg.norm(p - 0.5 * (p.max(axis=0) + p.min(axis=0)), axis=1)
            assert r.std() < 1e-3 * r.mean()


def test_ellipse_polygon_arc_do_not_cross_themselves_and_lemniscates_do():
    for fam, crossings in (("ellipse", 0), ("polygon", 0), ("arc", 0), ("lemniscate", 1)):
        tr = F.sample_family(fam, 24, F.family_rng(fam, 7), CFG, KIN)
        for i in range(24):
            n = _proper_crossings(_motion(tr.q[i]))
            if crossings:
                assert n >= 1, (fam, i)
            else:
                assert n == 0, (fam, i)
    # the figure-eight crosses itself at its centre: two segments far apart in time pass through it
    tr = F.sample_family("lemniscate", 8, F.family_rng("lemniscate", 8), CFG, KIN)
    for i in range(8):
        centre = np.asarray(tr.info[i]["crossing_unit"]) * tr.info[i]["scale"]
        p = _motion(tr.q[i])
        a, d = p[:-1], np.diff(p, axis=0)
        u = np.clip(np.sum((centre - a) * d, axis=1) / np.maximum(np.sum(d * d, axis=1), 1e-30), 0, 1)
        dist = np.linalg.norm(a + u[:, None] * d - centre, axis=1)
        near = np.flatnonzero(dist < 1e-3 * np.abs(p).max())
        assert near.size >= 2 and near.max() - near.min() > 20, (i, near)


def test_arcs_are_open():
    tr = F.sample_family("arc", N, F.family_rng("arc", 9), CFG, KIN)
    gap = np.linalg.norm(tr.q[:, -1], axis=1) / np.abs(tr.q).max(axis=(1, 2))
    assert (gap > 0.05).all()


def test_polygons_have_straight_sides_and_one_rounded_turn_per_corner():
    tr = F.sample_family("polygon", N, F.family_rng("polygon", 10), CFG, KIN)
    shapes = {d["shape"] for d in tr.info}
    assert "square" in shapes and len(shapes) >= 3
    for i in range(N):
        p = _motion(tr.q[i])
        seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        turn = _turning(np.concatenate([p[:-1], p[:2]]))  # cyclic: the loop closes at home
        assert abs(abs(turn.sum()) - 2 * math.pi) < 1e-6  # one simple loop, turning one way
        assert (turn * np.sign(turn.sum()) > -1e-6).all()  # convex
        # straight sides: the heading of the path is constant along each side, so k headings (one per side)
        # each carry a good part of the loop's length; in the rounded corners it turns continuously
        d = np.diff(p, axis=0)
        heading = np.round(np.arctan2(d[:, 1], d[:, 0]), 6)
        length = {h: 0.0 for h in heading}
        for h, ln in zip(heading, seg, strict=True):
            length[h] += ln
        sides = [h for h, ln in length.items() if ln > 0.03 * s[-1]]
        assert len(sides) == tr.info[i]["corners"], (i, tr.info[i])
        assert sum(length[h] for h in sides) > 0.3 * s[-1]


def test_strokes_go_back_and_forth_on_a_line_through_home():
    tr = F.sample_family("stroke", N, F.family_rng("stroke", 11), CFG, KIN)
    assert {d["two_sided"] for d in tr.info} == {True, False}
    for i in range(N):
        info = tr.info[i]
        d = np.array([math.cos(info["direction_rad"]), math.sin(info["direction_rad"])])
        q = tr.q[i]
        assert np.abs(q[:, 0] * d[1] - q[:, 1] * d[0]).max() < 1e-12  # on the line through home
        v = tr.omega[i] @ d
        sgn = np.sign(v[np.abs(v) > 1e-6])
        reversals = int(np.sum(sgn[1:] != sgn[:-1]))
        n = info["strokes"]
        assert reversals == (2 * n if info["two_sided"] else 2 * n - 1), (i, info, reversals)
        at_home = np.linalg.norm(q[-1]) < 1e-9
        assert at_home == (float(n).is_integer()), (i, info)  # a half stroke ends at the far end


def test_point_to_point_is_monotone_and_ends_at_rest_at_the_goal():
    tr = F.sample_family("point_to_point", N, F.family_rng("point_to_point", 12), CFG, KIN)
    for i in range(N):
        goal = tr.q[i, -1]
        assert np.linalg.norm(goal) >= 0.1 - 1e-12
        assert (tr.omega[i] * np.sign(goal) >= -1e-12).all()  # each joint moves one way only
        assert abs(goal[0] * tr.q[i, :, 1] - goal[1] * tr.q[i, :, 0]).max() < 1e-12  # a straight line
        np.testing.assert_allclose(goal, tr.info[i]["goal_rad"], rtol=0, atol=1e-12)
        assert np.abs(tr.omega[i, -1]).max() < 0.05


def test_time_law():
    t = F.grid_times(CFG)
    assert t[0] == pytest.approx(0.01) and t[-1] == pytest.approx(2.49)
    sig = F.time_law(t, np.array([0.2, 0.0, 0.1]), np.array([1.5, 2.49, 2.0]), np.array([0.3, 0.5, 0.0]))
    assert (np.diff(sig, axis=1) >= -1e-15).all() and sig.min() == 0.0 and np.allclose(sig[:, -1], 1.0)
    assert (sig[0, t <= 0.2] == 0).all() and (sig[0, t >= 1.7] == 1).all()
    speed = np.diff(sig, axis=1) / 0.01
    # peak speed 1 / ((1 - ramp) · duration); the ramps start and stop at rest; ramp 0 is constant speed
    assert speed[0].max() == pytest.approx(1 / (0.7 * 1.5), rel=1e-3)
    assert speed[1].max() == pytest.approx(1 / (0.5 * 2.49), rel=1e-3)
    assert speed[0, t[1:] <= 0.2].max() == 0.0 and speed[1, 0] < 0.01 * speed[1].max()
    assert np.allclose(speed[2, (t[1:] > 0.12) & (t[1:] < 2.09)], 0.5)


# ----------------------------------------------------------------------------------------- Brownian, seeds, mixtures
def test_brownian_family_is_the_papers_generator_bit_for_bit():
    a = F.sample_family("brownian", 30, np.random.default_rng(20261129), CFG, KIN)
    b = tasks.sample_trajectories(30, np.random.default_rng(20261129), CFG, KIN)
    assert np.array_equal(a.omega, b.omega) and np.array_equal(a.xyz, b.xyz)
    assert np.array_equal(F.family_rng("brownian", 5).random(4), np.random.default_rng(5).random(4))
    # the draws of the published test set (seed 20261129) do not move (values of the generator before the
    # families existed; a tolerance of 1e-12 only allows last-digit differences of the platform's libm)
    om = tasks.sample_trajectories(8, 20261129, CFG, KIN).omega
    np.testing.assert_allclose(om[0, [0, 100, 248]], BROWNIAN_PINNED["om0"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(om[7, 200], BROWNIAN_PINNED["om7_200"], rtol=1e-12, atol=0)
    assert float(om.sum()) == pytest.approx(BROWNIAN_PINNED["sum"], rel=1e-12)


def test_evaluation_streams_are_not_training_streams():
    for fam in SHAPED:
        ev = F.family_rng(fam, 20261129)
        assert ev.bit_generator.seed_seq.spawn_key == (F.FAMILIES.index(fam),)
        # a run trained with that very seed draws other targets
        train = F.sample_family(fam, 16, np.random.default_rng(20261129), CFG, KIN)
        test = F.sample_family(fam, 16, ev, CFG, KIN)
        d = np.abs(train.q[:, None] - test.q[None]).max(axis=(2, 3))
        assert d.min() > 1e-3
    keys = {F.family_rng(f, 1).bit_generator.seed_seq.spawn_key for f in SHAPED}
    assert len(keys) == len(SHAPED)  # and the families' streams differ from each other


def test_parse_mixture():
    assert F.parse_mixture(None) == F.parse_mixture("brownian") == {"brownian": 1.0}
    m = F.parse_mixture("ellipse:1, brownian:3,arc:0")
    assert list(m) == ["brownian", "ellipse"] and m["brownian"] == pytest.approx(0.75)
    assert F.parse_mixture("all") == {f: pytest.approx(1 / len(F.FAMILIES)) for f in F.FAMILIES}
    for bad in ("circle:1", "ellipse:-1", "brownian:0", "ellipse:x", "arc:1,arc:2"):
        with pytest.raises(ValueError):
            F.parse_mixture(bad)


def test_mixtures():
    # one family: exactly that family's draws (Brownian-only training is unchanged)
    a = F.sample_mixture(20, np.random.default_rng(3), "brownian", CFG, KIN)
    b = tasks.sample_trajectories(20, np.random.default_rng(3), CFG, KIN)
    assert np.array_equal(a.omega, b.omega)
    mix = F.parse_mixture("brownian:1,ellipse:1,point_to_point:2")
    c = F.sample_mixture(400, np.random.default_rng(4), mix, CFG, KIN)
    d = F.sample_mixture(400, np.random.default_rng(4), mix, CFG, KIN)
    assert np.array_equal(c.omega, d.omega) and len(c) == 400
    counts = {f: int(np.sum(c.family == f)) for f in mix}
    assert set(c.family) == set(mix) and abs(counts["point_to_point"] - 200) < 40 and counts["ellipse"] > 60
    # the subsets carry their labels
    sub = c.subset(slice(0, 10))
    assert len(sub.family) == len(sub.info) == 10
    # a stratified held-out set: n split evenly, each family from its own evaluation stream
    s = F.sample_stratified(9, 777, mix, CFG, KIN)
    assert [int(np.sum(s.family == f)) for f in mix] == [3, 3, 3]
    e = F.sample_family("ellipse", 3, F.family_rng("ellipse", 777), CFG, KIN)
    assert np.array_equal(s.omega[s.family == "ellipse"], e.omega)


BROWNIAN_PINNED = {
    "om0": [
        [0.06759484738296144, 0.013701940088657421],
        [-0.0951219791174706, 0.27201118616708386],
        [0.10352845910614304, 0.0359982888474711],
    ],
    "om7_200": [-0.13622296913800133, 0.08857041242036927],
    "sum": -213.11317219857384,
}
