"""``pcm-l2l classify``, ``pcm-l2l learn``, ``pcm-l2l execute``: thin ROS clients of the running node graph, for a
shell without the ros2 CLI (not on PyPI). The ROS side is ``pcm_l2l_ros.nodes.client``."""
