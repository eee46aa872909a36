"""Round-trip latency of the learning services over DDS (separate processes, loopback only).

* ``/pcm_l2l/classify``: 5-way 1-shot and 5-way 5-shot Omniglot tasks (5 queries per class), adapted on the
  simulated PCM chip at 1 h drift; ``--calls`` calls each (default 200).
* ``/controller/learn_trajectory``: one natural e-prop update on the chip per call.

``--rounds R`` repeats the classify measurements R times (this machine's speed drifts by tens of percent
over minutes; the spread between rounds shows it).

The vision and controller nodes run as their own processes (as in the demo); this process is the client.
Reported: p50 / p90 / p99 / max in ms, plus the nodes' own ``total_time_s`` (so transport and compute can be
told apart). Run:  tools/env.sh python bench/service_latency.py [--calls 200]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # DDS stays on this machine
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(120, 200)))

from _spin import spinning_node, timed_call  # noqa: E402 - bench/_spin.py, next to this script


def stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    return (
        f"p50 {np.percentile(a, 50):7.1f}  p90 {np.percentile(a, 90):7.1f}  p99 {np.percentile(a, 99):7.1f}  "
        f"max {a.max():7.1f} ms  (n={a.size})"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--learn-calls", type=int, default=None, help="default: --calls; 0 = classify only")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the classify measurements (the spread between rounds shows how noisy the machine is)",
    )
    args = p.parse_args()

    learn_calls = args.calls if args.learn_calls is None else args.learn_calls
    wanted = ("vision", "controller") if learn_calls else ("vision",)
    with spinning_node("latency_bench") as node:
        return _run(args, node, learn_calls, wanted)


def _run(args, node, learn_calls: int, wanted) -> int:
    from pcm_l2l_interfaces.srv import FewShotClassify, LearnTrajectory

    from pcm_l2l_ros.demo import sample_vision_task, to_image_msg, unseen_target_msg
    from pcm_l2l_ros.graph import default_graph_path, load_graph
    from pcm_l2l_ros.nodes.runner import SubprocessGraph

    nodes = [n for n in load_graph() if n.name in wanted]

    call = timed_call

    print(
        f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} (localhost only); nodes as separate processes; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start (other processes distort this)"
    )
    with SubprocessGraph(nodes, Path(default_graph_path()).parent, log_dir=REPO / "outputs" / "bench_logs"):
        classify = node.create_client(FewShotClassify, "/pcm_l2l/classify")
        learn = node.create_client(LearnTrajectory, "/controller/learn_trajectory")
        for c in (classify, learn) if learn_calls else (classify,):
            if not c.wait_for_service(timeout_sec=120.0):
                raise RuntimeError(f"{c.srv_name} did not come up")
        pools = {}
        for shots in (1, 5):
            pools[shots] = []
            for i in range(8):  # a pool of distinct tasks, cycled
                sx, sy, qx, _ = sample_vision_task(1000 + i, 5, shots, 5)
                pools[shots].append(
                    FewShotClassify.Request(
                        support_images=[to_image_msg(a) for a in sx],
                        support_labels=[int(v) for v in sy],
                        query_images=[to_image_msg(a) for a in qx],
                        inner_steps=0,
                        drift_time_s=3600.0,
                    )
                )
            for r in pools[shots][:3]:
                call(classify, r)  # warm-up
        for rnd in range(args.rounds):
            tag = f" (round {rnd + 1}/{args.rounds})" if args.rounds > 1 else ""
            for shots, reqs in pools.items():
                rtt, server = [], []
                for k in range(args.calls):
                    ms, res = call(classify, reqs[k % len(reqs)])
                    assert res.success, res.message
                    rtt.append(ms)
                    server.append(res.total_time_s * 1e3)
                print(f"classify 5w{shots}s  round trip: {stats(rtt)}{tag}")
                print(f"classify 5w{shots}s  in the node: {stats(server)}{tag}", flush=True)
        if not learn_calls:
            return 0
        target = unseen_target_msg(11)
        call(learn, LearnTrajectory.Request(target=target, quantize_update=True))
        rtt, server = [], []
        for _ in range(learn_calls):
            ms, res = call(learn, LearnTrajectory.Request(target=target, quantize_update=True))
            assert res.success, res.message
            rtt.append(ms)
            server.append(res.update_time_s * 1e3)
        print(f"learn_trajectory round trip: {stats(rtt)}")
        print(f"learn_trajectory in the node: {stats(server)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
