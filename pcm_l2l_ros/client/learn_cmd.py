"""``pcm-l2l learn --csv trajectory.csv``: one-shot learning of a trajectory by the running controller
(``/controller/learn_trajectory``), printing the answer.

The CSV has a header row: a time column (``time_s``, ``t`` or ``time_from_start``: seconds from the start, strictly
increasing) and one column per learned joint (``base_joint``, ``shoulder``: positions in rad), one row per point;
the trajectory starts at home (0 rad) and lasts at most 2.49 s (the controller checks it and explains a refusal).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from pcm_l2l_ros.client.common import add_connection_arguments, emit_json, learn_result, learn_summary, refused

TIME_COLUMNS = ("time_s", "t", "time_from_start")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", type=Path, required=True, help="trajectory: header time_s,<joint>,<joint>; rad, s")
    p.add_argument(
        "--no-quantize",
        action="store_true",
        help="send quantize_update=false (the update unrounded; default: rounded as the chip writes it)",
    )
    add_connection_arguments(p, "/controller/learn_trajectory")


def read_trajectory_csv(path: Path) -> tuple[list[str], list[float], list[list[float]]]:
    """(joint names, times in s, positions per point in rad) from the CSV; ValueError with the row if malformed."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if len(rows) < 3:
        raise ValueError(f"{path}: need a header row and at least 2 points")
    header = [h.strip() for h in rows[0]]
    time_cols = [i for i, h in enumerate(header) if h in TIME_COLUMNS]
    if len(time_cols) != 1:
        raise ValueError(f"{path}: the header needs exactly one time column ({', '.join(TIME_COLUMNS)}); got {header}")
    ti = time_cols[0]
    joints = [h for i, h in enumerate(header) if i != ti]
    if not joints or any(not j for j in joints) or len(set(joints)) != len(joints):
        raise ValueError(f"{path}: the header needs unique joint names besides the time column; got {header}")
    times, positions = [], []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}, row {n}: {len(row)} values for {len(header)} columns")
        try:
            values = [float(v) for v in row]
        except ValueError as e:
            raise ValueError(f"{path}, row {n}: {e}") from e
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{path}, row {n}: non-finite value")
        times.append(values[ti])
        positions.append([v for i, v in enumerate(values) if i != ti])
    return joints, times, positions


def trajectory_msg(joints: list[str], times: list[float], positions: list[list[float]]):
    from pcm_l2l_ros.nodes.common import joint_trajectory  # noqa: PLC0415 - rclpy only where a client runs

    for t in times:
        if t < 0 or t > 2**31 - 1:
            raise ValueError(f"time {t} s out of range")
    return joint_trajectory(joints, times, positions)


def run(args: argparse.Namespace) -> int:
    from pcm_l2l_interfaces.srv import LearnTrajectory  # noqa: PLC0415

    from pcm_l2l_ros.nodes.client import GraphClient  # noqa: PLC0415

    joints, times, positions = read_trajectory_csv(args.csv)
    request = LearnTrajectory.Request(
        target=trajectory_msg(joints, times, positions), quantize_update=not args.no_quantize
    )
    with GraphClient("pcm_l2l_learn") as c:
        res = c.call(LearnTrajectory, args.service, request, args.connect_timeout, args.timeout)
    if not res.success:
        return refused(args, "learn", res.message)
    out = {
        "success": True,
        "message": res.message,
        "points": len(times),
        "joints": joints,
        **learn_result(res),
    }
    if args.json:
        emit_json(out)
    else:
        print(f"learn: {len(times)} points of {', '.join(joints)} {learn_summary(res)}", flush=True)
    return 0
