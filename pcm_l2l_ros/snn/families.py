"""Task families of the one-shot arm experiment: the Brownian family of the paper plus the shapes people teach a
robot (issue #14), all in joint space (base, shoulder) and realisable by the trainee.

Every target of every family (docs/conventions.md §2, §4):

* has the time base of the Brownian family: ``T`` = 249 samples, one every ``arm_time_per_step_s`` = 0.01 s
  of arm time (2.49 s); sample k is the position at t_k = (k + 1) · 0.01 s, and the arm is at home (0 rad) at
  t = 0 s, so ``q = 0.01 s · cumsum(omega)`` exactly (``tasks.integrate_angles``);
* starts at home and at rest (the trainee starts at rest at the home pose);
* stays within the task's joint limits (``tasks.joint_limits(kin)``, URDF convention: base ±125°, shoulder
  ±70°) with a margin (:data:`LIMIT_MARGIN`), and, except the Brownian family, within the URDF velocity
  limit of 1 rad/s per joint (:data:`VELOCITY_LIMIT_RAD_S` · :data:`VELOCITY_MARGIN`);
* is self-consistent: ``q = ∫ omega`` and ``xyz = FK(q)`` (a :class:`tasks.TrajectoryBatch`).

Families (:data:`FAMILIES`; sizes in rad, durations in s):

``brownian``
    the paper's family, :func:`tasks.sample_trajectories` unchanged (bit-identical draws): smoothed Brownian
    joint velocities, targets leaving the limits redrawn. Its velocities are not bounded by 1 rad/s (clip
    ±π rad/s), as in the paper.
``ellipse``
    one full loop of a circle or an ellipse through home: axis ratio U(0.3, 1) (a circle with probability
    1/4), orientation U(0, π), home at a uniform phase of the loop, either direction. Closed: it ends at home.
``lemniscate``
    one full loop of a figure-eight (Gerono lemniscate ``(sin φ, b sin φ cos φ)``, b ∈ U(0.6, 2)), orientation
    U(0, π), home at a uniform phase, either direction. Closed, and it crosses itself.
``polygon``
    one loop of a rounded polygon: a square (probability 1/3; else a triangle, rectangle of side ratio
    U(0.6, 1), pentagon or hexagon) whose corners are rounded over a fraction U(0.15, 0.5) of the mean side
    (circular smoothing of the outline), traced at constant speed along the outline between the start and
    stop ramps; orientation uniform, home at a uniform point of the outline, either direction. Closed.
``stroke``
    back-and-forth strokes along a straight line in joint space through home, direction uniform: one-sided
    (home → out → home, ``sin²``; 1, 1.5, 2, 2.5 or 3 strokes out and back, a half stroke ends at the far end)
    or two-sided (a wave ``sin(2π n σ)`` about home, n ∈ {1, 2}).
``point_to_point``
    one minimum-jerk move from home to a goal drawn uniformly in the reachable box (joint limits and the
    velocity limit for the move's duration; at least 0.1 rad away), then at rest at the goal. Each joint is
    monotone.
``arc``
    an open arc of an ellipse (axis ratio U(0.4, 1)) from home, spanning U(60°, 324°) of the ellipse's
    parameter, orientation U(0, π), either direction; it ends at rest away from home.

Timing of the shaped families: the motion starts after a rest of U(0, 0.25) s, lasts a duration D (closed
curves and arcs U(1.2 s, rest of the trial), strokes and point-to-point moves U(0.8 s, rest of the trial)) and
holds still afterwards. The path parameter follows a smooth time law: raised-cosine speed ramps over a fraction
U(0.15, 0.5) of D at both ends and constant speed between (:func:`time_law`), so the velocity is zero at the
start and at the end. Size: the shape is scaled about home to a fraction in [0.3, 1] of the largest scale that
keeps it inside the joint limits and below the velocity limit for its duration (:func:`fit_scale`), drawn as
sqrt(U(0.09, 1)) (density rising with size: median 0.72), so sizes
reach the reachable range as far as the 1 rad/s limit allows in 2.49 s, and speeds reach the velocity limit.

Seeds (docs/conventions.md §6): a generator takes an explicit ``numpy.random.Generator``. Training draws from
the stream of ``default_rng(seed)`` (train-snn ``--seed``). Held-out evaluation and validation sets of the
shaped families use :func:`family_rng`: a child stream ``SeedSequence(seed, spawn_key=(family id,))``, which no
training stream uses; the Brownian family keeps ``default_rng(seed)`` so that its published numbers (seed
20261129) stay comparable. :data:`RESERVED_EVAL_SEEDS` are refused as training seeds by ``train-snn``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from pcm_l2l_ros.snn import tasks
from pcm_l2l_ros.snn.params import DEFAULT_CONFIG, SNNConfig
from pcm_l2l_ros.snn.shaped_families import (  # noqa: F401 - public names of this module since issue #14
    LIMIT_MARGIN,
    MAX_START_S,
    MIN_SIZE,
    SHAPES,
    VELOCITY_LIMIT_RAD_S,
    VELOCITY_MARGIN,
    fit_scale,
    grid_times,
    point_to_point,
    rounded_polygon,
    time_law,
)

#: the task families, in a fixed order (their index is the family id of :func:`family_rng`)
FAMILIES: tuple[str, ...] = ("brownian", "ellipse", "lemniscate", "polygon", "stroke", "point_to_point", "arc")
#: families whose targets end where they start (closed curves)
CLOSED_FAMILIES = ("ellipse", "lemniscate", "polygon")
#: held-out seed of eval-snn (the 270 Brownian trajectories of the README) and of the baselines' eta tuning
EVAL_SEED = 20261129
VAL_SEED = 777
#: seeds that train-snn refuses (its training, validation and export streams must not be evaluation streams)
RESERVED_EVAL_SEEDS = frozenset({EVAL_SEED, VAL_SEED, 555})  # 555: the selection set of the README


# ---------------------------------------------------------------------------------------------- seeds
def family_rng(family: str, seed: int) -> np.random.Generator:
    """The held-out (evaluation / validation) stream of ``family`` for an integer ``seed``.

    ``brownian``: ``default_rng(seed)`` (the existing convention, seed 20261129 = the README's test set);
    other families: the child stream ``SeedSequence(seed, spawn_key=(id,))`` with ``id`` the family's index in
    :data:`FAMILIES`, never used by a training run (training streams are ``default_rng(seed)``)."""
    check_family(family)
    if family == "brownian":
        return np.random.default_rng(seed)
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(FAMILIES.index(family),)))


def check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}; one of {', '.join(FAMILIES)}")


# ---------------------------------------------------------------------------------------------- sampling
def _batch(p: np.ndarray, kin, cfg: SNNConfig, family: str, info: list[dict]) -> tasks.TrajectoryBatch:
    dt = cfg.arm_time_per_step_s
    omega = np.diff(np.concatenate([np.zeros_like(p[:, :1]), p], axis=1), axis=1) / dt
    q = tasks.integrate_angles(omega, cfg)
    xyz = np.asarray(tasks.kin_xyz(kin, q), dtype=np.float64)
    fam = np.full(len(p), family, dtype=object)
    return tasks.TrajectoryBatch(
        omega=omega,
        q=q,
        xyz=xyz,
        hit_limit=np.zeros(len(p), bool),
        mode="resample",
        family=fam,
        info=np.array(info + [None], dtype=object)[:-1],
    )


def sample_family(
    family: str,
    n: int,
    rng: np.random.Generator | int | None,
    cfg: SNNConfig = DEFAULT_CONFIG,
    kin=None,
    *,
    mode: str = "resample",
) -> tasks.TrajectoryBatch:
    """n target trajectories of ``family`` (:data:`FAMILIES`) drawn from ``rng``.

    ``brownian`` is :func:`tasks.sample_trajectories` (``mode`` applies to it only; the same draws); the other
    families are generated as documented in this module. ``kin`` defaults to ``TaskKinematics.paper()`` as
    :func:`tasks.sample_trajectories` (pass the checkpoint's kinematics)."""
    check_family(family)
    rng = np.random.default_rng(rng)
    kin = kin if kin is not None else tasks.default_kinematics(paper=True)
    if family == "brownian":
        tr = tasks.sample_trajectories(n, rng, cfg, kin, mode=mode)
        tr.family = np.full(n, "brownian", dtype=object)
        tr.info = np.full(n, None, dtype=object)
        return tr
    lim = tasks.joint_limits(kin)
    if n == 0:
        z = np.zeros((0, cfg.T, 2))
        return _batch(z, kin, cfg, family, [])
    if family == "point_to_point":
        p, info = point_to_point(n, rng, cfg, lim)
        return _batch(p, kin, cfg, family, info)
    p, (t0, dur, r), info = SHAPES[family](n, rng, cfg)
    size = np.sqrt(rng.uniform(MIN_SIZE**2, 1.0, n))  # density rising with size: large shapes are common
    scale = size * fit_scale(p, lim, cfg)
    p = p * scale[:, None, None]
    for i, d in enumerate(info):
        d.update(
            {
                "scale": float(scale[i]),
                "size_fraction": float(size[i]),
                "start_s": float(t0[i]),
                "duration_s": float(dur[i]),
                "ramp_fraction": float(r[i]),
            }
        )
    return _batch(p, kin, cfg, family, info)


def concat(batches: list[tasks.TrajectoryBatch]) -> tasks.TrajectoryBatch:
    """One batch of several (arrays concatenated along the batch axis)."""

    def cat(name):
        vals = [getattr(b, name) for b in batches]
        if any(v is None for v in vals):
            return None
        return np.concatenate(vals)

    return tasks.TrajectoryBatch(
        omega=cat("omega"),
        q=cat("q"),
        xyz=cat("xyz"),
        hit_limit=cat("hit_limit"),
        mode=batches[0].mode,
        family=cat("family"),
        info=cat("info"),
    )


def parse_mixture(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """Mixing weights ``{family: weight}`` (normalised to sum 1; zero weights dropped) from ``"name:w,name:w"``,
    ``"all"`` (every family, equal weights), a bare ``"name"`` (weight 1) or a mapping; None = Brownian only."""
    if spec is None:
        return {"brownian": 1.0}
    if isinstance(spec, str):
        spec = spec.strip()
        if spec == "all":
            return {f: 1.0 / len(FAMILIES) for f in FAMILIES}
        items = {}
        for part in filter(None, (s.strip() for s in spec.split(","))):
            name, _, text = part.partition(":")
            name = name.strip()
            if name in items:
                raise ValueError(f"family {name!r} given twice in {spec!r}")
            try:
                items[name] = float(text) if text.strip() else 1.0
            except ValueError as e:
                raise ValueError(f"bad weight in {part!r} (expected name:weight)") from e
        spec = items
    out: dict[str, float] = {}
    for name, w in spec.items():
        check_family(name)
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"weight of {name!r} must be finite and >= 0, got {w}")
        if w > 0:
            out[name] = float(w)
    total = sum(out.values())
    if total <= 0:
        raise ValueError(f"mixing weights {spec!r} sum to zero")
    return {f: out[f] / total for f in FAMILIES if f in out}


def sample_mixture(
    n: int,
    rng: np.random.Generator,
    weights: Mapping[str, float] | None,
    cfg: SNNConfig = DEFAULT_CONFIG,
    kin=None,
    *,
    mode: str = "resample",
) -> tasks.TrajectoryBatch:
    """n targets of a family mixture: the count of each family is multinomial(n, weights), then each family's
    generator draws from ``rng`` in the order of :data:`FAMILIES`. A single family draws exactly what
    :func:`sample_family` draws (for ``brownian``, :func:`tasks.sample_trajectories`): no extra random draw,
    so Brownian-only training is unchanged."""
    w = parse_mixture(weights)
    if len(w) == 1:
        return sample_family(next(iter(w)), n, rng, cfg, kin, mode=mode)
    names = list(w)
    counts = rng.multinomial(n, np.array([w[f] for f in names]))
    return concat(
        [sample_family(f, int(c), rng, cfg, kin, mode=mode) for f, c in zip(names, counts, strict=True) if c > 0]
    )


def sample_stratified(
    n: int,
    seed: int,
    weights: Mapping[str, float] | None,
    cfg: SNNConfig = DEFAULT_CONFIG,
    kin=None,
    *,
    mode: str = "resample",
) -> tasks.TrajectoryBatch:
    """A fixed held-out set over the families of ``weights``: n split evenly over them (every family counts the
    same, whatever its training weight), each drawn from :func:`family_rng` (family, seed). A single family is
    ``sample_family(f, n, family_rng(f, seed))``."""
    names = list(parse_mixture(weights))
    k = len(names)
    counts = [n // k + (1 if i < n % k else 0) for i in range(k)]
    return concat(
        [sample_family(f, c, family_rng(f, seed), cfg, kin, mode=mode) for f, c in zip(names, counts, strict=True)]
    )
