"""Offline evaluation: a recorded episode through the node's own rules and a policy, no ROS
graph, and what it measures.

    offline_node.py  OfflineNode: the node's ControlLoop ticked on bag time
    evaluate.py      evaluate(): bag -> chunks bag, CSVs, metrics.json, plots (replay eval)
    parity.py        live chunks vs offline chunks of the same observations (the demo)
    metrics.py       chunk actions vs recorded actions, value and latency statistics
    plots.py         actions, value, latency and future-frame figures (matplotlib)
    records.py       the provenance every benchmark record carries (machine, time)

Layer: a capability over core (control_loop, conversions) and bags/; used by sim/ and the
console scripts. The policy comes in as an argument (the Policy protocol), never imported.
"""
