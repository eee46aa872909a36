"""The task kinematics of the spiking controller: the 2-DOF forward kinematics of the arm task.

Units: m for positions, rad for joint angles.

:class:`TaskKinematics` is the task FK of the SNN: only the base (``q1``) and the shoulder (``q2``) move; elbow,
pitch and roll stay at 0. Two conventions exist (docs/conventions.md §4):

- ``TaskKinematics.from_urdf()``: constants extracted from our URDF chain (``urdf/edscorbot.urdf``, parsed by
  :mod:`pcm_l2l_ros.arm.urdf`); agrees with ``urdf.fk`` to < 1e-9 m. ``q1``, ``q2`` are the URDF joint angles of
  ``base_joint`` and ``shoulder`` (URDF sign conventions: ``base_joint`` about +z, ``shoulder`` about +y of its
  frame, so a positive ``q2`` lowers the arm).
- ``TaskKinematics.paper()``: the closed form of the paper's official code (0.35 m forearm segment instead of the
  URDF's 0.25 m; a positive ``q2`` raises the arm), used for parity with the released weights::

      R = 0.05 + 0.87 cos q2
      x = cos q1 R - 0.033 sin q1
      y = -sin q1 R - 0.033 cos q1
      z = 0.3585 + 0.87 sin q2

Both evaluate ``p = t_b + R_b (Rot(a1, q1) (t_s + R_s Rot(a2, q2) c))`` (Rodrigues rotations), which
works on numpy arrays and on torch tensors (differentiable; torch is imported lazily).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pcm_l2l_ros.arm.urdf import URDFError, load_chain
from pcm_l2l_ros.arrays import is_torch

__all__ = ["TaskKinematics", "PAPER_TASK_LIMITS"]

#: The paper's task joint limits (rad): base ±130°, shoulder ±70° (paper convention).
PAPER_TASK_LIMITS: tuple[tuple[float, float], tuple[float, float]] = (
    (-math.radians(130.0), math.radians(130.0)),
    (-math.radians(70.0), math.radians(70.0)),
)


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

        pre1 = compose(jpath[: i1 + 1])  # root -> q1 joint frame (at q1 = 0)
        mid = compose(jpath[i1 + 1 : i2 + 1])  # q1 joint frame -> q2 joint frame
        tail = compose(jpath[i2 + 1 :])  # q2 joint frame -> tip (joints in between at 0)
        lims = []
        for j, tl in ((j1, task_limits[0]), (j2, task_limits[1])):
            lims.append((max(j.lower, tl[0]), min(j.upper, tl[1])))
        return cls(
            t_b=pre1[:3, 3],
            R_b=pre1[:3, :3],
            a1=j1.axis,
            t_s=mid[:3, 3],
            R_s=mid[:3, :3],
            a2=j2.axis,
            c=tail[:3, 3],
            limits=lims,
            convention="urdf",
            joint_names=(j1.name, j2.name),
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
                [
                    axis[1] * v[..., 2] - axis[2] * v[..., 1],
                    axis[2] * v[..., 0] - axis[0] * v[..., 2],
                    axis[0] * v[..., 1] - axis[1] * v[..., 0],
                ],
                -1,
            )
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
