"""Shared body of the launch files: turn config/demo.yaml (pcm_l2l_ros.graph) into launch_ros Nodes.

Launch arguments: ``graph`` (graph YAML), ``use_sim`` (start the PyBullet sim node; false when a real arm
driver publishes /joint_states), ``command_mode`` (controller output: ``velocity`` or ``trajectory``).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from pcm_l2l_ros.graph import load_graph, select

PACKAGE = "pcm_l2l_ros"


def _nodes(context, group):
    share = get_package_share_directory(PACKAGE)
    graph_path = LaunchConfiguration("graph").perform(context)
    use_sim = LaunchConfiguration("use_sim").perform(context).lower() in ("1", "true", "yes")
    command_mode = LaunchConfiguration("command_mode").perform(context)
    config_dir = os.path.join(share, "config")
    actions = []
    for n in select(load_graph(graph_path), group):
        if n.name == "sim" and not use_sim:
            continue
        params = []
        if n.params_file:
            params.append(os.path.join(config_dir, n.params_file))
        overrides = dict(n.parameters)
        if n.name == "controller":
            overrides["command_mode"] = command_mode
        if overrides:
            params.append(overrides)
        actions.append(Node(package=PACKAGE, executable=n.executable, name=n.name, parameters=params,
                            remappings=list(n.remappings.items()), output="screen"))
    return actions


def graph_launch_description(group=None):
    default_graph = os.path.join(get_package_share_directory(PACKAGE), "config", "demo.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("graph", default_value=default_graph, description="node graph YAML"),
        DeclareLaunchArgument("use_sim", default_value="true", description="start the PyBullet sim node"),
        DeclareLaunchArgument("command_mode", default_value="velocity",
                              description="controller output: velocity | trajectory"),
        OpaqueFunction(function=_nodes, kwargs={"group": group}),
    ])
