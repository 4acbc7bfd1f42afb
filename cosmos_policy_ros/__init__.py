"""cosmos_policy_ros: run NVIDIA Cosmos Policy on robot compute with ROS 2.

Import layers (enforced by test/test_import_layers.py):
- core modules in this package: numpy and the standard library only;
- ``cosmos_policy_ros.engine``: torch and diffusers, never rclpy;
- ``cosmos_policy_ros.ros``: rclpy and message types;
- ``cosmos_policy_ros.tools``: console scripts (replay, evaluation, conversion).
"""

__version__ = '0.1.0'
