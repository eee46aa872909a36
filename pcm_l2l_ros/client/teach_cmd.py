"""``pcm-l2l teach``: teach the running controller by demonstration, printing the answer.

``pcm-l2l teach --window 2.49`` records the arm's own ``/joint_states`` for that many seconds from now (move the arm
by hand, or replay a trajectory on it, starting at home) and has the controller learn the recording in one update
(``/controller/demonstration/learn``). ``pcm-l2l teach`` without ``--window`` starts a recording
(``/controller/demonstration/start``), waits for Enter (or at most 2.49 s: the recording ends by itself), then
stops it and learns. ``--csv FILE`` also writes the recording (``time_s,base_joint,shoulder``: s, rad), the format
``pcm-l2l learn --csv`` reads.
"""

from __future__ import annotations

import argparse
import csv
import math
import select
import sys
import time
from pathlib import Path

from pcm_l2l_ros.client.common import add_connection_arguments, emit_json, learn_result, learn_summary, refused

START_SERVICE = "/controller/demonstration/start"
#: the trainee's duration (s): the longest demonstration
MAX_WINDOW_S = 2.49


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--window",
        type=float,
        default=None,
        metavar="S",
        help=f"record S seconds from now (0 < S <= {MAX_WINDOW_S}); default: start now, stop on Enter",
    )
    p.add_argument("--csv", type=Path, default=None, help="also write the recording here (time_s,<joint>,...)")
    p.add_argument("--no-quantize", action="store_true", help="send quantize_update=false (the update unrounded)")
    add_connection_arguments(p, "/controller/demonstration/learn")


def _wait_for_enter(max_s: float) -> None:
    """Until Enter on a terminal's stdin, or ``max_s`` s (also when stdin is not a terminal)."""
    deadline = time.monotonic() + max_s
    interactive = sys.stdin is not None and sys.stdin.isatty()
    if interactive:
        print(f"teach: recording; press Enter to stop (it stops by itself after {max_s:.2f} s)", flush=True)
    while (left := deadline - time.monotonic()) > 0:
        if interactive and select.select([sys.stdin], [], [], min(left, 0.05))[0]:
            sys.stdin.readline()
            return
        if not interactive:
            time.sleep(min(left, 0.05))


def write_csv(path: Path, msg) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time_s", *msg.joint_names])
        for p in msg.points:
            w.writerow(
                [f"{p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec:.6f}", *(f"{v:.6f}" for v in p.positions)]
            )


def run(args: argparse.Namespace) -> int:
    from pcm_l2l_interfaces.srv import LearnDemonstration  # noqa: PLC0415
    from std_srvs.srv import Trigger  # noqa: PLC0415

    from pcm_l2l_ros.nodes.client import GraphClient  # noqa: PLC0415

    window = args.window
    if window is not None and not (math.isfinite(window) and 0 < window <= MAX_WINDOW_S):
        print(f"pcm-l2l teach: --window must be in (0, {MAX_WINDOW_S}] s, got {window}", file=sys.stderr)
        return 2
    request = LearnDemonstration.Request(window_s=float(window or 0.0), quantize_update=not args.no_quantize)
    with GraphClient("pcm_l2l_teach") as c:
        if window is None:
            started = c.call(Trigger, START_SERVICE, Trigger.Request(), args.connect_timeout, args.timeout)
            if not started.success:
                return refused(args, "teach", started.message)
            _wait_for_enter(MAX_WINDOW_S)
        else:
            print(f"teach: recording {window:.2f} s of /joint_states from now", flush=True, file=sys.stderr)
        res = c.call(LearnDemonstration, args.service, request, args.connect_timeout, args.timeout + (window or 0.0))
    if res.samples and args.csv is not None:
        write_csv(args.csv, res.demonstration)
    if not res.success:
        return refused(args, "teach", res.message, {"recorded_s": res.recorded_s, "samples": res.samples})
    out = {
        "success": True,
        "message": res.message,
        "recorded_s": res.recorded_s,
        "samples": res.samples,
        "ended_by": res.ended_by,
        **learn_result(res),
    }
    if args.json:
        emit_json(out)
    else:
        print(
            f"teach: {res.samples} samples over {res.recorded_s:.2f} s (ended by {res.ended_by}) {learn_summary(res)}",
            flush=True,
        )
    return 0
