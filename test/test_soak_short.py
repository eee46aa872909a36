"""The soak's short version (issue #15 item 10): bench/soak.py for 30 s — the three nodes, two clients with
mixed valid and invalid requests, a sim restart every 10 s — loses no request, crashes no node, and the nodes'
RSS grows < 10 %. The 10-minute run is not part of the suite (README: its numbers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_soak_30s(ros_domain, tmp_path, no_shm_leak):
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PCM_L2L_SOAK_LOGS=str(tmp_path / "logs"),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "soak.py"), "--duration", "30", "--restart-every", "10",
                        "--json", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    print(r.stdout[-2500:])
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    s = json.loads(out.read_text())
    assert s["lost"] == 0 and s["crashes"] == [] and s["restarts"] == 2
    assert s["served"] > 50 and s["refused"] > 50            # both kinds really exercised
    assert all(g < 10.0 for g in s["rss_growth_pct"].values()), s["rss_growth_pct"]
