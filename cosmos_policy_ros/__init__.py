"""cosmos_policy_ros: run NVIDIA Cosmos Policy on robot compute with ROS 2.

One folder per capability, imports pointing down (docs/architecture.md; enforced by
test/test_import_layers.py):

- core, the modules of this package itself: numpy and the standard library only (layout,
  configuration, normalization, sync buffer, control loop, execution, safety, health);
- ``engine/``: the diffusion engine, torch and diffusers, never rclpy;
- ``bags/``, ``evaluation/``, ``sim/``, ``training/``: capabilities over core and engine,
  no rclpy (bag I/O, offline evaluation, the simulated robot, training);
- ``ros/``: the one rclpy layer (the policy node, the sim node, the bag player);
- ``cli/``: the console scripts, which only parse, call and print.
"""

__version__ = '0.1.0'
