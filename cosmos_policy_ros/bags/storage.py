"""The on-disk form of a rosbag2 bag: storage plugins, the bag's path and files, and BagError.

A bag is a directory with ``metadata.yaml`` and its storage files, or a single ``.mcap`` /
``.db3`` file (a recording killed before it wrote its metadata is read through its one
storage file). Every failure of bag I/O is a ``BagError`` naming the file and, where one is
involved, the topic.
"""
from pathlib import Path
from typing import Tuple

STORAGES = ('mcap', 'sqlite3')
COMPRESSIONS = ('none', 'zstd')
BAG_SUFFIXES = ('.mcap', '.db3')


class BagError(ValueError):
    """A bag cannot be read or written; the message names the file and topic involved."""


def resolve_bag_path(path):
    """The path rosbags opens for `path`: a bag directory, or a single .mcap/.db3 file.

    A directory without metadata.yaml (a recording that was killed before it could write one)
    is read through its single storage file.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f'bag {path} does not exist')
    if path.is_dir():
        if (path / 'metadata.yaml').is_file():
            return path
        files = sorted(p for p in path.iterdir() if p.suffix in BAG_SUFFIXES)
        if len(files) == 1:
            return files[0]
        if not files:
            raise BagError(f'{path} is not a rosbag2 bag: it has no metadata.yaml and no '
                           f'{"/".join(BAG_SUFFIXES)} file')
        raise BagError(f'{path} has no metadata.yaml and several storage files '
                       f'{[p.name for p in files]}; open one of them directly')
    if path.suffix not in BAG_SUFFIXES:
        raise BagError(f'{path} is not a rosbag2 bag: expected a bag directory or a '
                       f'{"/".join(BAG_SUFFIXES)} file')
    return path


def storage_files(path) -> Tuple[Path, ...]:
    """The .mcap/.db3 files of the bag at `path`."""
    path = Path(path)
    if path.is_file():
        return (path,)
    return tuple(sorted(p for p in path.iterdir() if p.suffix in BAG_SUFFIXES))


def bag_size(path):
    """Total bytes of the bag at `path` (all files of a bag directory)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob('*') if p.is_file())
