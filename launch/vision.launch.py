"""The few-shot vision service on the simulated PCM chip.

ros2 launch pcm_l2l_ros vision.launch.py [graph:=<yaml>] [use_sim:=true|false] [command_mode:=velocity|trajectory]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _graph_launch import graph_launch_description  # noqa: E402


def generate_launch_description():
    return graph_launch_description(group='vision')
