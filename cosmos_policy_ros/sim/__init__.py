"""A simulated robot for closed-loop tests: a planar 3-joint arm reaching one of two targets.

numpy + stdlib + Pillow only (the core layer): no torch, no rclpy.
"""
