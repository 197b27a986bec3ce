"""Rosbag tools: synthetic bags, offline bag evaluation, replay helpers (torch-free).

Modules:

* :mod:`.typestore`: the rosbags typestore (ROS 2 Kilted) with ``vision_msgs`` registered.
* :mod:`.messages`: numpy <-> ``sensor_msgs``/``vision_msgs`` message objects.
* :mod:`.reader`: open a rosbag2 (sqlite3 or mcap) with errors that name the problem.
* :mod:`.synth`: write a synthetic RGB + thermal rosbag with ground truth.
* :mod:`.evaluate`: ``bag-eval``: pair, detect, write detections, metrics, video, report.
* :mod:`.playback`: the timing schedule a live player follows (the rclpy part lives in
  ``dlrmamba_ros.bag_player``).

Nothing here imports torch or rclpy.
"""
