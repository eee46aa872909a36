"""Kinematics of the ED-Scorbot-like arm: URDF chain, forward kinematics, and the SNN task's 2-DOF FK.

Units: m for positions, rad for joint angles.

* ``load_chain(path)`` parses a URDF (``xml.etree``; no extra dependencies) into a :class:`Chain`.
* ``fk(chain, q)`` computes every link frame (4x4 homogeneous transforms in the root frame) from the
  URDF chain; ``ee_position(chain, q)`` the end-effector point. This is the only geometry of the arm in
  the package: everything else is derived from the URDF.
* :class:`TaskKinematics` is the task FK of the SNN: only the base (``q1``) and the shoulder (``q2``)
  move; elbow, pitch and roll stay at 0. Two conventions exist (docs/conventions.md §4):

  - ``TaskKinematics.from_urdf()``: constants extracted from our URDF chain (``urdf/edscorbot.urdf``);
    agrees with ``fk`` to < 1e-9 m. ``q1``, ``q2`` are the URDF joint angles of ``base_joint`` and
    ``shoulder`` (URDF sign conventions: ``base_joint`` about +z, ``shoulder`` about +y of its frame,
    so a positive ``q2`` lowers the arm).
  - ``TaskKinematics.paper()``: the closed form of the paper's official code (0.35 m forearm segment
    instead of the URDF's 0.25 m; a positive ``q2`` raises the arm), used for parity with the released
    weights::

        R = 0.05 + 0.87 cos q2
        x = cos q1 R - 0.033 sin q1
        y = -sin q1 R - 0.033 cos q1
        z = 0.3585 + 0.87 sin q2

Both evaluate ``p = t_b + R_b (Rot(a1, q1) (t_s + R_s Rot(a2, q2) c))`` (Rodrigues rotations), which
works on numpy arrays and on torch tensors (differentiable; torch is imported lazily).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcm_l2l_ros.arrays import is_torch

__all__ = [
    "Joint",
    "Link",
    "Chain",
    "URDFError",
    "load_chain",
    "fk",
    "ee_position",
    "rpy_to_matrix",
    "TaskKinematics",
    "PAPER_TASK_LIMITS",
    "default_urdf_path",
]

#: The paper's task joint limits (rad): base ±130°, shoulder ±70° (paper convention).
PAPER_TASK_LIMITS: tuple[tuple[float, float], tuple[float, float]] = (
    (-math.radians(130.0), math.radians(130.0)),
    (-math.radians(70.0), math.radians(70.0)),
)


class URDFError(ValueError):
    """The URDF is malformed or lacks what the kinematics needs."""


@dataclass(frozen=True)
class Joint:
    """One URDF joint. Angles in rad (revolute) or m (prismatic); velocity limit in rad/s (or m/s)."""

    name: str
    type: str  # revolute | continuous | prismatic | fixed (floating/planar are rejected)
    parent: str
    child: str
    origin_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    origin_rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0)  # unit vector in the joint frame
    lower: float = -math.inf
    upper: float = math.inf
    velocity: float = math.inf
    effort: float = math.inf
    damping: float = 0.0
    friction: float = 0.0

    @property
    def movable(self) -> bool:
        return self.type != "fixed"

    def origin_matrix(self) -> np.ndarray:
        """4x4 transform parent link frame -> joint frame at q = 0."""
        t = np.eye(4)
        t[:3, :3] = rpy_to_matrix(self.origin_rpy)
        t[:3, 3] = self.origin_xyz
        return t


@dataclass(frozen=True)
class Link:
    """One URDF link with its inertial (mass in kg, COM in m, inertia tensor in kg m^2 about the COM)."""

    name: str
    mass: float | None = None
    com_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    com_rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    inertia: np.ndarray | None = field(default=None, compare=False)  # 3x3

    @property
    def has_inertial(self) -> bool:
        return self.mass is not None and self.inertia is not None


@dataclass(frozen=True)
class Chain:
    """A kinematic tree parsed from a URDF.

    ``joints`` are in topological order (every joint after the joint that moves its parent link);
    ``movable`` lists the non-fixed joint names in that order, which is the order of ``q`` everywhere.
    """

    name: str
    root: str
    joints: tuple[Joint, ...]
    links: dict[str, Link]
    path: Path | None = None

    @property
    def movable(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints if j.movable)

    def joint(self, name: str) -> Joint:
        for j in self.joints:
            if j.name == name:
                return j
        raise KeyError(f"no joint named {name!r} in chain {self.name!r}")

    @property
    def lower(self) -> np.ndarray:
        """Lower position limits of the movable joints (rad), ``-inf`` for continuous joints."""
        return np.array([self.joint(n).lower for n in self.movable])

    @property
    def upper(self) -> np.ndarray:
        """Upper position limits of the movable joints (rad), ``+inf`` for continuous joints."""
        return np.array([self.joint(n).upper for n in self.movable])

    @property
    def velocity_limits(self) -> np.ndarray:
        """Velocity limits of the movable joints (rad/s)."""
        return np.array([self.joint(n).velocity for n in self.movable])

    @property
    def tip(self) -> str:
        """The default end-effector link: the last leaf link in topological order."""
        parents = {j.parent for j in self.joints}
        leaves = [j.child for j in self.joints if j.child not in parents]
        if not leaves:
            return self.root
        return leaves[-1]

    def path_to(self, link: str) -> list[Joint]:
        """Joints from the root to ``link``, root first."""
        by_child = {j.child: j for j in self.joints}
        out = []
        cur = link
        while cur != self.root:
            if cur not in by_child:
                raise KeyError(f"link {link!r} is not in chain {self.name!r}")
            j = by_child[cur]
            out.append(j)
            cur = j.parent
        return out[::-1]


def default_urdf_path() -> Path:
    """The package's arm model, ``urdf/edscorbot.urdf`` (source checkout or ament install)."""
    from pcm_l2l_ros.paths import package_share_file  # noqa: PLC0415 - keep import light

    return package_share_file("urdf", "edscorbot.urdf")


def _floats(text: str | None, n: int, default: tuple[float, ...], what: str) -> tuple[float, ...]:
    if text is None:
        return default
    parts = text.split()
    if len(parts) != n:
        raise URDFError(f"{what}: expected {n} numbers, got {text!r}")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError as e:
        raise URDFError(f"{what}: not numbers: {text!r}") from e
    if not all(math.isfinite(v) for v in vals):
        raise URDFError(f"{what}: non-finite value in {text!r}")
    return vals


def _attr_float(el: ET.Element, key: str, default: float, what: str) -> float:
    v = el.get(key)
    if v is None:
        return default
    try:
        return float(v)
    except ValueError as e:
        raise URDFError(f"{what}: {key}={v!r} is not a number") from e


def rpy_to_matrix(rpy) -> np.ndarray:
    """URDF fixed-axis roll-pitch-yaw (rad) to a 3x3 rotation matrix: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def _axis_angle_matrix(axis: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) about unit ``axis`` by angles ``q`` (...,) (Rodrigues)."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    q = np.asarray(q, dtype=float)[..., None, None]
    return np.eye(3) + np.sin(q) * k + (1.0 - np.cos(q)) * (k @ k)


def load_chain(urdf_path: str | Path | None = None) -> Chain:
    """Parse a URDF file into a :class:`Chain` (default: the package's ``urdf/edscorbot.urdf``).

    Raises :class:`URDFError` on malformed content (missing parent/child, unknown joint type, bad
    numbers, zero axis, lower > upper, more than one root, cycles).
    """
    path = Path(urdf_path) if urdf_path is not None else default_urdf_path()
    try:
        root_el = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise URDFError(f"{path}: not valid XML: {e}") from e
    if root_el.tag != "robot":
        raise URDFError(f"{path}: root element is <{root_el.tag}>, expected <robot>")

    links: dict[str, Link] = {}
    for le in root_el.findall("link"):
        name = le.get("name")
        if not name:
            raise URDFError(f"{path}: <link> without name")
        if name in links:
            raise URDFError(f"{path}: duplicate link {name!r}")
        inertial = le.find("inertial")
        if inertial is None:
            links[name] = Link(name)
            continue
        what = f"link {name!r} inertial"
        o = inertial.find("origin")
        xyz = _floats(o.get("xyz") if o is not None else None, 3, (0.0, 0.0, 0.0), what)
        rpy = _floats(o.get("rpy") if o is not None else None, 3, (0.0, 0.0, 0.0), what)
        m_el = inertial.find("mass")
        mass = _attr_float(m_el, "value", math.nan, what) if m_el is not None else None
        i_el = inertial.find("inertia")
        inertia = None
        if i_el is not None:
            ixx, ixy, ixz, iyy, iyz, izz = (
                _attr_float(i_el, k, 0.0, what) for k in ("ixx", "ixy", "ixz", "iyy", "iyz", "izz")
            )
            inertia = np.array([[ixx, ixy, ixz], [ixy, iyy, iyz], [ixz, iyz, izz]])
        links[name] = Link(name, mass, xyz, rpy, inertia)

    joints: list[Joint] = []
    for je in root_el.findall("joint"):
        name = je.get("name")
        jtype = je.get("type")
        what = f"joint {name!r}"
        if not name:
            raise URDFError(f"{path}: <joint> without name")
        if jtype not in ("revolute", "continuous", "prismatic", "fixed"):
            raise URDFError(f"{path}: {what}: unsupported type {jtype!r}")
        pe, ce = je.find("parent"), je.find("child")
        if pe is None or ce is None or not pe.get("link") or not ce.get("link"):
            raise URDFError(f"{path}: {what}: needs <parent link=...> and <child link=...>")
        parent, child = pe.get("link"), ce.get("link")
        for lk in (parent, child):
            if lk not in links:
                raise URDFError(f"{path}: {what}: unknown link {lk!r}")
        o = je.find("origin")
        xyz = _floats(o.get("xyz") if o is not None else None, 3, (0.0, 0.0, 0.0), what)
        rpy = _floats(o.get("rpy") if o is not None else None, 3, (0.0, 0.0, 0.0), what)
        a = je.find("axis")
        axis = _floats(a.get("xyz") if a is not None else None, 3, (1.0, 0.0, 0.0), what)
        n = math.sqrt(sum(v * v for v in axis))
        if jtype != "fixed" and n < 1e-12:
            raise URDFError(f"{path}: {what}: zero axis")
        axis = tuple(v / n for v in axis) if n > 0 else axis
        lower, upper, vel, eff = -math.inf, math.inf, math.inf, math.inf
        lim = je.find("limit")
        if lim is not None:
            vel = _attr_float(lim, "velocity", math.inf, what)
            eff = _attr_float(lim, "effort", math.inf, what)
            if jtype in ("revolute", "prismatic"):
                lower = _attr_float(lim, "lower", 0.0, what)
                upper = _attr_float(lim, "upper", 0.0, what)
        elif jtype in ("revolute", "prismatic"):
            raise URDFError(f"{path}: {what}: {jtype} joint without <limit>")
        if lower > upper:
            raise URDFError(f"{path}: {what}: lower limit {lower} > upper limit {upper}")
        d = je.find("dynamics")
        damping = _attr_float(d, "damping", 0.0, what) if d is not None else 0.0
        friction = _attr_float(d, "friction", 0.0, what) if d is not None else 0.0
        joints.append(Joint(name, jtype, parent, child, xyz, rpy, axis, lower, upper, vel, eff, damping, friction))

    names = [j.name for j in joints]
    if len(set(names)) != len(names):
        raise URDFError(f"{path}: duplicate joint names")
    children = [j.child for j in joints]
    if len(set(children)) != len(children):
        raise URDFError(f"{path}: a link has more than one parent joint")
    roots = [lk for lk in links if lk not in set(children)]
    if len(roots) != 1:
        raise URDFError(f"{path}: expected exactly one root link, found {roots}")
    root = roots[0]

    # topological order (breadth-first from the root, file order among siblings)
    ordered: list[Joint] = []
    frontier = [root]
    while frontier:
        nxt = []
        for lk in frontier:
            for j in joints:
                if j.parent == lk:
                    ordered.append(j)
                    nxt.append(j.child)
        frontier = nxt
    if len(ordered) != len(joints):
        raise URDFError(f"{path}: joints not connected to the root {root!r} (cycle?)")
    return Chain(root_el.get("name", path.stem), root, tuple(ordered), links, path)


def _q_dict(chain: Chain, q) -> dict[str, np.ndarray]:
    if isinstance(q, dict):
        unknown = set(q) - set(chain.movable)
        if unknown:
            raise KeyError(f"unknown joints {sorted(unknown)}; movable joints: {chain.movable}")
        return {n: np.asarray(q.get(n, 0.0), dtype=float) for n in chain.movable}
    qa = np.asarray(q, dtype=float)
    if qa.shape[-1:] != (len(chain.movable),):
        raise ValueError(f"q has shape {qa.shape}; expected (..., {len(chain.movable)}) for {chain.movable}")
    return {n: qa[..., i] for i, n in enumerate(chain.movable)}


def fk(chain: Chain, q) -> dict[str, np.ndarray]:
    """Forward kinematics: every link's frame in the root link's frame.

    ``q``: joint positions (rad, m for prismatic) of ``chain.movable`` as an array of shape (..., n),
    or a dict name -> value (missing joints are 0). Returns {link name: (..., 4, 4) transform}.
    Each joint contributes ``T_origin(xyz, rpy) @ T_motion(axis, q)`` (URDF semantics).
    """
    qd = _q_dict(chain, q)
    batch = np.broadcast_shapes(*(v.shape for v in qd.values())) if qd else ()
    eye = np.broadcast_to(np.eye(4), batch + (4, 4))
    frames: dict[str, np.ndarray] = {chain.root: eye.copy()}
    for j in chain.joints:
        t = j.origin_matrix()
        if j.type in ("revolute", "continuous"):
            m = np.broadcast_to(np.eye(4), batch + (4, 4)).copy()
            m[..., :3, :3] = _axis_angle_matrix(np.asarray(j.axis), np.broadcast_to(qd[j.name], batch))
            t = t @ m
        elif j.type == "prismatic":
            m = np.broadcast_to(np.eye(4), batch + (4, 4)).copy()
            m[..., :3, 3] = np.broadcast_to(qd[j.name], batch)[..., None] * np.asarray(j.axis)
            t = t @ m
        frames[j.child] = frames[j.parent] @ t
    return frames


def ee_position(chain: Chain, q, link: str | None = None) -> np.ndarray:
    """End-effector position (m) in the root frame, shape (..., 3); ``link`` defaults to ``chain.tip``."""
    frames = fk(chain, q)
    return frames[link or chain.tip][..., :3, 3]


class TaskKinematics:
    """2-DOF task kinematics of the SNN: ``xyz(q1, q2)`` with base ``q1`` and shoulder ``q2`` (rad).

    ``p = t_b + R_b Rot(a1, q1) (t_s + R_s Rot(a2, q2) c)``, with

    * ``t_b`` (m), ``R_b``: root -> base-joint frame at q1 = 0; ``a1``: base axis (unit, joint frame);
    * ``t_s`` (m), ``R_s``: base-joint frame -> shoulder-joint frame at q2 = 0; ``a2``: shoulder axis;
    * ``c`` (m): end-effector point in the shoulder-joint frame with elbow, pitch, roll at 0.

    ``limits``: ((q1_lo, q1_hi), (q2_lo, q2_hi)) in rad, in the same convention as ``q1``, ``q2`` of this
    instance: for ``paper()`` the paper's task limits (±130°, ±70°, paper signs); for ``from_urdf()`` the
    paper's task limits intersected with the URDF joint limits (±125°, ±70°, URDF signs).
    ``convention`` names which one ("paper" or "urdf").
    """

    def __init__(self, t_b, R_b, a1, t_s, R_s, a2, c, limits, convention: str, joint_names=("q1", "q2")):
        self.t_b = np.asarray(t_b, dtype=float).reshape(3)
        self.R_b = np.asarray(R_b, dtype=float).reshape(3, 3)
        self.a1 = np.asarray(a1, dtype=float).reshape(3)
        self.t_s = np.asarray(t_s, dtype=float).reshape(3)
        self.R_s = np.asarray(R_s, dtype=float).reshape(3, 3)
        self.a2 = np.asarray(a2, dtype=float).reshape(3)
        self.c = np.asarray(c, dtype=float).reshape(3)
        self.limits: tuple[tuple[float, float], tuple[float, float]] = (
            (float(limits[0][0]), float(limits[0][1])),
            (float(limits[1][0]), float(limits[1][1])),
        )
        self.convention = convention
        self.joint_names = tuple(joint_names)

    def __repr__(self) -> str:
        return f"TaskKinematics(convention={self.convention!r}, joints={self.joint_names}, limits={self.limits})"

    # ----------------------------------------------------------------------------------- constructors
    @classmethod
    def paper(cls) -> TaskKinematics:
        """The paper's closed form (see module docstring); parity with the released weights."""
        return cls(
            t_b=(0.0, 0.0, 0.0),
            R_b=np.eye(3),
            a1=(0.0, 0.0, -1.0),  # x = cos q1 R - 0.033 sin q1: rotation by -q1 about z
            t_s=(0.05, -0.033, 0.3585),
            R_s=np.eye(3),
            a2=(0.0, -1.0, 0.0),  # z = 0.3585 + 0.87 sin q2: positive q2 raises the arm
            c=(0.87, 0.0, 0.0),
            limits=PAPER_TASK_LIMITS,
            convention="paper",
        )

    @classmethod
    def from_urdf(
        cls,
        path: str | Path | None = None,
        *,
        q1_joint: str = "base_joint",
        q2_joint: str = "shoulder",
        tip: str | None = None,
        task_limits=PAPER_TASK_LIMITS,
    ) -> TaskKinematics:
        """Constants extracted from the URDF chain (default: the package's ``urdf/edscorbot.urdf``).

        The joints between ``q2_joint`` and ``tip`` (default: the chain's tip link) are held at 0. Limits
        are ``task_limits`` intersected with the URDF limits of the two joints (URDF sign convention).
        """
        chain = load_chain(path)
        tip = tip or chain.tip
        jpath = chain.path_to(tip)
        names = [j.name for j in jpath]
        for n in (q1_joint, q2_joint):
            if n not in names:
                raise URDFError(f"joint {n!r} is not on the path root -> {tip!r}: {names}")
        i1, i2 = names.index(q1_joint), names.index(q2_joint)
        if i1 >= i2:
            raise URDFError(f"{q1_joint!r} must come before {q2_joint!r} on the chain")
        j1, j2 = jpath[i1], jpath[i2]
        for j in (j1, j2):
            if j.type not in ("revolute", "continuous"):
                raise URDFError(f"task joint {j.name!r} must be revolute, is {j.type!r}")

        def compose(joints) -> np.ndarray:  # product of origins with all joints at q = 0
            t = np.eye(4)
            for j in joints:
                t = t @ j.origin_matrix()
            return t

        pre1 = compose(jpath[:i1 + 1])  # root -> q1 joint frame (at q1 = 0)
        mid = compose(jpath[i1 + 1:i2 + 1])  # q1 joint frame -> q2 joint frame
        tail = compose(jpath[i2 + 1:])  # q2 joint frame -> tip (joints in between at 0)
        lims = []
        for j, tl in ((j1, task_limits[0]), (j2, task_limits[1])):
            lims.append((max(j.lower, tl[0]), min(j.upper, tl[1])))
        return cls(
            t_b=pre1[:3, 3], R_b=pre1[:3, :3], a1=j1.axis,
            t_s=mid[:3, 3], R_s=mid[:3, :3], a2=j2.axis,
            c=tail[:3, 3], limits=lims, convention="urdf", joint_names=(j1.name, j2.name),
        )

    # ------------------------------------------------------------------------------------ evaluation
    def xyz(self, q1, q2):
        """End-effector position (m), shape broadcast(q1, q2).shape + (3,).

        Works on numpy arrays / floats (returns numpy) and on torch tensors (returns a tensor of the
        inputs' dtype and device; differentiable).
        """
        if is_torch(q1) or is_torch(q2):
            return self._xyz_torch(q1, q2)
        return self._eval(np.asarray(q1, dtype=float), np.asarray(q2, dtype=float), np)

    def _xyz_torch(self, q1, q2):
        import torch  # noqa: PLC0415 - lazy: the core must import without torch

        ref = q1 if isinstance(q1, torch.Tensor) else q2
        dtype = ref.dtype if ref.dtype.is_floating_point else torch.get_default_dtype()
        q1 = torch.as_tensor(q1, dtype=dtype, device=ref.device)
        q2 = torch.as_tensor(q2, dtype=dtype, device=ref.device)

        def const(a):
            return torch.as_tensor(a, dtype=dtype, device=ref.device)

        return self._eval(q1, q2, torch, const)

    def _eval(self, q1, q2, xp, const=None):
        const = const or (lambda a: a)
        t_b, R_b, a1 = const(self.t_b), const(self.R_b), const(self.a1)
        t_s, R_s, a2, c = const(self.t_s), const(self.R_s), const(self.a2), const(self.c)

        def rot(axis, v, q):  # Rodrigues: v (..., 3) rotated about unit axis by q (...)
            cq, sq = xp.cos(q)[..., None], xp.sin(q)[..., None]
            cross = xp.stack(
                [axis[1] * v[..., 2] - axis[2] * v[..., 1],
                 axis[2] * v[..., 0] - axis[0] * v[..., 2],
                 axis[0] * v[..., 1] - axis[1] * v[..., 0]], -1)
            dot = (v * axis).sum(-1)[..., None]
            return v * cq + cross * sq + axis * dot * (1.0 - cq)

        shape = xp.broadcast_shapes(q1.shape, q2.shape) if xp is np else None
        if xp is np:
            q1, q2 = np.broadcast_to(q1, shape), np.broadcast_to(q2, shape)
            cv = np.broadcast_to(c, shape + (3,))
        else:
            q1, q2 = xp.broadcast_tensors(q1, q2)
            cv = c.expand(*q1.shape, 3)
        v2 = rot(a2, cv, q2)
        w = t_s + v2 @ R_s.T
        v1 = rot(a1, w, q1)
        return t_b + v1 @ R_b.T

    def in_limits(self, q1, q2) -> np.ndarray:
        """Whether (q1, q2) (rad, numpy) lie within ``limits`` (inclusive)."""
        (l1, h1), (l2, h2) = self.limits
        q1, q2 = np.asarray(q1), np.asarray(q2)
        return (q1 >= l1) & (q1 <= h1) & (q2 >= l2) & (q2 <= h2)
