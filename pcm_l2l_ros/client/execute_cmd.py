"""``pcm-l2l execute``: execute the learned trajectory through the controller's ExecuteLearned action
(``/controller/execute_learned``) and print its feedback (progress, tracking error) and result (final and median
end-effector tracking error). Exit code 0 when the motion ran to its end, 1 when the goal was refused or stopped
(the controller's reason on stderr), 130 on Ctrl-C, which cancels the goal first (the arm stops and holds).

A goal refused because the controller has not seen a fresh ``/joint_states`` within its watchdog timeout (right
after a sim reset, or on a loaded machine) is re-sent for up to ``--retry`` s."""

from __future__ import annotations

import argparse
import sys
import time

from pcm_l2l_ros.client.common import add_connection_arguments, emit_json, refused

ACTION = "/controller/execute_learned"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="S",
        help="duration multiplier of the learned motion: 1 = as learned, 2 = twice as long (0.5..4; default 1)",
    )
    add_connection_arguments(
        p, ACTION, kind="action", json_help="print the result as one JSON object (no feedback lines)"
    )
    p.add_argument(
        "--retry",
        type=float,
        default=2.0,
        metavar="S",
        help="s to keep re-sending a goal refused for stale /joint_states (default 2)",
    )
    p.add_argument(
        "--feedback-every",
        type=float,
        default=0.5,
        metavar="S",
        help="print a feedback line at most every S s (default 0.5; 0: every feedback message)",
    )
    p.add_argument("--wait", action="store_true", help=argparse.SUPPRESS)  # the action always waits (old option)


def run(args: argparse.Namespace) -> int:
    from action_msgs.msg import GoalStatus  # noqa: PLC0415
    from pcm_l2l_interfaces.action import ExecuteLearned  # noqa: PLC0415

    from pcm_l2l_ros.nodes.client import GraphClient  # noqa: PLC0415

    R = ExecuteLearned.Result
    codes = {getattr(R, n): n for n in dir(R) if n.isupper() and isinstance(getattr(R, n), int)}
    statuses = {
        getattr(GoalStatus, n): n.removeprefix("STATUS_").lower() for n in dir(GoalStatus) if n.startswith("STATUS_")
    }
    if args.time_scale != 0.0 and not 0.5 <= args.time_scale <= 4.0:
        raise ValueError(f"--time-scale {args.time_scale}: must be in [0.5, 4]")
    feedback: list = []
    last_print = [-float("inf")]

    def on_feedback(fb) -> None:
        feedback.append(fb)
        now = time.monotonic()
        if not args.json and now - last_print[0] >= args.feedback_every:
            last_print[0] = now
            print(
                f"execute: {100 * fb.progress:5.1f} %  t = {fb.elapsed_s:5.2f} s  tracking error "
                f"{100 * fb.tracking_error_m:5.2f} cm",
                flush=True,
            )

    goal = ExecuteLearned.Goal(time_scale=float(args.time_scale))
    deadline = time.monotonic() + max(0.0, args.retry)
    with GraphClient("pcm_l2l_execute") as c:
        try:
            while True:
                status, res = c.send_goal(
                    ExecuteLearned, args.action, goal, on_feedback, args.connect_timeout, args.timeout
                )
                if res is None or res.code != R.STALE_JOINT_STATES or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:
            print("pcm-l2l execute: interrupted: the goal was canceled (the arm stops)", file=sys.stderr, flush=True)
            return 130
    if res is None:
        return refused(args, "execute", f"the goal was rejected by {args.action}")
    out = {
        "success": bool(res.success),
        "status": statuses.get(status, str(status)),
        "code": codes.get(res.code, str(res.code)),
        "message": res.message,
        "final_error_m": res.final_error_m,
        "median_error_m": res.median_error_m,
        "samples": res.samples,
        "duration_s": res.duration_s,
        "feedback_messages": len(feedback),
    }
    if not res.success:
        return refused(
            args, "execute", f"{out['code']}: {res.message}", {k: v for k, v in out.items() if k != "success"}
        )
    if args.json:
        emit_json(out)
    else:
        print(
            f"execute: {res.message}; {res.duration_s:.2f} s, end-effector tracking error median "
            f"{100 * res.median_error_m:.2f} cm, final {100 * res.final_error_m:.2f} cm ({res.samples} /joint_states, "
            f"{len(feedback)} feedback messages)",
            flush=True,
        )
    return 0
