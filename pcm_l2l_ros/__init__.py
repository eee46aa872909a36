"""pcm_l2l_ros: learning-to-learn on simulated phase-change-memory (PCM) in-memory computing.

The core library (``pcm``, ``snn``, ``vision``, ``arm``) is ROS-free; only ``pcm_l2l_ros.nodes`` imports rclpy.
Reference: Ortner et al., "Learning-to-learn enables rapid learning with phase-change memory-based
in-memory computing", Nat. Commun. 16, 1243 (2025).
"""

__version__ = "0.1.0"
