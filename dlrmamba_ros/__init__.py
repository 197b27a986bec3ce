"""ROS 2 wrapper around dlrmamba_core: the detector node and message conversions."""
