"""The console scripts (resource/console_scripts; ``entry_points.py`` runs each): one module per
script that parses its arguments, calls into a capability and prints. Nothing here holds a rule
a test needs: the rules live in the capability folders below (bags/, evaluation/, sim/,
training/, engine/) and in ros/.

    convert.py    cosmos-policy-convert    released files -> model directory (engine/conversion)
    synthetic.py  cosmos-policy-synthetic  synthetic released-format files (engine)
    replay.py     cosmos-policy-replay     info, make-sample, play (ros/player), eval (evaluation)
    train.py      cosmos-policy-train      training/
    sim.py        cosmos-policy-sim        run, eval, demo, stitching (sim/, ros/sim_node)
    demo.py       scripts/demo.sh part 2   replay + parity (ros/live_replay, evaluation/parity)
    arguments.py  the help formatter every parser uses (each option's help shows its default)

Layer: the top; imports anything below, nothing imports it (but entry_points, by name).
"""
