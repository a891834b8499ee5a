"""bc_robot: behavioral-cloning policies on ROS 2 robot arms, and the HG-DAgger loop around them."""

__version__ = '0.1.0'
