"""Soak test: the three nodes for a while under mixed valid and invalid requests from two clients, with a sim
restart every ``--restart-every`` s.

The node graph of ``config/demo.yaml`` runs as separate processes (as ``pcm-l2l demo``); this process holds two
independent clients (each its own ROS context, node and executor thread) that call, in random order,
``/pcm_l2l/classify`` (valid 5-way 1-shot Omniglot tasks and invalid requests), ``/controller/learn_trajectory``
(valid and invalid targets), ``/controller/execute`` and ``/sim/reset``. Reported:

* requests served (success), refused (success=false with a reason) and lost (no answer within ``--timeout``);
* crashes: a controller or vision process that exited (the sim is restarted on purpose);
* RSS growth per node from the end of the warm-up (the first ``--warmup`` s) to the end (the sim: per
  incarnation, not comparable across restarts);
* p50 / p99 round-trip latency per request kind, ms.

Exit code 0 when nothing was lost, nothing crashed and every node's RSS grew < 10 %.
Run: ``tools/env.sh python bench/soak.py --duration 600`` (10 min); the test suite runs ``--duration 30``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # DDS stays on this machine
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(120, 200)))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class Client(threading.Thread):
    """One client: its own context, node and executor; calls random requests until ``stop`` is set."""

    def __init__(self, name: str, seed: int, requests: dict, timeout: float, stop: threading.Event):
        super().__init__(name=name, daemon=True)
        import rclpy  # noqa: PLC0415
        from pcm_l2l_interfaces.srv import FewShotClassify, LearnTrajectory  # noqa: PLC0415
        from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415
        from std_srvs.srv import Trigger  # noqa: PLC0415

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(f"soak_{name}", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.clients = {"classify": self.node.create_client(FewShotClassify, "/pcm_l2l/classify"),
                        "learn": self.node.create_client(LearnTrajectory, "/controller/learn_trajectory"),
                        "execute": self.node.create_client(Trigger, "/controller/execute"),
                        "sim_reset": self.node.create_client(Trigger, "/sim/reset")}
        self.requests, self.timeout, self.stop_event = requests, timeout, stop
        self.rng = random.Random(seed)
        self.counts = {"served": 0, "refused": 0, "lost": 0}
        self.lat: dict[str, list[float]] = {}
        self.lost_what: list[str] = []
        self._spin = threading.Thread(target=self.ex.spin, daemon=True)
        self._spin.start()

    def wait_ready(self, timeout: float) -> bool:
        return all(c.wait_for_service(timeout_sec=timeout) for c in self.clients.values())

    def call(self, kind: str, service: str, request) -> None:
        client = self.clients[service]
        done = threading.Event()
        t0 = time.perf_counter()
        fut = client.call_async(request)
        fut.add_done_callback(lambda _f: done.set())
        if not done.wait(self.timeout):
            client.remove_pending_request(fut)
            if service == "sim_reset" or (service == "execute" and not client.service_is_ready()):
                return   # the sim is being restarted on purpose: not a lost request of the nodes under test
            self.counts["lost"] += 1
            self.lost_what.append(kind)
            return
        self.lat.setdefault(kind, []).append(1e3 * (time.perf_counter() - t0))
        self.counts["served" if fut.result().success else "refused"] += 1

    def run(self) -> None:
        kinds = [("classify_valid", 40), ("classify_invalid", 20), ("learn_valid", 15), ("learn_invalid", 15),
                 ("execute", 5), ("sim_reset", 5)]
        names, weights = zip(*kinds, strict=True)
        while not self.stop_event.is_set():
            kind = self.rng.choices(names, weights)[0]
            service = kind.split("_")[0] if kind != "sim_reset" else "sim_reset"
            self.call(kind, service, self.rng.choice(self.requests[kind]))

    def close(self) -> None:
        import rclpy  # noqa: PLC0415

        self.ex.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


def build_requests() -> dict:
    from pcm_l2l_interfaces.srv import FewShotClassify, LearnTrajectory  # noqa: PLC0415
    from sensor_msgs.msg import Image  # noqa: PLC0415
    from std_srvs.srv import Trigger  # noqa: PLC0415
    from trajectory_msgs.msg import JointTrajectory  # noqa: PLC0415

    from pcm_l2l_ros.demo import sample_vision_task, to_image_msg, unseen_target_msg  # noqa: PLC0415

    valid = []
    for seed in range(200, 210):
        sx, sy, qx, _ = sample_vision_task(seed, 5, 1, 2)
        valid.append(FewShotClassify.Request(support_images=[to_image_msg(a) for a in sx],
                                             support_labels=[int(v) for v in sy],
                                             query_images=[to_image_msg(a) for a in qx], drift_time_s=3600.0))
    good = valid[0]

    def bad(**kw):
        r = FewShotClassify.Request(support_images=list(good.support_images), support_labels=list(good.support_labels),
                                    query_images=list(good.query_images), drift_time_s=3600.0)
        for k, v in kw.items():
            setattr(r, k, v)
        return r

    big = Image(height=1024, width=1024, encoding="mono8", step=1024, data=bytes([255]) * 1024 * 1024)
    invalid = [bad(support_labels=[2**31 - 1] * len(good.support_labels)), bad(inner_steps=-(2**31)),
               bad(drift_time_s=float("nan")), bad(query_images=[big] * 9),
               bad(query_images=[Image(height=2**31 - 1, width=8, encoding="mono8", step=8, data=bytes(64))]),
               bad(support_labels=[0]), bad(query_images=[])]
    targets = [unseen_target_msg(s) for s in (11, 12, 13)]
    learn_valid = [LearnTrajectory.Request(target=t, quantize_update=True) for t in targets]
    t = targets[0]
    learn_invalid = [LearnTrajectory.Request(target=JointTrajectory(joint_names=["base_joint", "base_joint"],
                                                                    points=t.points)),
                     LearnTrajectory.Request(target=JointTrajectory(joint_names=t.joint_names,
                                                                    points=list(t.points) * 41)),
                     LearnTrajectory.Request(target=JointTrajectory())]
    return {"classify_valid": valid, "classify_invalid": invalid, "learn_valid": learn_valid,
            "learn_invalid": learn_invalid, "execute": [Trigger.Request()], "sim_reset": [Trigger.Request()]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="s of load (default 600)")
    p.add_argument("--restart-every", type=float, default=120.0, help="s between sim restarts (default 120)")
    p.add_argument("--warmup", type=float, default=None, help="s excluded from the RSS growth (default 10 %%)")
    p.add_argument("--timeout", type=float, default=30.0, help="s without an answer = a lost request")
    p.add_argument("--json", type=Path, default=None, help="write the numbers here too")
    args = p.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else 0.1 * args.duration

    from pcm_l2l_ros.graph import default_graph_path, load_graph  # noqa: PLC0415
    from pcm_l2l_ros.nodes.runner import SubprocessGraph  # noqa: PLC0415

    graph_path = default_graph_path()
    log_dir = Path(os.environ.get("PCM_L2L_SOAK_LOGS", "outputs/soak/logs"))
    graph = SubprocessGraph(load_graph(graph_path), graph_path.parent, log_dir=log_dir)
    stop = threading.Event()
    requests = build_requests()
    print(f"[soak] ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}: {args.duration:.0f} s, 2 clients, sim restart every "
          f"{args.restart_every:.0f} s; logs in {log_dir}", flush=True)
    with graph:
        clients = [Client(n, s, requests, args.timeout, stop) for n, s in (("a", 1), ("b", 2))]
        try:
            if not all(c.wait_ready(120.0) for c in clients):
                print("[soak] the nodes did not come up", file=sys.stderr)
                return 2
            pids0 = {k: p.pid for k, p in graph.procs.items()}
            for c in clients:
                c.start()
            t0 = time.monotonic()
            rss0: dict[str, float] = {}
            restarts = 0
            next_restart = t0 + args.restart_every
            while time.monotonic() - t0 < args.duration:
                time.sleep(0.2)
                now = time.monotonic()
                if not rss0 and now - t0 >= warmup:
                    rss0 = {k: rss_mib(graph.procs[k].pid) for k in ("controller", "vision")}
                if now >= next_restart and now - t0 < args.duration - 5:
                    graph.stop("sim", timeout=5.0)
                    graph.start("sim")
                    restarts += 1
                    next_restart += args.restart_every
                    print(f"[soak] {now - t0:.0f} s: sim restarted", flush=True)
            rss1 = {k: rss_mib(graph.procs[k].pid) for k in ("controller", "vision")}
            crashes = [k for k in ("controller", "vision") if not graph.alive(k) or graph.procs[k].pid != pids0[k]]
        finally:
            stop.set()
            for c in clients:
                c.join(args.timeout + 5)
                c.close()
    counts = {k: sum(c.counts[k] for c in clients) for k in ("served", "refused", "lost")}
    lat: dict[str, list[float]] = {}
    for c in clients:
        for k, v in c.lat.items():
            lat.setdefault(k, []).extend(v)
    growth = {k: 100.0 * (rss1[k] / rss0[k] - 1.0) for k in rss1} if rss0 else {}
    print("=" * 78)
    print(f"soak: {args.duration:.0f} s, 2 clients, {restarts} sim restarts")
    print(f"  requests: served {counts['served']}, refused {counts['refused']}, lost {counts['lost']}"
          + (f" ({sorted(set(sum((c.lost_what for c in clients), [])))})" if counts["lost"] else ""))
    print(f"  crashes : {len(crashes)} {crashes if crashes else ''}")
    for k in sorted(growth):
        print(f"  RSS {k:10s}: {rss0[k]:.0f} -> {rss1[k]:.0f} MiB ({growth[k]:+.1f} %)")
    for k in sorted(lat):
        a = np.asarray(lat[k])
        print(f"  latency {k:16s}: p50 {np.percentile(a, 50):7.1f}  p99 {np.percentile(a, 99):7.1f} ms  (n={a.size})")
    print("=" * 78)
    if args.json:
        args.json.write_text(json.dumps({"duration_s": args.duration, "restarts": restarts, **counts,
                                         "crashes": crashes, "rss_mib_start": rss0, "rss_mib_end": rss1,
                                         "rss_growth_pct": growth,
                                         "latency_ms": {k: {"p50": float(np.percentile(v, 50)),
                                                            "p99": float(np.percentile(v, 99)), "n": len(v)}
                                                        for k, v in lat.items()}}, indent=2) + "\n")
    ok = counts["lost"] == 0 and not crashes and all(g < 10.0 for g in growth.values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
