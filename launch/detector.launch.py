"""Launch the dlrmamba RGB + thermal detector as a lifecycle node, configured and activated.

    ros2 launch dlrmamba_ros detector.launch.py \\
        rgb_topic:=/camera/color/image_raw thermal_topic:=/thermal/image_raw

Works on ROS 2 Humble and Jazzy. The file only describes what to start (no side effects):
arguments are declared with descriptions (``ros2 launch ... --show-args``), and the node is
driven to *active* by lifecycle events (``autostart:=false`` leaves it unconfigured for a
lifecycle manager). Autostart is one-shot: after a user's cleanup, configure leaves the node
inactive for the user's own activate.

``dds_profile:=fastdds`` (default) points Fast DDS at config/fastdds_large_images.xml (a 64 MiB
shared-memory segment: large images arrive), unless FASTDDS_DEFAULT_PROFILES_FILE is already
set (``fastdds2``: the same through FASTRTPS_DEFAULT_PROFILES_FILE, for Fast DDS 2);
``cyclonedds`` sets CYCLONEDDS_URI to config/cyclonedds_large_images.xml; ``none`` leaves the
environment alone. The camera driver needs the same profile (docs/ros.md "Large images").
"""

from __future__ import annotations

from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    RegisterEventHandler,
    SetEnvironmentVariable,
)
from launch.conditions import IfCondition, LaunchConfigurationEquals
from launch.events import matches_action
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription

ARGUMENTS = (
    ("namespace", "", "namespace of the node and of its relative topics"),
    ("rgb_topic", "/camera/color/image_raw",
     "RGB input topic (sensor_msgs/Image, or CompressedImage with compressed:=true)"),
    ("thermal_topic", "/thermal/image_raw",
     "thermal input topic (Image mono8/mono16/16UC1/8UC1, or CompressedImage png)"),
    ("compressed", "false", "subscribe both inputs as sensor_msgs/CompressedImage"),
    ("model", "", "ONNX model file; empty = the package default (models/default.json)"),
    ("params_file", PathJoinSubstitution([FindPackageShare("dlrmamba_ros"), "config",
                                          "detector.yaml"]),
     "YAML file with the node's parameters (see config/detector.yaml)"),
    ("use_sim_time", "false", "use /clock (true when playing a rosbag with --clock)"),
    ("log_level", "info", "logging level: debug, info, warn, error"),
    ("autostart", "true", "configure and activate the lifecycle node once at start"),
    ("dds_profile", "fastdds",
     "DDS settings for large images: fastdds (config/fastdds_large_images.xml via "
     "FASTDDS_DEFAULT_PROFILES_FILE, Fast DDS 3 / Kilted), fastdds2 (the same file via "
     "FASTRTPS_DEFAULT_PROFILES_FILE, Humble/Jazzy), cyclonedds (CYCLONEDDS_URI) or none"),
)


def _dds_environment() -> list[SetEnvironmentVariable]:
    """Environment for ``dds_profile``; a profile the user already exported wins."""
    config = PathJoinSubstitution([FindPackageShare("dlrmamba_ros"), "config"])
    fast = PathJoinSubstitution([config, "fastdds_large_images.xml"])
    cyclone = ["file://", PathJoinSubstitution([config, "cyclonedds_large_images.xml"])]
    on_fast = LaunchConfigurationEquals("dds_profile", "fastdds")
    on_fast2 = LaunchConfigurationEquals("dds_profile", "fastdds2")
    on_cyclone = LaunchConfigurationEquals("dds_profile", "cyclonedds")
    return [
        # Fast DDS 3 (Kilted) reads FASTDDS_...; Fast DDS 2 (Humble, Jazzy) FASTRTPS_....
        # Only one is set: Fast DDS 3 reads both and loading the file twice is an error.
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", EnvironmentVariable(
            "FASTDDS_DEFAULT_PROFILES_FILE", default_value=fast), condition=on_fast),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", EnvironmentVariable(
            "FASTRTPS_DEFAULT_PROFILES_FILE", default_value=fast), condition=on_fast2),
        SetEnvironmentVariable("CYCLONEDDS_URI", EnvironmentVariable(
            "CYCLONEDDS_URI", default_value=cyclone), condition=on_cyclone),
    ]


def generate_launch_description() -> LaunchDescription:
    """The launch description: declared arguments, the node, lifecycle autostart events."""
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, default, text in ARGUMENTS]
    node = LifecycleNode(
        package="dlrmamba_ros",
        executable="detector_node",
        name="dlrmamba_detector",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "model": ParameterValue(LaunchConfiguration("model"), value_type=str),
                "rgb_compressed": ParameterValue(LaunchConfiguration("compressed"),
                                                 value_type=bool),
                "thermal_compressed": ParameterValue(LaunchConfiguration("compressed"),
                                                     value_type=bool),
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"),
                                               value_type=bool),
            },
        ],
        remappings=[
            ("rgb/image", LaunchConfiguration("rgb_topic")),
            ("thermal/image", LaunchConfiguration("thermal_topic")),
        ],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    )
    autostart = IfCondition(LaunchConfiguration("autostart"))
    configure = EmitEvent(
        event=ChangeState(lifecycle_node_matcher=matches_action(node),
                          transition_id=Transition.TRANSITION_CONFIGURE),
        condition=autostart,
    )
    activate = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node,
            start_state="configuring",
            goal_state="inactive",
            # One-shot: a later configure (after the user's cleanup) must not auto-activate.
            handle_once=True,
            entities=[EmitEvent(event=ChangeState(
                lifecycle_node_matcher=matches_action(node),
                transition_id=Transition.TRANSITION_ACTIVATE))],
        ),
        condition=autostart,
    )
    return LaunchDescription([*declared, *_dds_environment(), activate, node, configure])
