"""Training data in the upstream Cosmos Policy formats, from recorded episodes (datasets/).

A capability (no rclpy): robot episode bags, the sim's bags or a LeRobot dataset become the
HDF5 layouts the upstream dataset classes read (LIBERO, RoboCasa, ALOHA; demonstrations and
rollouts with success labels), with their statistics and T5 embedding files; the package's
own trainer reads them back. `cosmos-policy-dataset` (tools/dataset.py) is its command.

    formats.py     what each upstream class reads: names, layouts, the task-from-path rules
    steps.py       one episode bag -> its control steps, by the node's own rules (ControlLoop)
    actions.py     the action of each step: a recorded action stream, or the executed rows of
                   the node's ActionChunks (rollouts)
    outcomes.py    success labels: an /episode_outcome message, --label or a labels CSV
    images.py      the stored image of a camera frame (the node's image pipeline before the crop)
    video.py       MP4 files of a camera (PyAV): the ALOHA class's video storage
    episode_files.py  the HDF5 (+ MP4) files of one episode, written frame by frame
    image_workers.py  the cameras' image work in worker processes (or serially), rows in order
    text.py        the T5 embedding pickle of the task texts
    manifest.py    export.json: what a dataset directory holds, and the journal of an export
    export.py      an export run: one episode at a time, a temporary name, resume or restart
    lerobot.py     LeRobot v2.x / v3 datasets (parquet + MP4) read with pyarrow + PyAV
    check.py       validation of a dataset directory against the upstream rules
    reader.py      exported episodes read back as arrays (the package's trainer)
"""
