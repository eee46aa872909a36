"""One description of the node graph, read by the ROS 2 launch files AND by ``pcm-l2l demo``.

``config/demo.yaml`` lists the nodes: name, console-script ``executable``, python ``module``, node
``plugin`` class (for in-process runs), a ROS parameter file under ``config/``, parameter overrides,
remappings, the launch ``groups`` (``arm``, ``vision``) a node belongs to, and ``lifecycle: true`` for a
managed node (``rclpy.lifecycle.LifecycleNode``): the launch files start it as a launch_ros ``LifecycleNode``
and emit configure, then activate; the runner (``nodes/runner.py``) drives the same transitions. Because both
front ends build their command lines from here, they cannot drift apart (test/test_launch_graph.py checks it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .paths import package_share_file


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph."""

    name: str
    executable: str
    module: str
    plugin: str
    params_file: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    lifecycle: bool = False   # a managed node: brought up to active with configure + activate

    def params_path(self, config_dir: Path) -> Path | None:
        return (config_dir / self.params_file) if self.params_file else None


REQUIRED = ("name", "executable", "module", "plugin")


def default_graph_path() -> Path:
    return package_share_file("config", "demo.yaml")


def load_graph(path: str | Path | None = None) -> list[NodeSpec]:
    """Parse a graph YAML; raises ``ValueError`` with the offending entry on a malformed file."""
    path = Path(path) if path else default_graph_path()
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or not isinstance(spec.get("nodes"), list):
        raise ValueError(f"{path}: expected a mapping with a 'nodes' list")
    nodes = []
    for i, n in enumerate(spec["nodes"]):
        missing = [k for k in REQUIRED if not n.get(k)]
        if missing:
            raise ValueError(f"{path}: node #{i} lacks {missing}")
        if not isinstance(n.get("lifecycle", False), bool):
            raise ValueError(f"{path}: node #{i}: lifecycle must be true or false, got {n['lifecycle']!r}")
        nodes.append(NodeSpec(
            name=n["name"], executable=n["executable"], module=n["module"], plugin=n["plugin"],
            params_file=n.get("params_file"), parameters=dict(n.get("parameters") or {}),
            remappings=dict(n.get("remappings") or {}), groups=tuple(n.get("groups") or ()),
            lifecycle=n.get("lifecycle", False),
        ))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate node names {names}")
    return nodes


def select(nodes: list[NodeSpec], group: str | None) -> list[NodeSpec]:
    """The nodes of one launch group (all nodes for ``None``)."""
    return [n for n in nodes if group is None or group in n.groups]


def ros_args(node: NodeSpec, config_dir: Path, overrides: dict[str, Any] | None = None) -> list[str]:
    """Command-line ``--ros-args`` for a node: the same name, parameter file, parameters and remappings
    that launch_ros passes. Values are JSON, which is valid YAML flow syntax for ``-p``."""
    args = ["--ros-args", "-r", f"__node:={node.name}"]
    params_path = node.params_path(config_dir)
    if params_path is not None:
        args += ["--params-file", str(params_path)]
    for k, v in node.remappings.items():
        args += ["-r", f"{k}:={v}"]
    for k, v in {**node.parameters, **(overrides or {})}.items():
        args += ["-p", f"{k}:={json.dumps(v)}"]
    return args
