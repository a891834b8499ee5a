"""Pure logic shared by every node and by the learning pipeline.

Everything here is plain Python and numpy and never imports rclpy or torch, so it is unit
tested without a ROS graph: image conversion and observation preprocessing, pose math,
the typed parameter schema nodes declare from, stamp synchronization, chunk executors and
the inference-delay estimator, the bridge's safety gate and interpolation, teleop mapping,
and the authority/episode state machines. A node that needs logic calls it from here.
"""
