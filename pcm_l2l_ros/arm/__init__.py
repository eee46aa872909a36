"""pcm_l2l_ros.arm: the ED-Scorbot-like arm without ROS.

* ``urdf``: URDF parsing (``load_chain``) and forward kinematics (``fk``, ``ee_position``) of the arm model;
* ``kinematics``: the SNN task's 2-DOF kinematics (``TaskKinematics.from_urdf()`` / ``TaskKinematics.paper()``)
  and the paper's task joint limits;
* ``sim``: the PyBullet simulation (``ArmSim``) and trajectory interpolation (``TrajectoryPlan``).

Nothing here imports rclpy; ``sim`` imports pybullet only when an ``ArmSim`` is created.
"""
