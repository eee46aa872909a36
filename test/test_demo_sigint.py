"""Ctrl-C on `pcm-l2l demo`: SIGINT to the demo's process group (what a terminal sends) mid-scenario stops
the demo and every node it started within 2 s (issue #15 item 3); exit code 130, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BOUND_S = 2.0


def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def test_ctrl_c_stops_the_demo_and_its_nodes_within_2s(ros_domain, tmp_path, no_shm_leak):
    out = tmp_path / "demo"
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    demo = subprocess.Popen([sys.executable, "-m", "pcm_l2l_ros.cli", "demo", "--quick", "--out", str(out)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    started = threading.Event()

    def read():
        for line in demo.stdout:
            lines.append(line)
            if "[demo] arm: learning" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(300), "".join(lines)[-3000:]
        time.sleep(0.3)                                   # mid-scenario: learning / executing
        nodes = _children(demo.pid)
        assert len(nodes) >= 3, nodes                     # sim, controller, vision
        t_sig = time.monotonic()
        os.killpg(demo.pid, signal.SIGINT)                # Ctrl-C: the whole foreground process group
        rc = demo.wait(30)
        t_demo = time.monotonic() - t_sig
        while any(Path(f"/proc/{p}").exists() and "zombie" not in _state(p) for p in nodes) \
                and time.monotonic() - t_sig < 30:
            time.sleep(0.01)
        t_all = time.monotonic() - t_sig
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
    reader.join(5)
    text = "".join(lines)
    print(f"\nCtrl-C: demo exited {rc} after {1e3 * t_demo:.0f} ms, all {len(nodes)} nodes gone after "
          f"{1e3 * t_all:.0f} ms")
    assert rc == 130, text[-3000:]
    assert "interrupted" in text and "Traceback" not in text, text[-3000:]
    assert t_demo <= BOUND_S and t_all <= BOUND_S, (t_demo, t_all)
    for log in sorted((out / "logs").glob("*.log")):
        assert "Traceback" not in log.read_text(), f"{log.name}:\n{log.read_text()[-2000:]}"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "zombie"
