"""The ``pcm-l2l`` command.

Sub-commands (each lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``):
demo, pretrain-cnn, train-cnn, eval-cnn, calibrate-cnn, train-snn, eval-snn, bench, report; and the clients of a running
node graph (no ros2 CLI needed): classify, learn, execute, teach.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("pcm_l2l_ros.demo", "run the demo scenario: one-shot arm trajectory + few-shot vision over ROS 2"),
    "pretrain-cnn": ("pcm_l2l_ros.vision.pretrain_cmd", "pre-train the CNN backbone as a classifier (resumable)"),
    "train-cnn": ("pcm_l2l_ros.vision.train_cmd", "meta-train the Omniglot CNN with MAML (resumable)"),
    "eval-cnn": ("pcm_l2l_ros.vision.eval_cmd", "evaluate the CNN in software and on the simulated PCM chip"),
    "calibrate-cnn": ("pcm_l2l_ros.vision.calibrate_cmd", "choose a CNN checkpoint's readout full scale on the chip"),
    "train-snn": ("pcm_l2l_ros.snn.train_cmd", "meta-train the trainee + LSG with natural e-prop (resumable)"),
    "eval-snn": ("pcm_l2l_ros.snn.eval_cmd", "evaluate one-shot trajectory learning, software and PCM"),
    "bench": ("pcm_l2l_ros.bench_cmd", "run the benchmarks in bench/ and print ratios against peers"),
    "report": ("pcm_l2l_ros.report", "plot metrics CSVs of training/evaluation runs"),
    "classify": ("pcm_l2l_ros.client.classify_cmd", "client of the running graph: classify image files few-shot"),
    "learn": ("pcm_l2l_ros.client.learn_cmd", "client of the running graph: learn a trajectory CSV in one update"),
    "execute": ("pcm_l2l_ros.client.execute_cmd", "client of the running graph: execute the learned trajectory"),
    "teach": ("pcm_l2l_ros.client.teach_cmd", "client of the running graph: record the arm's motion, learn it"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="pcm-l2l", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {}
    for name, (_, help_text) in COMMANDS.items():
        subparsers[name] = sub.add_parser(name, help=help_text, description=help_text)
    return parser, subparsers


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, subparsers = build_parser()
    # Only the chosen command's module is imported (torch, numba, rclpy are heavy).
    chosen = next((a for a in argv if a in COMMANDS), None)
    module = None
    if chosen is not None:
        try:
            module = importlib.import_module(COMMANDS[chosen][0])
        except ModuleNotFoundError as e:
            print(f"pcm-l2l {chosen}: not available in this installation ({e})", file=sys.stderr)
            return 2
        module.add_arguments(subparsers[chosen])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"pcm-l2l {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.verbose:
            raise
        # a bad argument, a missing or corrupt file: one clear line, no traceback (-v shows it)
        print(f"pcm-l2l {args.command}: error: {type(e).__name__}: {e} (-v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
