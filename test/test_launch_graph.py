"""The ROS 2 launch files and `pcm-l2l demo` are built from one graph (config/demo.yaml).

`launch`/`launch_ros` are not installable from PyPI, so the launch files are evaluated against small
recording stand-ins of the launch API (this proves they build the nodes graph.py describes; it does not
prove the launch_ros API is used correctly — that needs a full ROS 2 install). Everything the files name
must exist: executables (console scripts), modules, node classes, parameter files. A node with
``lifecycle: true`` must be a launch_ros ``LifecycleNode`` that the launch configures at start and activates
once it is inactive (lifecycle_msgs' real transition ids), and its class must be an rclpy ``LifecycleNode``.
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


class _Node(_Recorded):
    pass


class _LifecycleNode(_Recorded):
    pass


class _Matcher:
    """What ``launch.events.matches_action(action)`` returns: it matches that action only."""

    def __init__(self, action):
        self.action = action


@pytest.fixture
def launch_stubs(monkeypatch):
    mods = {name: types.ModuleType(name) for name in
            ("launch", "launch.actions", "launch.events", "launch.substitutions", "launch_ros", "launch_ros.actions",
             "launch_ros.event_handlers", "launch_ros.events", "launch_ros.events.lifecycle",
             "ament_index_python", "ament_index_python.packages")}
    mods["launch"].LaunchDescription = lambda entities: list(entities)
    for name in ("DeclareLaunchArgument", "OpaqueFunction", "EmitEvent", "RegisterEventHandler"):
        setattr(mods["launch.actions"], name, type(name, (_Recorded,), {}))
    mods["launch.events"].matches_action = _Matcher
    mods["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    mods["launch_ros.actions"].Node = _Node
    mods["launch_ros.actions"].LifecycleNode = _LifecycleNode
    mods["launch_ros.event_handlers"].OnStateTransition = type("OnStateTransition", (_Recorded,), {})
    mods["launch_ros.events.lifecycle"].ChangeState = type("ChangeState", (_Recorded,), {})
    mods["ament_index_python.packages"].get_package_share_directory = lambda pkg: str(REPO)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delitem(sys.modules, "_graph_launch", raising=False)
    return mods


def _evaluate_all(path: Path, **launch_args) -> list[_Recorded]:
    """Every action the launch file's OpaqueFunction returns (nodes, event emitters, event handlers)."""
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


def _evaluate(path: Path, **launch_args) -> list[_Recorded]:
    """The node actions (plain and lifecycle) the launch file starts, in order."""
    return [a for a in _evaluate_all(path, **launch_args) if isinstance(a, (_Node, _LifecycleNode))]


def _transition_events(actions, node) -> list[int]:
    """Transition ids of the ChangeState events emitted at launch for ``node`` (not inside a handler)."""
    return [a.kwargs["event"].kwargs["transition_id"] for a in actions if type(a).__name__ == "EmitEvent"
            and a.kwargs["event"].kwargs["lifecycle_node_matcher"].action is node]


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
        assert isinstance(rec, _LifecycleNode if spec.lifecycle else _Node), spec.name


def test_managed_nodes_are_configured_then_activated(launch_stubs):
    from lifecycle_msgs.msg import Transition

    actions = _evaluate_all(REPO / "launch" / "demo.launch.py")
    managed = [a for a in actions if isinstance(a, _LifecycleNode)]
    assert [a.kwargs["name"] for a in managed] == [n.name for n in load_graph(CONFIG / "demo.yaml") if n.lifecycle]
    assert managed, "config/demo.yaml has no lifecycle node"
    for node in managed:
        assert node.kwargs["namespace"] == ""                      # launch_ros' LifecycleNode requires one
        assert _transition_events(actions, node) == [Transition.TRANSITION_CONFIGURE]   # configure at start ...
        handlers = [a.args[0] if a.args else a.kwargs["event_handler"] for a in actions
                    if type(a).__name__ == "RegisterEventHandler"]
        mine = [h for h in handlers if h.kwargs["target_lifecycle_node"] is node]
        assert len(mine) == 1, mine                                 # ... activate once it is inactive
        h = mine[0].kwargs
        assert (h["start_state"], h["goal_state"]) == ("configuring", "inactive")
        assert [e.kwargs["event"].kwargs["transition_id"] for e in h["entities"]] == [Transition.TRANSITION_ACTIVATE]
        assert all(e.kwargs["event"].kwargs["lifecycle_node_matcher"].action is node for e in h["entities"])
        # the handler is registered before the node starts, so the transition event cannot be missed
        assert actions.index(next(a for a in actions if type(a).__name__ == "RegisterEventHandler"
                                  and (a.args[0] if a.args else a.kwargs["event_handler"]) is mine[0])) \
            < actions.index(node)


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
        if importlib.util.find_spec("rclpy") is not None:   # the graph's lifecycle flag matches the class
            from rclpy.lifecycle import LifecycleNode

            node_cls = getattr(importlib.import_module(module_name), cls)
            assert issubclass(node_cls, LifecycleNode) == n.lifecycle, (n.name, n.lifecycle)
        params = yaml.safe_load((CONFIG / n.params_file).read_text())
        assert list(params) == ["/**"] and "ros__parameters" in params["/**"], n.params_file
        args = ros_args(n, CONFIG)
        assert args[:3] == ["--ros-args", "-r", f"__node:={n.name}"]
        assert str(CONFIG / n.params_file) in args
