"""package.xml declares every package the code imports (with its rosdep key), and requirements-ros.txt covers what
rosdep cannot install on the distros' Ubuntu (24.04: Jazzy, Kilted) without any ROS wheel (issue #17, item 6)."""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
#: what is installed with the package and imported at run time
SOURCES = [*sorted((REPO / "pcm_l2l_ros").rglob("*.py")), *sorted((REPO / "launch").glob("*.py"))]

#: THE table: top-level module imported by the code -> its rosdep key in package.xml, or None when no rosdep key
#: resolves on Ubuntu 24.04 (then the module's pip distribution must be in requirements-ros.txt, PIP_ONLY)
ROSDEP_KEY: dict[str, str | None] = {
    "rclpy": "rclpy",
    "rcl_interfaces": "rcl_interfaces",
    "builtin_interfaces": "builtin_interfaces",
    "std_msgs": "std_msgs",
    "sensor_msgs": "sensor_msgs",
    "geometry_msgs": "geometry_msgs",
    "trajectory_msgs": "trajectory_msgs",
    "std_srvs": "std_srvs",
    "lifecycle_msgs": "lifecycle_msgs",
    "diagnostic_msgs": "diagnostic_msgs",
    "action_msgs": "action_msgs",
    "visualization_msgs": "visualization_msgs",
    "pcm_l2l_interfaces": "pcm_l2l_interfaces",
    "ament_index_python": "ament_index_python",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "yaml": "python3-yaml",
    "matplotlib": "python3-matplotlib",
    "tqdm": "python3-tqdm",
    "PIL": "python3-pil",
    "pybullet": "python3-pybullet-pip",
    "torch": None,  # python3-pytorch-pip is end-of-life in rosdep
    "numba": None,  # python3-numba is defined for Ubuntu bionic/focal only
    "threadpoolctl": None,  # no key
}
#: pip distribution of every module installed by pip in a workspace (pip-only ones and the pip rosdep key)
PIP_DIST = {
    "torch": "torch",
    "numba": "numba",
    "threadpoolctl": "threadpoolctl",
    "pybullet": "pybullet",
    "numpy": "numpy",
    "scipy": "scipy",
    "yaml": "pyyaml",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
    "PIL": "pillow",
}
#: Ubuntu 24.04's python3-numpy (what /opt/ros/{jazzy,kilted} are built against)
DISTRO_NUMPY = "1.26.4"


def imported_top_level(path: Path) -> set[str]:
    """Top-level names of the absolute imports in ``path`` (also those inside functions)."""
    mods = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            mods.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module.split(".")[0])
    return mods


def third_party_imports() -> dict[str, list[str]]:
    """module -> files importing it, without the standard library and the package itself."""
    found: dict[str, list[str]] = {}
    local = {p.stem for p in (REPO / "launch").glob("*.py")} | {"pcm_l2l_ros", "__future__"}  # launch/ helpers
    for path in SOURCES:
        for mod in imported_top_level(path) - local:
            if mod not in sys.stdlib_module_names:
                found.setdefault(mod, []).append(str(path.relative_to(REPO)))
    return found


def declared(kinds=("depend", "exec_depend")) -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {e.text.strip() for e in root if e.tag in kinds and e.text}


def requirements_ros() -> list[Requirement]:
    reqs = []
    for line in (REPO / "requirements-ros.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            reqs.append(Requirement(line))
    return reqs


def test_every_import_is_in_the_table():
    imports = third_party_imports()
    assert {"rclpy", "rcl_interfaces", "builtin_interfaces", "PIL", "numpy"} <= set(imports)  # the scan works
    unknown = {m: files for m, files in imports.items() if m not in ROSDEP_KEY}
    assert not unknown, f"imports missing from ROSDEP_KEY (add their rosdep key to package.xml): {unknown}"


def test_package_xml_declares_every_imported_package():
    imports = third_party_imports()
    deps = declared()
    missing = {m: ROSDEP_KEY[m] for m in imports if ROSDEP_KEY.get(m) and ROSDEP_KEY[m] not in deps}
    assert not missing, f"package.xml lacks <exec_depend> for {missing}"


def test_package_xml_declares_nothing_unused():
    used = {ROSDEP_KEY[m] for m in third_party_imports() if ROSDEP_KEY.get(m)}
    assert declared() - used == set(), "declared in package.xml but imported nowhere"


def test_pip_only_modules_are_in_requirements_ros():
    imports = third_party_imports()
    names = {r.name.lower() for r in requirements_ros()}
    pip_only = [m for m in imports if ROSDEP_KEY.get(m, "") is None or ROSDEP_KEY.get(m, "").endswith("-pip")]
    assert {"torch", "numba", "threadpoolctl", "pybullet"} <= set(pip_only)
    missing = [PIP_DIST[m] for m in pip_only if PIP_DIST[m] not in names]
    assert not missing, f"requirements-ros.txt lacks {missing}"
    # and every other pip-installable module the code imports, so the file alone also sets up a venv
    missing = [PIP_DIST[m] for m in imports if m in PIP_DIST and PIP_DIST[m] not in names]
    assert not missing, f"requirements-ros.txt lacks {missing}"


def test_requirements_ros_works_beside_a_system_ros():
    reqs = requirements_ros()
    ros_wheels = [r.name for r in reqs if re.match(r"(ros|rclpy|rosidl|ament|colcon|catkin)", r.name, re.I)]
    assert not ros_wheels, f"ROS packages come from /opt/ros, not from pip: {ros_wheels}"
    numpy = next(r for r in reqs if r.name.lower() == "numpy")
    assert numpy.specifier.contains(DISTRO_NUMPY), f"{numpy} excludes the distro's numpy {DISTRO_NUMPY}"
    assert not numpy.specifier.contains("2.0.0"), "numpy 2 breaks the distro's rclpy/message modules (numpy 1.x ABI)"
    assert all(
        not r.specifier or any(s.operator in (">=", "<", "<=", "!=", "~=") for s in r.specifier) for r in reqs
    ), "ranges, not pins: pip must be able to keep what rosdep installed"
