"""rclpy adapters over the ROS-free core. The only part of the package that imports rclpy."""
