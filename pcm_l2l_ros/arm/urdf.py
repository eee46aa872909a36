"""The arm model: URDF parsing and forward kinematics of the ED-Scorbot-like arm (``urdf/edscorbot.urdf``).

Units: m for positions, rad for joint angles.

* ``load_chain(path)`` parses a URDF (``xml.etree``; no extra dependencies) into a :class:`Chain`.
* ``fk(chain, q)`` computes every link frame (4x4 homogeneous transforms in the root frame) from the
  URDF chain; ``ee_position(chain, q)`` the end-effector point. This is the only geometry of the arm in
  the package: everything else (the simulator, the task kinematics of ``arm.kinematics``) is derived from it.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Joint",
    "Link",
    "Chain",
    "URDFError",
    "load_chain",
    "fk",
    "ee_position",
    "rpy_to_matrix",
    "default_urdf_path",
]


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
