"""Real-time check of the simulation (benchmark, not a test).

1. ``ArmSim`` step cost in-process (no ROS): one physics step, and one 100 Hz timer tick's simulation work
   (``time_step_s``-substeps to cover one period + joint state + end-effector read).
2. The sim node in its own process over DDS (localhost discovery, own ROS_DOMAIN_ID): achieved
   ``/joint_states`` rate and inter-arrival jitter (p50/p99/max of |interval - period|, receive side, and
   of the header stamps, publish side) while a velocity profile is streamed at ``--command-rate`` Hz;
   tracking RMSE of the measured joint angles against the integral of the commanded velocities.

Usage: python bench/sim_node_rt.py [--rates 100 500] [--duration 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # hard rule: before rclpy is imported
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(50, 100)))


def _pct(x, q):
    return float(np.percentile(x, q)) if len(x) else float("nan")


def bench_step_cost(n_steps: int = 5000, rate_hz: float = 100.0) -> dict:
    from pcm_l2l_ros.arm.sim import ArmSim

    with ArmSim() as sim:
        dt = sim.time_step_s
        sim.step(100)  # warm-up
        costs = np.empty(n_steps)
        cpu0 = time.thread_time()
        for k in range(n_steps):
            v = [0.5 * np.sin(k * dt), 0.3 * np.cos(k * dt), 0.0, 0.0, 0.0]
            t0 = time.perf_counter()
            sim.command_velocity(v)
            sim.step()
            costs[k] = time.perf_counter() - t0
        cpu_step = (time.thread_time() - cpu0) / n_steps  # CPU time: insensitive to other processes
        sub = max(1, round(1.0 / rate_hz / dt))
        ticks = np.empty(max(1, n_steps // sub))
        for k in range(ticks.size):
            t0 = time.perf_counter()
            sim.step(sub)
            sim.joint_state()
            sim.ee_position()
            ticks[k] = time.perf_counter() - t0
    return {
        "physics_dt_s": dt,
        "step_us_mean": costs.mean() * 1e6,
        "step_us_p50": _pct(costs, 50) * 1e6,
        "step_us_p99": _pct(costs, 99) * 1e6,
        "step_cpu_us_mean": cpu_step * 1e6,
        "real_time_factor": dt / costs.mean(),
        "tick_substeps": sub,
        "tick_us_mean": ticks.mean() * 1e6,
        "tick_us_p99": _pct(ticks, 99) * 1e6,
        "tick_cpu_fraction_at_rate": ticks.mean() * rate_hz,
    }


def bench_node(rate_hz: float, duration_s: float, command_rate_hz: float) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from pcm_l2l_ros.nodes.runner import NodeProcess, node_env

    log = Path(tempfile.gettempdir()) / f"sim_node_rt_{os.getpid()}_{int(rate_hz)}.log"
    log.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "pcm_l2l_ros.nodes.sim_node",
        "--ros-args",
        "-p",
        f"rate_hz:={float(rate_hz)}",
        "-p",
        "command_timeout_s:=0.5",
    ]
    proc = NodeProcess(argv, node_env(), log, cwd=REPO)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("sim_node_rt_probe", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    recv: list[tuple[float, float, np.ndarray]] = []

    def on_js(msg):
        recv.append(
            (time.monotonic(), msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec, np.array(msg.position[:2]))
        )

    node.create_subscription(JointState, "/joint_states", on_js, 100)
    pub = node.create_publisher(Float64MultiArray, "/forward_velocity_controller/commands", 10)
    try:
        deadline = time.monotonic() + 60
        while (len(recv) < 10 or pub.get_subscription_count() == 0) and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.01)
        if len(recv) < 10:
            raise RuntimeError(f"sim node did not come up; log: {log}")
        q0 = recv[-1][2].copy()
        recv.clear()
        cmd_log: list[tuple[float, np.ndarray]] = []
        t_start = time.time()
        next_send = time.monotonic()
        period_c = 1.0 / command_rate_hz
        while (t := time.time() - t_start) < duration_s:
            if time.monotonic() >= next_send:
                v = np.array([0.6 * np.sin(2 * np.pi * t / 4.0), 0.4 * np.sin(2 * np.pi * t / 3.0)])
                msg = Float64MultiArray()
                msg.data = [float(v[0]), float(v[1]), 0.0, 0.0, 0.0]
                pub.publish(msg)
                cmd_log.append((time.time(), v))
                next_send += period_c
            ex.spin_once(timeout_sec=0.0005)
        msg = Float64MultiArray()
        msg.data = [0.0] * 5
        pub.publish(msg)
        cmd_log.append((time.time(), np.zeros(2)))
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.005)
    finally:
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        rc = proc.stop(timeout=10)

    rx = np.array([r[0] for r in recv])
    st = np.array([r[1] for r in recv])
    period = 1.0 / rate_hz
    d_rx, d_st = np.diff(rx), np.diff(st)
    # tracking: integral of the piecewise-constant commands at each state's stamp
    times = np.array([c[0] for c in cmd_log])
    vels = np.array([c[1] for c in cmd_log])
    mask = (st >= times[0]) & (st <= times[-1])
    exp = []
    for s in st[mask]:
        k = np.searchsorted(times, s, side="right")
        seg_end = np.append(times[1:k], s)
        exp.append(q0 + ((seg_end - times[:k])[:, None] * vels[:k]).sum(0))
    meas = np.array([r[2] for r in recv])[mask]
    rmse = np.sqrt(np.mean((meas - np.array(exp)) ** 2, axis=0))
    return {
        "rate_hz_param": rate_hz,
        "messages": len(recv),
        "achieved_rate_hz": (len(rx) - 1) / (rx[-1] - rx[0]),
        "recv_interval_ms_p50": _pct(d_rx, 50) * 1e3,
        "recv_interval_ms_p99": _pct(d_rx, 99) * 1e3,
        "recv_interval_ms_max": float(d_rx.max()) * 1e3,
        "recv_jitter_ms_p99": _pct(np.abs(d_rx - period), 99) * 1e3,
        "stamp_jitter_ms_p99": _pct(np.abs(d_st - period), 99) * 1e3,
        "stamp_interval_ms_max": float(d_st.max()) * 1e3,
        "commands_sent": len(cmd_log),
        "tracking_rmse_rad_base": float(rmse[0]),
        "tracking_rmse_rad_shoulder": float(rmse[1]),
        "node_exit_code": rc,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[100.0], help="sim node rate_hz values (Hz)")
    ap.add_argument("--duration", type=float, default=10.0, help="measurement time per rate (s)")
    ap.add_argument("--command-rate", type=float, default=100.0, help="velocity command rate (Hz)")
    ap.add_argument("--steps", type=int, default=5000, help="physics steps for the in-process cost")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    results = {
        "env": {"ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"], "cpus": os.cpu_count(), "loadavg": os.getloadavg()}
    }
    results["step_cost"] = sc = bench_step_cost(args.steps)
    print(
        f"ArmSim: physics step (dt {sc['physics_dt_s']} s) mean {sc['step_us_mean']:.1f} us, "
        f"p50 {sc['step_us_p50']:.1f} us, p99 {sc['step_us_p99']:.1f} us "
        f"(CPU time {sc['step_cpu_us_mean']:.1f} us) -> "
        f"{sc['real_time_factor']:.0f}x real time; "
        f"100 Hz tick ({sc['tick_substeps']} steps + state + EE) mean {sc['tick_us_mean']:.0f} us, "
        f"p99 {sc['tick_us_p99']:.0f} us = {100 * sc['tick_cpu_fraction_at_rate']:.1f} % of one core"
    )
    results["node"] = []
    for r in args.rates:
        res = bench_node(r, args.duration, args.command_rate)
        results["node"].append(res)
        print(
            f"sim node @ {r:g} Hz for {args.duration:g} s with {args.command_rate:g} Hz velocity commands: "
            f"achieved {res['achieved_rate_hz']:.2f} Hz ({res['messages']} msgs); receive interval "
            f"p50 {res['recv_interval_ms_p50']:.2f} p99 {res['recv_interval_ms_p99']:.2f} "
            f"max {res['recv_interval_ms_max']:.2f} ms; p99 jitter |dt - T| "
            f"receive {res['recv_jitter_ms_p99']:.2f} ms, "
            f"stamps {res['stamp_jitter_ms_p99']:.2f} ms; tracking RMSE base {res['tracking_rmse_rad_base']:.4f} "
            f"shoulder {res['tracking_rmse_rad_shoulder']:.4f} rad; node exit {res['node_exit_code']}"
        )
    print(f"load average during the run: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
