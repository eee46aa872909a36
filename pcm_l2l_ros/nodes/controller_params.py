"""Parameters of the controller node (:mod:`pcm_l2l_ros.nodes.controller_node`): declared read-only, each with
its description and validator (README "Interfaces")."""

from __future__ import annotations

import math

from rclpy.node import Node

from pcm_l2l_ros.nodes.common import declare_validated, float_range, int_range

MODES = ("velocity", "trajectory")
#: longest simulated time since programming (s): 10 years, as the vision service
MAX_DRIFT_S = 10 * 365.25 * 86400.0


def _one_of(options):
    return lambda v: None if v in options else f"must be one of {list(options)}"


def _string_list(v):
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(s, str) and s for s in v):
        return "must be a non-empty list of joint names"
    return None if len(set(v)) == len(v) else "joint names must be unique"


def _specs() -> list[tuple[str, object, str, object]]:
    """(name, default, description, check) of every parameter, in the order of declaration."""
    from pcm_l2l_ros.pcm import PRESET_NAMES  # noqa: PLC0415

    return [
        (
            "checkpoint",
            "",
            "meta-trained SNN checkpoint (.npz with sidecar .json); empty = the package's models/snn_l2l.npz",
            lambda v: None if isinstance(v, str) else "must be a path",
        ),
        ("urdf_path", "", "URDF of the arm (limits, kinematics); empty = the package's urdf/edscorbot.urdf", None),
        (
            "joints",
            ["base_joint", "shoulder", "elbow", "pitch", "roll"],
            "order of the velocity command array (all commanded joints)",
            _string_list,
        ),
        (
            "learned_joints",
            ["base_joint", "shoulder"],
            "joints driven by the trainee's two outputs (base, shoulder)",
            lambda v: _string_list(v) or (None if len(v) == 2 else "the trainee has exactly 2 outputs"),
        ),
        (
            "command_mode",
            "velocity",
            "velocity: stream Float64MultiArray rad/s; trajectory: one JointTrajectory "
            "(rad). Read-only: switching mid-execution would leave the arm commanded by the other controller",
            _one_of(MODES),
        ),
        (
            "start_tolerance_rad",
            0.05,
            "~/execute is refused unless every learned joint is within this of the trajectory's start (rad)",
            float_range(0.0, math.pi, lo_open=True),
        ),
        (
            "max_target_points",
            10_000,
            "cap on the points of a LearnTrajectory target (refused before conversion)",
            int_range(2, 1_000_000),
        ),
        (
            "max_pending",
            4,
            "learn requests queued or running at most; more are refused at once (busy)",
            int_range(1, 100),
        ),
        (
            "watchdog_timeout_s",
            0.05,
            "stop (zero velocity) when /joint_states is older than this (s)",
            float_range(0.0, 10.0, lo_open=True),
        ),
        ("status_rate_hz", 1.0, "rate of ~/status (Hz)", float_range(0.0, 1000.0, lo_open=True)),
        (
            "diagnostics_period_s",
            1.0,
            "period of the status on /diagnostics (s)",
            float_range(0.0, 60.0, lo_open=True),
        ),
        ("pcm.enabled", True, "run the trainee's W_in/W_rec on the simulated PCM chip (false: float software)", None),
        (
            "pcm.preset",
            "hermes_per_column",
            "PCM chip, a name of pcm.presets (old name hermes_like = hermes_per_column)",
            _one_of(PRESET_NAMES),
        ),
        (
            "pcm.drift_time_s",
            3600.0,
            "time since programming simulated for the runs (s), drift-compensated",
            float_range(0.0, MAX_DRIFT_S),
        ),
        (
            "pcm.update_rounding",
            "stochastic",
            "rounding of the one update to the device resolution (1/16): "
            "stochastic (unbiased) or nearest (the paper's)",
            _one_of(("stochastic", "nearest")),
        ),
        ("pcm.seed", 0, "seed of the device noise", int_range(0, 2**31 - 1)),
        (
            "compute_threads",
            1,
            "threads of the SNN / chip simulation: torch intra-op and the BLAS pools (1: no "
            "oversubscription of the cores shared with the ROS executor and the control loop)",
            int_range(1, 64),
        ),
    ]


def declare_parameters(node: Node) -> dict:
    """Declare the controller's parameters on ``node`` (validated, all read-only); returns their values by name."""
    return {
        name: declare_validated(node, name, default, description, check, read_only=True)
        for name, default, description, check in _specs()
    }
