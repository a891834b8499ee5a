"""Thin rclpy wrappers: declare parameters from a typed schema, build core objects, wire
topics, timers and services. A node file that grows logic is a smell: that logic belongs
in `bc_robot.core` where it can be tested without a ROS graph. `common` holds the shared
wiring (parameter declaration, QoS profiles, message conversion, clean spin and shutdown).
"""
