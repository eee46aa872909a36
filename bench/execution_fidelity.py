"""Execution fidelity through the running node graph: learn N targets per task family with
``/controller/learn_trajectory`` (one update on the chip), execute each with ``/controller/execute`` on the
PyBullet sim node, and compare, on the same targets, the open-loop path of the learned velocities with the
executed path (``/sim/end_effector``), both against the target (``pcm_l2l_ros.snn.fidelity``).

The service does not return the learned velocities, so this process runs a replica of the node's controller
(the same checkpoint, chip preset, drift time, seed and rounding as config/controller.yaml) on the same sequence
of requests; its loss after the update must equal the node's (checked per target, ``replica_ok``), so its
open-loop path is the node's. Reported per target and as medians per family: ``open_loop_cm`` (learning error),
``executed_cm`` (what the user sees), ``tracking_cm`` (execution error, open loop vs executed), end-effector
time-mean distances in cm; ``commands`` (velocity commands the node published; fewer than 249 when
``/joint_states`` messages came late, as the node paces by their stamps) and ``stopped`` (the node's watchdog
stopped the execution).
The sim and controller nodes run as separate processes (config/demo.yaml), this process is the client; DDS stays
on the machine. Measures and prints, never asserts. Run:

    tools/env.sh python bench/execution_fidelity.py --n 3 [--families ellipse,point_to_point] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
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
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid() + 7).randint(120, 200)))

from _spin import spinning_node  # noqa: E402 - bench/_spin.py, next to this script


def main() -> int:
    from pcm_l2l_ros.snn import families

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=3, help="targets per family")
    p.add_argument("--families", default=",".join(families.FAMILIES), help="comma-separated family names")
    p.add_argument("--seed", type=int, default=families.EVAL_SEED, help="held-out seed (families.family_rng)")
    p.add_argument("--watchdog-timeout", type=float, default=None,
                   help="override the controller's watchdog_timeout_s (s; default: config/controller.yaml, 0.05 s). "
                        "On a loaded machine /joint_states arrives late and the watchdog stops executions")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_fidelity", help="CSV and node logs")
    args = p.parse_args()

    with spinning_node("fidelity_bench") as node:
        return _run(args, node)


def _run(args, node) -> int:
    import yaml
    from geometry_msgs.msg import PointStamped
    from pcm_l2l_interfaces.srv import LearnTrajectory
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import Trigger

    from pcm_l2l_ros.demo import joint_trajectory_msg
    from pcm_l2l_ros.graph import default_graph_path, load_graph
    from pcm_l2l_ros.nodes.runner import SubprocessGraph
    from pcm_l2l_ros.nodes.service_call import call_service, wait_on_event
    from pcm_l2l_ros.snn import families, tasks
    from pcm_l2l_ros.snn import fidelity as fd
    from pcm_l2l_ros.snn.controller import OneShotController, TargetError
    from pcm_l2l_ros.snn.params import SNNConfig

    cfg = SNNConfig()
    kin = tasks.default_kinematics()
    dt, T = cfg.arm_time_per_step_s, cfg.T
    names = [f.strip() for f in args.families.split(",") if f.strip()]
    for f in names:
        families.check_family(f)
    logs: dict[str, list] = {"ee": [], "js": [], "cmd": []}
    lock = threading.Lock()

    def stamp(msg) -> float:
        return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec

    def on_ee(msg):
        with lock:
            logs["ee"].append((stamp(msg), np.array([msg.point.x, msg.point.y, msg.point.z])))

    def on_js(msg):
        with lock:
            logs["js"].append((stamp(msg), np.array(msg.position)))

    def on_cmd(msg):
        with lock:
            logs["cmd"].append((time.monotonic(), np.array(msg.data)))

    def call(client, req, timeout=60.0):
        res = call_service(client, req, wait_on_event, time.monotonic() + timeout, resend_s=None)
        if res is None:
            raise TimeoutError(client.srv_name)
        return res

    nodes = [n for n in load_graph() if n.name in ("sim", "controller")]
    conf = yaml.safe_load((Path(default_graph_path()).parent / "controller.yaml").read_text())["/**"]
    pc = conf["ros__parameters"]
    replica = OneShotController.from_checkpoint(pc["checkpoint"] or None, pcm=pc["pcm.enabled"],
                                                pcm_preset=pc["pcm.preset"], drift_time_s=pc["pcm.drift_time_s"],
                                                seed=pc["pcm.seed"], update_rounding=pc["pcm.update_rounding"],
                                                velocity_limits=np.ones(2))
    ctrl_log = args.out / "logs" / "controller.log"

    def watchdog_stops() -> int:
        return ctrl_log.read_text().count("execution stopped") if ctrl_log.exists() else 0

    args.out.mkdir(parents=True, exist_ok=True)
    print(f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} (localhost only); sim + controller as separate processes; "
          f"{len(names)} families x {args.n} targets (seed {args.seed}); load average {os.getloadavg()[0]:.2f}; "
          f"watchdog {'as configured' if args.watchdog_timeout is None else f'{args.watchdog_timeout} s'}")
    rows, n_stopped = [], 0
    live_wait_s = 0.0  # s waited in all for the controller's first fresh /joint_states (start-up only)
    overrides = {} if args.watchdog_timeout is None else {"controller": {"watchdog_timeout_s": args.watchdog_timeout}}
    with SubprocessGraph(nodes, Path(default_graph_path()).parent, overrides=overrides, log_dir=args.out / "logs"):
        node.create_subscription(PointStamped, "/sim/end_effector", on_ee, 100)
        node.create_subscription(JointState, "/joint_states", on_js, 100)
        node.create_subscription(Float64MultiArray, "/forward_velocity_controller/commands", on_cmd, 300)
        learn = node.create_client(LearnTrajectory, "/controller/learn_trajectory")
        execute = node.create_client(Trigger, "/controller/execute")
        reset_sim = node.create_client(Trigger, "/sim/reset")
        for c in (learn, execute, reset_sim):
            if not c.wait_for_service(timeout_sec=120.0):
                raise RuntimeError(f"{c.srv_name} did not come up")
        for fam in names:
            tr = families.sample_family(fam, 4 * args.n if fam == "brownian" else args.n,
                                        families.family_rng(fam, args.seed), cfg, kin)
            # the node refuses targets beyond the arm's 1 rad/s (Brownian targets may be faster): keep the others
            tr = tr.subset(np.flatnonzero(np.abs(tr.omega).max(axis=(1, 2)) <= 1.0)[: args.n])
            for i in range(len(tr)):
                msg = joint_trajectory_msg(tr.q[i], tr.omega[i], dt)
                res = call(learn, LearnTrajectory.Request(target=msg, quantize_update=True), timeout=120.0)
                try:
                    mine = replica.learn(msg)
                except TargetError as e:
                    mine = None
                    print(f"{fam} {i}: the replica refused the target: {e}")
                if not res.success:
                    print(f"{fam} {i}: learn refused: {res.message}")
                    continue
                replica_ok = mine is not None and abs(mine.loss_after - res.loss_after) <= 1e-9 * max(
                    1.0, abs(res.loss_after))
                if not call(reset_sim, Trigger.Request(), timeout=10.0).success:
                    print(f"{fam} {i}: sim reset failed")
                    continue
                time.sleep(0.3)  # at rest at home
                stops = watchdog_stops()
                with lock:
                    for v in logs.values():
                        v.clear()
                t_exec = node.get_clock().now().nanoseconds * 1e-9
                r = call(execute, Trigger.Request(), timeout=10.0)
                waited = 0.0
                # right after start-up the controller may not have its first /joint_states yet (DDS matching):
                # wait for it (at most 10 s in all), as a user would, instead of dropping the target
                while not r.success and "no fresh /joint_states" in r.message and live_wait_s < 10.0:
                    time.sleep(0.5)
                    live_wait_s += 0.5
                    waited += 0.5
                    r = call(execute, Trigger.Request(), timeout=10.0)
                if waited:
                    print(f"{fam} {i}: the controller had no fresh /joint_states yet; executed after {waited:.1f} s")
                if not r.success:
                    print(f"{fam} {i}: execute refused: {r.message}")
                    continue
                time.sleep(T * dt + 1.0)
                with lock:
                    ee, js, cmd = list(logs["ee"]), list(logs["js"]), list(logs["cmd"])
                stopped = watchdog_stops() > stops
                if stopped:
                    n_stopped += 1
                t0 = next((s for s, _ in js if s >= t_exec), ee[0][0])
                try:
                    executed = fd.resample_stream(np.array([s for s, _ in ee]), np.stack([p for _, p in ee]), t0,
                                                  dt, T)
                except ValueError as e:
                    print(f"{fam} {i}: {e}")
                    continue
                open_loop = mine.xyz_after if replica_ok else np.full((T, 3), np.nan)
                m = fd.fidelity_metrics(tr.xyz[i], open_loop, executed)
                row = {"family": fam, "target": i, "loss_before": res.loss_before, "loss_after": res.loss_after,
                       "replica_ok": replica_ok, "commands": sum(1 for _, c in cmd if np.any(c != 0)),
                       "stopped": stopped, **{k: float(v) for k, v in m.items()}}
                rows.append(row)
                print(f"{fam:15s} {i}: loss {res.loss_before:.4f} -> {res.loss_after:.4f}; open loop "
                      f"{row['open_loop_cm']:.2f} cm, executed {row['executed_cm']:.2f} cm, tracking "
                      f"{row['tracking_cm']:.2f} cm; {row['commands']} commands"
                      f"{'; STOPPED by the watchdog' if stopped else ''}"
                      f"{'' if replica_ok else '; replica differs from the node: no open loop'}", flush=True)
    if not rows:
        print("no target was executed")
        return 1
    with open(args.out / "fidelity.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    print(f"\n{'family':15s} {'n':>3s} {'open loop':>10s} {'executed':>9s} {'tracking':>9s}   (median, cm; "
          "executions the watchdog stopped are left out)")
    for fam in [*names, "all"]:
        sel = [r for r in rows if fam in ("all", r["family"]) and not r["stopped"] and r["replica_ok"]]
        if sel:
            med = {k: np.median([r[k] for r in sel]) for k in ("open_loop_cm", "executed_cm", "tracking_cm")}
            print(f"{fam:15s} {len(sel):3d} {med['open_loop_cm']:10.2f} {med['executed_cm']:9.2f} "
                  f"{med['tracking_cm']:9.2f}")
    if n_stopped:
        print(f"{n_stopped} execution(s) stopped by the controller's watchdog (late /joint_states: a loaded machine; "
              "--watchdog-timeout)")
    print(f"wrote {args.out / 'fidelity.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
