"""What the client commands share: connection options and the JSON output."""

from __future__ import annotations

import argparse
import json
import sys


def add_connection_arguments(
    p: argparse.ArgumentParser, name: str, kind: str = "service", json_help: str = "print the answer as one JSON object"
) -> None:
    """``--service NAME`` (``--action NAME`` if ``kind="action"``), ``--connect-timeout``, ``--timeout``, ``--json``."""
    p.add_argument(f"--{kind}", default=name, help=f"{kind} name (default {name})")
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help=f"s to wait for the {'action server' if kind == 'action' else 'service'} to appear (default 30)",
    )
    end = "the end" if kind == "action" else "the answer"
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help=f"s to wait for {end} (default 120)")
    p.add_argument("--json", action="store_true", help=json_help)


def emit_json(obj: dict) -> None:
    json.dump(obj, sys.stdout, indent=2, default=float)
    sys.stdout.write("\n")
    sys.stdout.flush()


def refused(args, what: str, message: str, extra: dict | None = None) -> int:
    """A service said no: the message on stderr (and the JSON answer on stdout with --json); exit code 1."""
    if args.json:
        emit_json({"success": False, "message": message, **(extra or {})})
    print(f"pcm-l2l {what}: refused: {message}", file=sys.stderr, flush=True)
    return 1


def learn_result(res) -> dict:
    """The learning fields of a LearnTrajectory / LearnDemonstration response, for the JSON answer."""
    return {
        "loss_before": res.loss_before,
        "loss_after": res.loss_after,
        "devices_written": res.devices_written,
        "update_time_s": res.update_time_s,
    }


def learn_summary(res) -> str:
    """'learned in one update: loss a -> b; N PCM devices written; T ms' of such a response."""
    return (
        f"learned in one update: loss {res.loss_before:.4f} -> {res.loss_after:.4f}; {res.devices_written} PCM "
        f"devices written; {1e3 * res.update_time_s:.0f} ms"
    )
