"""The ROS 2 launch files and `pcm-l2l demo` are built from one graph (config/demo.yaml).

`launch`/`launch_ros` are not installable from PyPI, so the launch files are evaluated against small
recording stand-ins of the launch API (this proves they build the nodes graph.py describes; it does not
prove the launch_ros API is used correctly — that needs a full ROS 2 install). Everything the files name
must exist: executables (console scripts), modules, node classes, parameter files.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest
import yaml

from pcm_l2l_ros.graph import load_graph, ros_args, select

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"


class _LaunchConfiguration:
    values: dict[str, str] = {}

    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return self.values[self.name]


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.fixture
def launch_stubs(monkeypatch):
    mods = {name: types.ModuleType(name) for name in
            ("launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions",
             "ament_index_python", "ament_index_python.packages")}
    mods["launch"].LaunchDescription = lambda entities: list(entities)
    mods["launch.actions"].DeclareLaunchArgument = _Recorded
    mods["launch.actions"].OpaqueFunction = _Recorded
    mods["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    mods["launch_ros.actions"].Node = _Recorded
    mods["ament_index_python.packages"].get_package_share_directory = lambda pkg: str(REPO)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delitem(sys.modules, "_graph_launch", raising=False)
    return mods


def _evaluate(path: Path, **launch_args) -> list[_Recorded]:
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description()
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if "default_value" in e.kwargs}
    assert set(declared) == {"graph", "use_sim", "command_mode"}
    _LaunchConfiguration.values = {**declared, **launch_args}
    opaque = [e for e in entities if "function" in e.kwargs]
    assert len(opaque) == 1
    return opaque[0].kwargs["function"](None, **opaque[0].kwargs["kwargs"])


@pytest.mark.parametrize("launch_file,group", [("demo", None), ("arm", "arm"), ("vision", "vision")])
def test_launch_files_build_the_graph(launch_stubs, launch_file, group):
    nodes = _evaluate(REPO / "launch" / f"{launch_file}.launch.py")
    expected = select(load_graph(CONFIG / "demo.yaml"), group)
    assert [n.kwargs["name"] for n in nodes] == [n.name for n in expected]
    for rec, spec in zip(nodes, expected, strict=True):
        assert rec.kwargs["package"] == "pcm_l2l_ros"
        assert rec.kwargs["executable"] == spec.executable
        assert rec.kwargs["parameters"][0] == str(CONFIG / spec.params_file)
        assert dict(rec.kwargs["remappings"]) == spec.remappings


def test_launch_arguments_apply(launch_stubs):
    nodes = _evaluate(REPO / "launch" / "demo.launch.py", use_sim="false", command_mode="trajectory")
    names = [n.kwargs["name"] for n in nodes]
    assert "sim" not in names and "controller" in names
    ctrl = next(n for n in nodes if n.kwargs["name"] == "controller")
    assert ctrl.kwargs["parameters"][-1]["command_mode"] == "trajectory"


def test_everything_the_graph_names_exists():
    setup_py = (REPO / "setup.py").read_text()
    scripts = {name: module for name, module in re.findall(r'"([\w-]+) = ([\w.]+):main"', setup_py)}
    for n in load_graph(CONFIG / "demo.yaml"):
        assert n.executable in scripts, f"{n.executable} is not a console script"
        assert scripts[n.executable] == n.module, f"{n.executable} runs {scripts[n.executable]}, graph says {n.module}"
        spec = importlib.util.find_spec(n.module)
        assert spec is not None, n.module
        module_name, cls = n.plugin.split(":")
        assert module_name == n.module
        assert re.search(rf"^class {cls}\(", Path(spec.origin).read_text(), re.M), n.plugin
        params = yaml.safe_load((CONFIG / n.params_file).read_text())
        assert list(params) == ["/**"] and "ros__parameters" in params["/**"], n.params_file
        args = ros_args(n, CONFIG)
        assert args[:3] == ["--ros-args", "-r", f"__node:={n.name}"]
        assert str(CONFIG / n.params_file) in args
