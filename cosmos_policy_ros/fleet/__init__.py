"""One model serving several robots: the policy server's rules, without ROS.

A capability layer (imports core and the Policy protocol; never ros/ or cli/, never rclpy; no
torch: the model comes in as a Policy):

    scheduler.py  which waiting requests run together: the batch formation rules (oldest first,
                  compatible requests only, a maximum batch size, nothing starves)
    engine.py     the engine thread that runs those batches on one shared policy, the per-robot
                  ``PolicyClient`` each robot's ControlLoop talks to, and the server's counters
    config.py     the fleet file: shared model and engine settings, one entry per robot
                  (namespace, parameter files, overrides), each robot's NodeConfig validated

Every per-robot rule (synchronization, replanning, stitching, safety, counters) stays in that
robot's own ``ControlLoop`` (control_loop.py); ros/policy_server.py only wires these pieces to
the graph. docs/fleet.md.
"""
