"""The core library stays ROS-free; the package declares what it installs."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_core_imports_without_rclpy():
    code = (
        "import sys; sys.modules['rclpy'] = None\n"  # any 'import rclpy' now raises ImportError
        "import pcm_l2l_ros, pcm_l2l_ros.pcm, pcm_l2l_ros.snn, pcm_l2l_ros.vision, pcm_l2l_ros.arm\n"
        "import pcm_l2l_ros.checkpoint, pcm_l2l_ros.graph, pcm_l2l_ros.cli\n"
        "assert 'rclpy' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_package_xml_declares_runtime_dependencies():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    deps = {e.text for e in root if e.tag in ("depend", "exec_depend")}
    for d in ("rclpy", "std_msgs", "sensor_msgs", "trajectory_msgs", "std_srvs", "pcm_l2l_interfaces",
              "python3-numpy"):
        assert d in deps, d
    assert root.find("export/build_type").text == "ament_python"


def test_console_scripts_point_at_existing_functions():
    import importlib
    import re

    text = (REPO / "setup.py").read_text()
    for name, target in re.findall(r'"([\w-]+) = ([\w.]+:\w+)"', text):
        module, func = target.split(":")
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{name}: module {module} missing"
        assert re.search(rf"^def {func}\(", Path(spec.origin).read_text(), re.M), f"{name}: {target} missing"
