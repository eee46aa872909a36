"""What the client commands share: connection options and the JSON output."""

from __future__ import annotations

import argparse
import json
import sys


def add_connection_arguments(p: argparse.ArgumentParser, service: str) -> None:
    p.add_argument("--service", default=service, help=f"service name (default {service})")
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="s to wait for the service to appear (default 30)",
    )
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="s to wait for the answer (default 120)")
    p.add_argument("--json", action="store_true", help="print the answer as one JSON object")


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
