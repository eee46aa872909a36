"""Shared body of the launch files: turn config/demo.yaml (pcm_l2l_ros.graph) into launch_ros Nodes.

Launch arguments: ``graph`` (graph YAML), ``use_sim`` (start the PyBullet sim node; false when a real arm
driver publishes /joint_states), ``command_mode`` (controller output: ``velocity`` or ``trajectory``).

A node with ``lifecycle: true`` in the graph is a launch_ros ``LifecycleNode``: the launch emits its
``configure`` transition at start and its ``activate`` transition when it reaches ``inactive`` (the same
sequence ``pcm-l2l demo`` drives through the runner).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

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
        kwargs = dict(package=PACKAGE, executable=n.executable, name=n.name, parameters=params,
                      remappings=list(n.remappings.items()), output="screen")
        if n.lifecycle:
            actions += _managed(LifecycleNode(namespace="", **kwargs))
        else:
            actions.append(Node(**kwargs))
    return actions


def _transition(node, transition_id):
    """The event that asks the lifecycle node ``node`` (a launch action) for one transition."""
    return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))


def _managed(node):
    """A lifecycle node and what brings it up: activate once it is inactive after configuring, then configure."""
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        entities=[_transition(node, Transition.TRANSITION_ACTIVATE)]))
    return [activate, node, _transition(node, Transition.TRANSITION_CONFIGURE)]


def graph_launch_description(group=None):
    default_graph = os.path.join(get_package_share_directory(PACKAGE), "config", "demo.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("graph", default_value=default_graph, description="node graph YAML"),
        DeclareLaunchArgument("use_sim", default_value="true", description="start the PyBullet sim node"),
        DeclareLaunchArgument("command_mode", default_value="velocity",
                              description="controller output: velocity | trajectory"),
        OpaqueFunction(function=_nodes, kwargs={"group": group}),
    ])
