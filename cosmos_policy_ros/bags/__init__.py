"""Bag I/O: rosbag2 bags (mcap and sqlite3) read and written with the `rosbags` library, and the
synthetic sample episodes the replay tools and tests use. No rclpy: works with only
``pip install '.[tools]'``.

    storage.py         BagError, storage plugins, bag paths and files
    typestore.py       the rosbags typestore: ROS 2 Kilted messages + this package's messages
    reader.py          BagReader, BagInfo, read_messages: topics, windows, embedded definitions
    writer.py          BagWriter: metadata version 9, CDR, RIHS01 type hashes
    arrays.py          recorded ActionChunks and action streams as numpy arrays
    playback.py        a bag's replay schedule and pacing (pure; the ROS player is ros/player.py)
    sample_robots.py   the robots behind the layout presets and their smooth motions
    sample_scene.py    the sample cameras' moving shapes
    sample_episode.py  a sample episode of a preset written as a bag (make-sample)

Layer: a capability over core (conversions, layout, node_config); imported by evaluation,
sim, the ROS player and the console scripts, never the other way round.
"""
