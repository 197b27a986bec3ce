"""dlrmamba core library: model, training, data, export, runtime (no rclpy)."""

__version__ = "0.1.0"
