"""The vision node's first request vs the ones after it (the node warms the request path up at start).

Starts the vision node as its own process (as in the demo, DDS on loopback), waits for ``/pcm_l2l/classify``,
then sends 5-way 5-shot Omniglot tasks (5 queries per class, 1 h drift): the very first request, then
``--calls`` more. Printed: the first request's time in the node (``total_time_s``) and round trip, the
medians of the rest and the ratios first / median. Run:

    tools/env.sh python bench/vision_first_request.py [--calls 40]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # DDS stays on this machine
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(120, 200)))

from _spin import spinning_node, timed_call  # noqa: E402 - bench/_spin.py, next to this script


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=40)
    p.add_argument("--shots", type=int, default=5)
    args = p.parse_args()

    with spinning_node("first_request_bench") as node:
        return _run(args, node)


def _run(args, node) -> int:
    from pcm_l2l_interfaces.srv import FewShotClassify  # noqa: PLC0415

    from pcm_l2l_ros.demo import sample_vision_task, to_image_msg  # noqa: PLC0415
    from pcm_l2l_ros.graph import default_graph_path, load_graph  # noqa: PLC0415
    from pcm_l2l_ros.nodes.runner import SubprocessGraph  # noqa: PLC0415

    def call(client, req, timeout=60.0):
        ms, res = timed_call(client, req, timeout)
        assert res.success, res.message
        return ms, res.total_time_s * 1e3

    reqs = []
    for i in range(8):
        sx, sy, qx, _ = sample_vision_task(2000 + i, 5, args.shots, 5)
        reqs.append(FewShotClassify.Request(support_images=[to_image_msg(a) for a in sx],
                                            support_labels=[int(v) for v in sy],
                                            query_images=[to_image_msg(a) for a in qx], inner_steps=0,
                                            drift_time_s=3600.0))
    nodes = [n for n in load_graph() if n.name == "vision"]
    with SubprocessGraph(nodes, Path(default_graph_path()).parent, log_dir=REPO / "outputs" / "bench_logs"):
        classify = node.create_client(FewShotClassify, "/pcm_l2l/classify")
        if not classify.wait_for_service(timeout_sec=180.0):
            raise RuntimeError("/pcm_l2l/classify did not come up")
        time.sleep(1.0)  # discovery settled
        first_rtt, first_node = call(classify, reqs[0])
        rest = [call(classify, reqs[k % len(reqs)]) for k in range(1, args.calls + 1)]
    rtt, server = (np.array(x) for x in zip(*rest, strict=True))
    print(f"classify 5w{args.shots}s first request: in the node {first_node:.1f} ms, round trip {first_rtt:.1f} ms")
    print(f"classify 5w{args.shots}s next {args.calls}: in the node p50 {np.median(server):.1f} ms "
          f"(p90 {np.percentile(server, 90):.1f}), round trip p50 {np.median(rtt):.1f} ms")
    print(f"RATIO first / median: in the node {first_node / np.median(server):.2f}x, "
          f"round trip {first_rtt / np.median(rtt):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
