"""pcm_l2l_ros.arm: the ED-Scorbot-like arm without ROS.

* ``kinematics``: URDF parsing (``load_chain``), forward kinematics (``fk``, ``ee_position``) and the SNN
  task's 2-DOF kinematics (``TaskKinematics.from_urdf()`` / ``TaskKinematics.paper()``);
* ``sim``: the PyBullet simulation (``ArmSim``) and trajectory interpolation (``TrajectoryPlan``).

Nothing here imports rclpy; ``sim`` imports pybullet only when an ``ArmSim`` is created.
"""
