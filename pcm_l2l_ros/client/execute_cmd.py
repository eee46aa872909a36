"""``pcm-l2l execute``: call ``/controller/execute`` (std_srvs/Trigger) of the running graph and print the answer;
``--wait`` then follows ``/controller/status`` until the execution has ended."""

from __future__ import annotations

import argparse
import time

from pcm_l2l_ros.client.common import add_connection_arguments, emit_json, refused


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_connection_arguments(p, "/controller/execute")
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until the execution has ended (controller state no "
        "longer 'executing' on /controller/status) and print the final state",
    )
    p.add_argument("--status-topic", default="/controller/status", help="status topic for --wait")


def run(args: argparse.Namespace) -> int:
    from pcm_l2l_interfaces.msg import ControllerStatus  # noqa: PLC0415
    from std_srvs.srv import Trigger  # noqa: PLC0415

    from pcm_l2l_ros.nodes.client import GraphClient  # noqa: PLC0415

    with GraphClient("pcm_l2l_execute") as c:
        states: list[tuple[float, str]] = []
        if args.wait:
            c.node.create_subscription(
                ControllerStatus, args.status_topic, lambda m: states.append((time.monotonic(), m.state)), 10
            )
        res = c.call(Trigger, args.service, Trigger.Request(), args.connect_timeout, args.timeout)
        t0 = time.monotonic()
        if not res.success:
            return refused(args, "execute", res.message)
        out = {"success": True, "message": res.message}
        if args.wait:
            # ~/status (1 Hz by default) says 'executing' until the trajectory has run out or was stopped; a status
            # sent just before the request was served may still say 'idle': it counts only after 'executing' was
            # seen, or 1.5 s after the answer (an execution stopped at once by the watchdog)
            def ended() -> bool:
                after = [(t, s) for t, s in states if t > t0]
                seen = any(s == "executing" for _, s in after)
                return bool(after) and after[-1][1] != "executing" and (seen or after[-1][0] > t0 + 1.5)

            if not c.spin_until(ended, args.timeout):
                raise TimeoutError(f"the execution did not end within {args.timeout:g} s")
            out["final_state"] = [s for t, s in states if t > t0][-1]
            out["duration_s"] = time.monotonic() - t0
    if args.json:
        emit_json(out)
    else:
        print(
            f"execute: {res.message}"
            + (f"; ended in state '{out['final_state']}' after {out['duration_s']:.1f} s" if args.wait else ""),
            flush=True,
        )
    return 0
