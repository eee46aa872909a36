"""``pcm-l2l demo``: the whole product in one scenario, over real ROS 2 (DDS on loopback).

1. The node graph of ``config/demo.yaml`` comes up (sim, controller, vision; one process each, or all in
   this process with ``--mode inprocess``): the same nodes, parameter files and remappings as
   ``ros2 launch pcm_l2l_ros demo.launch.py``.
2. The controller learns a trajectory it has never seen (drawn from a held-out seed) in ONE natural e-prop
   update on the simulated PCM chip (``~/learn_trajectory``).
3. It executes it in PyBullet through the controller's ExecuteLearned action (``~/execute_learned``), showing
   the action's feedback (progress, tracking error) as a log line every 0.5 s; the measured end-effector path
   (``/sim/end_effector``) is compared with the target (error in cm), and the action's result gives the
   controller's own final and median tracking error.
4. The vision service is called with a 5-way 5-shot Omniglot task from the evaluation split; accuracy is
   computed from its answer.
5. A summary is printed and plots are written (target vs executed path; query images with predictions).

Every number is computed live from the nodes' answers and measurements. Exit code 0 when every step
completed, 1 otherwise, 130 when interrupted: Ctrl-C (SIGINT) or SIGTERM stops the demo and every node it
started (each node commands its safe stop and exits), within 2 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcm_l2l_ros.nodes.service_call import RESEND_S, call_service, wait_on_event

log = logging.getLogger("pcm_l2l_ros.demo")

DEMO_SEED = 20261129  # held out: training uses other seeds (families.RESERVED_EVAL_SEEDS)
#: the arm's target shapes (snn/families.FAMILIES, listed here so that --help needs no import of the snn package)
DEMO_SHAPES = ("lemniscate", "ellipse", "polygon", "stroke", "point_to_point", "arc", "brownian")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="reduced budget (fewer queries, shorter waits), < 1 min")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="folder for plots, logs, summary.json")
    p.add_argument("--graph", type=Path, default=None, help="node graph YAML (default: config/demo.yaml)")
    p.add_argument("--mode", choices=("subprocess", "inprocess"), default="subprocess",
                   help="one process per node (as ros2 launch) or all nodes in this process")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help="seed of the unseen trajectory and vision task")
    p.add_argument("--shape", default="lemniscate", choices=DEMO_SHAPES,
                   help="task family of the arm's unseen target (snn/families.py; default: one loop of a figure-eight)")
    p.add_argument("--skip-arm", action="store_true", help="only the vision part")
    p.add_argument("--skip-vision", action="store_true", help="only the arm part")
    p.add_argument("--startup-timeout", type=float, default=120.0, help="s to wait for the nodes to come up")


@dataclass
class DemoResult:
    """What the demo measured (written to summary.json)."""

    arm: dict = field(default_factory=dict)
    vision: dict = field(default_factory=dict)
    ok: bool = True
    errors: list[str] = field(default_factory=list)


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(args: argparse.Namespace) -> int:
    """The demo (see the module docstring); SIGINT/SIGTERM end it early with exit code 130."""
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("[demo] interrupted: the demo and its nodes are stopped", file=sys.stderr, flush=True)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # DDS discovery stays on this machine
    os.environ.setdefault("MPLBACKEND", "Agg")
    import rclpy  # noqa: PLC0415 - rclpy only when the demo runs
    from rclpy.signals import SignalHandlerOptions  # noqa: PLC0415

    from pcm_l2l_ros.graph import default_graph_path, load_graph  # noqa: PLC0415
    from pcm_l2l_ros.nodes.runner import InProcessGraph, SubprocessGraph  # noqa: PLC0415

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    graph_path = args.graph or default_graph_path()
    nodes = load_graph(graph_path)
    if args.skip_arm:
        nodes = [n for n in nodes if "vision" in n.groups]
    if args.skip_vision:
        nodes = [n for n in nodes if "vision" not in n.groups]
    config_dir = Path(graph_path).parent
    print(f"[demo] ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')} "
          f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}; "
          f"starting {', '.join(n.name for n in nodes)} ({args.mode})", flush=True)

    result = DemoResult()
    ctx = rclpy.Context()
    # rclpy's own handlers would only invalidate the context and let the demo run on; ours interrupt it
    rclpy.init(context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    t_start = time.monotonic()
    graph = (SubprocessGraph(nodes, config_dir, log_dir=out / "logs") if args.mode == "subprocess"
             else InProcessGraph(nodes, config_dir))
    try:
        with graph:
            client = DemoClient(ctx)
            try:
                if not args.skip_arm:
                    _step(result, "arm", lambda: arm_scenario(client, args, out, result))
                if not args.skip_vision:
                    _step(result, "vision", lambda: vision_scenario(client, args, out, result))
            finally:
                client.close()
    finally:
        rclpy.try_shutdown(context=ctx)
    result.arm.pop("_paths", None)
    (out / "summary.json").write_text(json.dumps({"arm": result.arm, "vision": result.vision, "ok": result.ok,
                                                  "errors": result.errors}, indent=2, default=float) + "\n")
    print_summary(result, out, time.monotonic() - t_start)
    return 0 if result.ok else 1


def _step(result: DemoResult, name: str, fn) -> None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - reported in the summary, the demo goes on
        log.exception("%s scenario failed", name)
        result.ok = False
        result.errors.append(f"{name}: {type(e).__name__}: {e}")


class DemoClient:
    """The demo's own rclpy node (clients, subscriptions) with an executor spinning in a thread."""

    def __init__(self, ctx):
        import rclpy  # noqa: PLC0415
        from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415

        self.node = rclpy.create_node(f"pcm_l2l_demo_{os.getpid()}", context=ctx)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self._action_clients: list = []
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def wait_for_service(self, client, timeout: float) -> None:
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} did not come up within {timeout:.0f} s")

    def call(self, client, request, timeout: float, idempotent: bool = False):
        """The answer to ``request`` (the executor thread spins); an ``idempotent`` request is sent again after
        a few s of silence (a lost answer: :mod:`pcm_l2l_ros.nodes.service_call`)."""
        res = call_service(client, request, wait_on_event, time.monotonic() + timeout,
                           RESEND_S if idempotent else None)
        if res is None:
            raise TimeoutError(f"{client.srv_name}: no answer within {timeout:.0f} s")
        return res

    def action_client(self, action_type, name: str):
        """An rclpy ActionClient on the demo's node, destroyed by :meth:`close` (``destroy_node`` leaves it)."""
        from rclpy.action import ActionClient  # noqa: PLC0415

        c = ActionClient(self.node, action_type, name)
        self._action_clients.append(c)
        return c

    def wait_future(self, fut, timeout: float, what: str):
        """The result of an rclpy future completed by the spinning thread; TimeoutError(``what``) after
        ``timeout`` s."""
        done = threading.Event()
        fut.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            raise TimeoutError(f"{what} within {timeout:.0f} s")
        return fut.result()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self._thread.join(2.0)
        for c in self._action_clients:
            c.destroy()
        self.node.destroy_node()


# ------------------------------------------------------------------------------------------------------ arm
def pick_unseen_target(seed: int, shape: str = "brownian"):
    """A trajectory of task family ``shape`` (snn/families.py; the paper's Brownian family by default) from the
    held-out stream ``families.family_rng(shape, seed)`` that the arm can execute: inside the joint limits and
    within the URDF velocity limits. Returns (TrajectoryBatch of 1, cfg, kin)."""
    from pcm_l2l_ros.arm.kinematics import TaskKinematics  # noqa: PLC0415
    from pcm_l2l_ros.arm.urdf import load_chain  # noqa: PLC0415
    from pcm_l2l_ros.snn.families import family_rng, sample_family  # noqa: PLC0415
    from pcm_l2l_ros.snn.params import SNNConfig  # noqa: PLC0415

    cfg = SNNConfig()
    kin = TaskKinematics.from_urdf()
    chain = load_chain(None)
    vmax = min(chain.joint(n).velocity for n in ("base_joint", "shoulder"))
    rng = family_rng(shape, seed)
    for _ in range(200):
        batch = sample_family(shape, 16, rng, cfg, kin)
        ok = np.abs(batch.omega).max(axis=(1, 2)) <= vmax
        if ok.any():
            return batch.subset(np.flatnonzero(ok)[:1]), cfg, kin
    raise RuntimeError(f"no {shape} trajectory within the velocity limit {vmax} rad/s found")


def joint_trajectory_msg(q: np.ndarray, omega: np.ndarray | None, dt: float):
    """trajectory_msgs/JointTrajectory of (base_joint, shoulder): positions q (T, 2) in rad at t = dt, 2 dt, ...
    and optional velocities (T, 2) in rad/s."""
    from pcm_l2l_ros.nodes.common import joint_trajectory  # noqa: PLC0415

    return joint_trajectory(["base_joint", "shoulder"], [(k + 1) * dt for k in range(len(q))], q, omega)


def unseen_target_msg(seed: int = DEMO_SEED):
    """The JointTrajectory of :func:`pick_unseen_target` (for the demo, tests and benchmarks)."""
    batch, cfg, _ = pick_unseen_target(seed)
    return joint_trajectory_msg(batch.q[0], batch.omega[0], cfg.arm_time_per_step_s)


def arm_scenario(client: DemoClient, args, out: Path, result: DemoResult) -> None:
    from geometry_msgs.msg import PointStamped  # noqa: PLC0415
    from pcm_l2l_interfaces.action import ExecuteLearned  # noqa: PLC0415
    from pcm_l2l_interfaces.srv import LearnTrajectory  # noqa: PLC0415
    from sensor_msgs.msg import JointState  # noqa: PLC0415
    from std_srvs.srv import Trigger  # noqa: PLC0415

    node, timeout = client.node, args.startup_timeout
    learn = node.create_client(LearnTrajectory, "/controller/learn_trajectory")
    execute = client.action_client(ExecuteLearned, "/controller/execute_learned")
    reset_ctrl = node.create_client(Trigger, "/controller/reset")
    reset_sim = node.create_client(Trigger, "/sim/reset")
    ee_log: list[tuple[float, np.ndarray]] = []
    js_log: list[tuple[float, np.ndarray]] = []
    lock = threading.Lock()

    def on_ee(msg: PointStamped) -> None:
        with lock:
            ee_log.append((msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec,
                           np.array([msg.point.x, msg.point.y, msg.point.z])))

    def on_js(msg: JointState) -> None:
        with lock:
            js_log.append((msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec, np.array(msg.position)))

    node.create_subscription(PointStamped, "/sim/end_effector", on_ee, 50)
    node.create_subscription(JointState, "/joint_states", on_js, 50)
    for c in (learn, reset_ctrl, reset_sim):
        client.wait_for_service(c, timeout)
    if not execute.wait_for_server(timeout_sec=timeout):
        raise TimeoutError(f"action /controller/execute_learned did not come up within {timeout:.0f} s")

    batch, cfg, kin = pick_unseen_target(args.seed, args.shape)
    dt, T = cfg.arm_time_per_step_s, batch.q.shape[1]
    target = joint_trajectory_msg(batch.q[0], batch.omega[0], dt)
    result.arm.update(shape=args.shape)
    print(f"[demo] arm: learning an unseen {args.shape} trajectory ({T} points, {T * dt:.2f} s) in ONE update on "
          "the chip", flush=True)
    res = client.call(learn, LearnTrajectory.Request(target=target, quantize_update=True), timeout=120.0)
    if not res.success:
        raise RuntimeError(f"learn_trajectory refused: {res.message}")
    result.arm.update(loss_before=res.loss_before, loss_after=res.loss_after, devices_written=res.devices_written,
                      update_time_s=res.update_time_s)
    print(f"[demo] arm: loss {res.loss_before:.4f} -> {res.loss_after:.4f} after one update; "
          f"{res.devices_written} PCM devices written; {1e3 * res.update_time_s:.0f} ms", flush=True)

    r = client.call(reset_sim, Trigger.Request(), timeout=10.0, idempotent=True)
    if not r.success:
        raise RuntimeError(f"sim reset failed: {r.message}")
    time.sleep(0.3)  # let the arm settle at home
    with lock:
        ee_log.clear()
        js_log.clear()
    R = ExecuteLearned.Result
    print(f"[demo] arm: executing it on the arm (action /controller/execute_learned, {T * dt:.2f} s)", flush=True)
    for _ in range(20):  # right after the sim's reset the controller may not have seen a fresh /joint_states yet
        t_exec = node.get_clock().now().nanoseconds * 1e-9
        status, r, n_feedback = _execute_goal(client, execute, ExecuteLearned, T * dt + 30.0)
        if r.success or r.code != R.STALE_JOINT_STATES:
            break
        time.sleep(0.1)
    if not r.success:
        raise RuntimeError(f"execute refused or stopped (goal status {status}): {r.message}")
    result.arm.update(action_feedback_messages=n_feedback, action_final_error_cm=100 * r.final_error_m,
                      action_median_error_cm=100 * r.median_error_m, action_duration_s=r.duration_s)
    print(f"[demo] arm: {r.message}: {r.duration_s:.2f} s, {n_feedback} feedback messages; tracking error "
          f"(controller, FK of /joint_states) median {100 * r.median_error_m:.2f} cm, final "
          f"{100 * r.final_error_m:.2f} cm", flush=True)
    time.sleep(0.3 if args.quick else 0.5)   # the last end-effector samples after the end
    with lock:
        ee = list(ee_log)
        js = list(js_log)
    if len(ee) < 10:
        raise RuntimeError(f"only {len(ee)} end-effector samples arrived during execution")
    stamps = np.array([s for s, _ in ee])
    pts = np.stack([p for _, p in ee])
    # The controller starts streaming on the first /joint_states after ~/execute: align the target there.
    t0 = next((s for s, _ in js if s >= t_exec), stamps[0])
    t_target = t0 + dt * np.arange(1, T + 1)
    if t_target[-1] > stamps[-1]:
        raise RuntimeError("execution was not recorded to its end")
    executed = np.stack([np.interp(t_target, stamps, pts[:, i]) for i in range(3)], axis=1)
    err_cm = 100 * np.linalg.norm(executed - batch.xyz[0], axis=1)
    result.arm.update(ee_error_cm_mean=float(err_cm.mean()), ee_error_cm_median=float(np.median(err_cm)),
                      ee_error_cm_max=float(err_cm.max()), ee_error_cm_final=float(err_cm[-1]),
                      path_length_cm=float(100 * np.linalg.norm(np.diff(batch.xyz[0], axis=0), axis=1).sum()))
    result.arm["_paths"] = (batch.xyz[0], executed)
    plot_paths(batch.xyz[0], executed, out / "arm_path.png", result.arm)
    client.call(reset_ctrl, Trigger.Request(), timeout=10.0, idempotent=True)


def _execute_goal(client: DemoClient, execute, ExecuteLearned, timeout: float):
    """One ExecuteLearned goal (time scale 1) with its feedback shown every 0.5 s; returns (status, result, number
    of feedback messages)."""
    shown = {"next": 0.0, "n": 0}

    def on_feedback(msg) -> None:
        fb = msg.feedback
        shown["n"] += 1
        now = time.monotonic()
        if now >= shown["next"]:
            shown["next"] = now + 0.5
            print(f"[demo] arm: executing {100 * fb.progress:5.1f} %  t = {fb.elapsed_s:4.2f} s  tracking error "
                  f"{100 * fb.tracking_error_m:5.2f} cm", flush=True)

    sent = execute.send_goal_async(ExecuteLearned.Goal(time_scale=1.0), feedback_callback=on_feedback)
    handle = client.wait_future(sent, 10.0, "/controller/execute_learned: no goal response")
    if not handle.accepted:
        raise RuntimeError("/controller/execute_learned rejected the goal")
    res = client.wait_future(handle.get_result_async(), timeout, "/controller/execute_learned: the goal did not end")
    return res.status, res.result, shown["n"]


def plot_paths(target: np.ndarray, executed: np.ndarray, path: Path, stats: dict) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (i, j, lab) in zip(axes, [(0, 1, "x-y (top view)"), (0, 2, "x-z (side view)"), (1, 2, "y-z")],
                               strict=True):
        ax.plot(100 * target[:, i], 100 * target[:, j], "k--", lw=2,
                label=f"target: {stats.get('shape', 'trajectory')} (never seen before)")
        ax.plot(100 * executed[:, i], 100 * executed[:, j], "C1", lw=1.5, label="executed in PyBullet")
        ax.plot(100 * target[0, i], 100 * target[0, j], "ko")
        ax.set_xlabel("xyz"[i] + " (cm)")
        ax.set_ylabel("xyz"[j] + " (cm)")
        ax.set_title(lab)
        ax.axis("equal")
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(f"One-shot {stats.get('shape', 'trajectory')} on the PCM chip: loss {stats['loss_before']:.3f} -> "
                 f"{stats['loss_after']:.3f}, "
                 f"end-effector error median {stats['ee_error_cm_median']:.1f} cm")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------- vision
def to_image_msg(raw_white_bg: np.ndarray):
    """A 105x105 Omniglot scan (True = white paper) as a mono8 sensor_msgs/Image (dark ink on white)."""
    from sensor_msgs.msg import Image  # noqa: PLC0415

    a = np.where(np.asarray(raw_white_bg, bool), 255, 0).astype(np.uint8)
    img = Image()
    img.height, img.width = a.shape
    img.encoding = "mono8"
    img.step = a.shape[1]
    img.data = a.tobytes()
    return img


def sample_vision_task(seed: int, ways: int, shots: int, queries: int):
    """Raw 105x105 scans of an N-way K-shot task from the evaluation split (classes without replacement)."""
    from pcm_l2l_ros.paths import shared_dir  # noqa: PLC0415
    from pcm_l2l_ros.vision.omniglot import read_npz_raw  # noqa: PLC0415

    raw, _ = read_npz_raw(shared_dir() / "data" / "omniglot" / "images_evaluation.npz")
    rng = np.random.default_rng(seed)
    chars = rng.choice(raw.shape[0], size=ways, replace=False)
    sx, sy, qx, qy = [], [], [], []
    for label, c in enumerate(chars):
        drawers = rng.choice(raw.shape[1], size=shots + queries, replace=False)
        sx += [raw[c, d] for d in drawers[:shots]]
        sy += [label] * shots
        qx += [raw[c, d] for d in drawers[shots:]]
        qy += [label] * queries
    ps, pq = rng.permutation(len(sy)), rng.permutation(len(qy))
    return ([sx[i] for i in ps], np.array(sy)[ps], [qx[i] for i in pq], np.array(qy)[pq])


def vision_scenario(client: DemoClient, args, out: Path, result: DemoResult) -> None:
    from pcm_l2l_interfaces.srv import FewShotClassify  # noqa: PLC0415

    classify = client.node.create_client(FewShotClassify, "/pcm_l2l/classify")
    client.wait_for_service(classify, args.startup_timeout)
    ways, shots, queries = 5, 5, (2 if args.quick else 5)
    sx, sy, qx, qy = sample_vision_task(args.seed, ways, shots, queries)
    req = FewShotClassify.Request(support_images=[to_image_msg(a) for a in sx], support_labels=[int(v) for v in sy],
                                  query_images=[to_image_msg(a) for a in qx], inner_steps=0, drift_time_s=3600.0)
    print(f"[demo] vision: {ways}-way {shots}-shot task from the evaluation split, {len(qx)} queries, "
          "adapted on the PCM chip at 1 h drift", flush=True)
    t = time.perf_counter()
    res = client.call(classify, req, timeout=120.0, idempotent=True)  # a classification changes nothing
    rtt = time.perf_counter() - t
    if not res.success:
        raise RuntimeError(f"classify refused: {res.message}")
    pred = np.asarray(res.labels)
    acc = float((pred == qy).mean())
    result.vision.update(ways=ways, shots=shots, queries=len(qy), accuracy=acc, devices_written=res.devices_written,
                         adapt_time_s=res.adapt_time_s, total_time_s=res.total_time_s, round_trip_s=rtt)
    plot_queries(qx, qy, pred, out / "vision_queries.png", acc)


def plot_queries(qx, qy, pred, path: Path, acc: float) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    n = len(qx)
    cols = min(n, 10)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (img, y, p) in enumerate(zip(qx, qy, pred, strict=True)):
        ax = axes.ravel()[i]
        ax.imshow(np.asarray(img, float), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"pred {p} / true {y}", fontsize=7, color="green" if p == y else "red")
    fig.suptitle(f"Few-shot Omniglot on the PCM chip: accuracy {100 * acc:.0f}%")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(result: DemoResult, out: Path, wall_s: float) -> None:
    lines = ["", "=" * 78, "pcm_l2l_ros demo summary (computed live from the nodes' answers)"]
    a = result.arm
    if a:
        lines.append(f"  arm    : one update, loss {a.get('loss_before', float('nan')):.4f} -> "
                     f"{a.get('loss_after', float('nan')):.4f}; {a.get('devices_written', 0)} PCM devices written")
        if "ee_error_cm_median" in a:
            lines.append(f"           executed in PyBullet: end-effector error median "
                         f"{a['ee_error_cm_median']:.2f} cm, "
                         f"mean {a['ee_error_cm_mean']:.2f} cm, max {a['ee_error_cm_max']:.2f} cm "
                         f"(path length {a['path_length_cm']:.0f} cm)")
        if "action_median_error_cm" in a:
            lines.append(f"           action /controller/execute_learned: {a['action_feedback_messages']} feedback "
                         f"messages in {a['action_duration_s']:.2f} s; controller's tracking error median "
                         f"{a['action_median_error_cm']:.2f} cm, final {a['action_final_error_cm']:.2f} cm")
    v = result.vision
    if v:
        lines.append(f"  vision : {v['ways']}-way {v['shots']}-shot, accuracy {100 * v['accuracy']:.1f}% on "
                     f"{v['queries']} queries; {v['devices_written']} devices written; "
                     f"round trip {1e3 * v['round_trip_s']:.0f} ms")
    for e in result.errors:
        lines.append(f"  ERROR  : {e}")
    lines.append(f"  plots and summary.json in {out.resolve()}  ({wall_s:.1f} s)")
    lines.append("=" * 78)
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    """``pcm-l2l demo ARGS`` (also ``python -m``): through the CLI, which configures logging."""
    from pcm_l2l_ros.cli import main as cli_main  # noqa: PLC0415

    return cli_main(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
