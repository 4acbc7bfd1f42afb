"""Diffusion engine: torch, no rclpy."""
