"""What each upstream dataset class reads: the three formats as data (datasets/, stdlib only).

Facts from NVlabs/cosmos-policy @ 18a2acc (shared/reference/cosmos-policy-datasets.md; cites
are its aliases, L = datasets/libero_dataset.py, R = robocasa_dataset.py, A = aloha_dataset.py):

* Every ``*.h5/*.hdf5/*.he5`` below ``data_dir`` is parsed as a demonstration file (U:47-50);
  ALOHA only those with a path component exactly ``train`` (``val`` for the validation split,
  A:226). So held-out LIBERO/RoboCasa demonstrations and all rollouts live outside it.
* LIBERO (L:171-234): ``data/demo_<int>/obs/{agentview_rgb,eye_in_hand_rgb}[_jpeg]``,
  ``actions``, ``robot_states``; the task is the file name: drop ``_demo.hdf5``, split on ``_``,
  keep the words after the last word containing ``SCENE`` (``libero_command``).
* RoboCasa (R:173-269): ``data/demo_<int>/obs/robot0_{agentview_left,agentview_right,
  eye_in_hand}_rgb[_jpeg]``, ``actions`` (first 7 columns used), ``robot_states``; the task is
  the group's attribute ``task_description``.
* ALOHA (A:249-361): one file per episode, ``action``, ``observations/qpos``, the cameras raw in
  ``observations/images/{cam_high,cam_left_wrist,cam_right_wrist}`` or as MP4 files named in
  ``observations/video_paths/<cam>`` (relative to the file's folder); the task is the folder
  two levels up, matched against six hard-coded tasks (A:310-325, ``aloha_command``): any other
  task needs the one-line upstream change ``ALOHA_UPSTREAM_CHANGE``.
* Rollouts (L:270-308, R:312-350, A:441-570): one file per episode, datasets at the root:
  LIBERO/RoboCasa ``primary_images`` (+ ``secondary_images``), ``wrist_images`` [``_jpeg``],
  ``actions``, ``proprio``; ALOHA as its demonstrations; attributes ``task_description`` and
  ``success`` (ALOHA: optional float ``success_score``).

Camera names are the node's (config/libero.yaml, robocasa.yaml, aloha.yaml): ``primary`` is the
third-person camera, ``wrist`` / ``left_wrist`` / ``right_wrist`` the wrist cameras.
"""
from dataclasses import dataclass
from typing import Mapping, Tuple

FORMAT_NAMES = ('libero', 'robocasa', 'aloha')
RAW, JPEG, MP4 = 'raw', 'jpeg', 'mp4'  # image storages
JPEG_SUFFIX = '_jpeg'  # a camera's dataset name + this: JPEG bytes instead of raw frames
HDF5_SUFFIXES = ('.h5', '.hdf5', '.he5')  # what the upstream classes parse (U:47-50)
DEMO_GROUP = 'data/demo_0'  # LIBERO/RoboCasa: the one demonstration of an exported file
LIBERO_SCENE_WORD = 'SCENE'  # the LIBERO command starts after the last word containing it
LIBERO_SUFFIX = '_demo.hdf5'  # LIBERO drops these 10 characters before parsing the name
# A:310-325: the folder two levels above an ALOHA demonstration (the task folder) -> command.
ALOHA_TASKS = (('fold_shirt', 'fold_shirt'), ('candies_in_bowl', 'put_candies_in_bowl'),
               ('candy_in_bag', 'put_candy_in_bag'), ('flatten_shirt', 'flatten_shirt'),
               ('brown_chicken_wing_on_plate', 'put_brown_chicken_wing_on_plate'),
               ('purple_eggplant_on_plate', 'put_purple_eggplant_on_plate'))
ALOHA_UPSTREAM_CHANGE = (
    'cosmos_policy/datasets/aloha_dataset.py line 324: replace '
    '`raise ValueError(f"Unknown command: {raw_file_string}")` by `pass` (the task folder '
    'name, `_` read as spaces, becomes the command)')


@dataclass(frozen=True)
class DatasetFormat:
    """One upstream format: dataset names per camera and vector, and what the class accepts."""

    name: str
    cameras: Tuple[str, ...]          # the node's camera names the format needs
    demo_images: Mapping[str, str]    # camera -> demonstration dataset (raw name)
    rollout_images: Mapping[str, str]  # camera -> rollout dataset (raw name)
    demo_actions: str
    demo_proprio: str
    rollout_actions: str
    rollout_proprio: str
    storages: Tuple[str, ...]         # image storages the class reads, the default first
    data_dir: str                     # the released experiments' data_dir folder name
    action_dim: int                   # the released models' action width (a convention)
    chunk_size: int                   # the released model's chunk

    @property
    def one_file_per_demo(self):
        """ALOHA: the file is the demonstration (datasets at its root)."""
        return self.name == 'aloha'

    @property
    def video_names(self):
        """camera -> upstream camera name of the MP4 storage (ALOHA)."""
        return {camera: path.rsplit('/', 1)[-1] for camera, path in self.demo_images.items()}


FORMATS = {
    'libero': DatasetFormat(
        name='libero', cameras=('primary', 'wrist'),
        demo_images={'primary': 'obs/agentview_rgb', 'wrist': 'obs/eye_in_hand_rgb'},
        rollout_images={'primary': 'primary_images', 'wrist': 'wrist_images'},
        demo_actions='actions', demo_proprio='robot_states', rollout_actions='actions',
        rollout_proprio='proprio', storages=(RAW, JPEG), data_dir='success_only', action_dim=7,
        chunk_size=16),
    'robocasa': DatasetFormat(
        name='robocasa', cameras=('primary', 'secondary', 'wrist'),
        demo_images={'primary': 'obs/robot0_agentview_left_rgb',
                     'secondary': 'obs/robot0_agentview_right_rgb',
                     'wrist': 'obs/robot0_eye_in_hand_rgb'},
        rollout_images={'primary': 'primary_images', 'secondary': 'secondary_images',
                        'wrist': 'wrist_images'},
        demo_actions='actions', demo_proprio='robot_states', rollout_actions='actions',
        rollout_proprio='proprio', storages=(RAW, JPEG), data_dir='success_only', action_dim=7,
        chunk_size=32),
    'aloha': DatasetFormat(
        name='aloha', cameras=('primary', 'left_wrist', 'right_wrist'),
        demo_images={'primary': 'observations/images/cam_high',
                     'left_wrist': 'observations/images/cam_left_wrist',
                     'right_wrist': 'observations/images/cam_right_wrist'},
        rollout_images={'primary': 'observations/images/cam_high',
                        'left_wrist': 'observations/images/cam_left_wrist',
                        'right_wrist': 'observations/images/cam_right_wrist'},
        demo_actions='action', demo_proprio='observations/qpos', rollout_actions='action',
        rollout_proprio='observations/qpos', storages=(MP4, RAW), data_dir='preprocessed',
        action_dim=14, chunk_size=50),
}
VIDEO_PATHS_GROUP = 'observations/video_paths'  # ALOHA: camera -> MP4 file name
OWN_GROUP = 'cosmos_policy_ros'  # this package's group in every file (the classes ignore it)


def get_format(name):
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f'unknown format {name!r}; choose one of {list(FORMAT_NAMES)}.') from None


# --- the task text in paths ----------------------------------------------------------------------
def task_words(task):
    """The words of a task that a path can carry ('_' joins them); ValueError says why not."""
    words = task.split(' ')
    problems = []
    if not task or any(not word for word in words):
        problems.append('it must be words separated by single spaces')
    if any(c in task for c in '_/\\\0\n\t'):
        problems.append("it must not contain '_', '/', '\\\\' or control characters")
    if any(LIBERO_SCENE_WORD in word for word in words):
        problems.append(f'no word may contain {LIBERO_SCENE_WORD!r}')
    if problems:
        raise ValueError(f'task {task!r} cannot be stored in a file or folder name: '
                         f'{"; ".join(problems)}.')
    return words


def libero_command(file_name):
    """The LIBERO class's task of a demonstration file name (L:204-212)."""
    words = file_name[:-len(LIBERO_SUFFIX)].split('_')
    command = []
    for word in words:
        if LIBERO_SCENE_WORD in word:
            command = []
            continue
        command.append(word)
    return ' '.join(command)


def libero_file_name(index, task):
    """episode<index>_SCENE_<task words>_demo.hdf5: the class reads `task` back from it."""
    name = f'episode{index:06d}_{LIBERO_SCENE_WORD}_{"_".join(task_words(task))}{LIBERO_SUFFIX}'
    assert libero_command(name) == task, (name, task)
    return name


def aloha_command(folder, *, with_change=True):
    """The ALOHA class's task of a task folder name (A:310-325); None where the class raises
    (without ALOHA_UPSTREAM_CHANGE: any folder not matching a listed task)."""
    for part, canonical in ALOHA_TASKS:
        if part in folder:
            return canonical.replace('_', ' ')
    return folder.replace('_', ' ') if with_change else None


def aloha_task_folder(task):
    """The task folder of `task`; ValueError when the class would read another command."""
    folder = '_'.join(task_words(task))
    if aloha_command(folder) != task:
        raise ValueError(f'task {task!r}: the ALOHA class reads its folder {folder!r} as '
                         f'{aloha_command(folder)!r} (it contains one of its listed task '
                         f'names); rephrase the task.')
    return folder


def rollout_file_name(index, success):
    return f'episode{index:06d}--success={bool(success)}.hdf5'
