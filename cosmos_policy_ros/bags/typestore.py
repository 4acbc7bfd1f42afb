"""The rosbags typestore of this package's bags: every ROS 2 Kilted message plus this package's
own messages, registered from the installed ``share/cosmos_policy_ros/msg/*.msg`` files (found
through ``package_files``: the ament index, next to the installed package, or in the source
checkout), so ``ActionChunk`` and ``ValueEstimate`` get the same RIHS01 type hashes rosidl
generates.
"""
from pathlib import Path

from rosbags.interfaces import (
    Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime)
from rosbags.typesys import get_types_from_msg, get_typestore, Stores, TypesysError

from cosmos_policy_ros import conversions, package_files
from cosmos_policy_ros.bags.storage import BagError
from cosmos_policy_ros.package_files import PACKAGE

# The ROS 2 distribution whose standard messages the typestore holds (same hashes as Jazzy for
# the sensor/std/geometry messages used here).
BASE_STORE = Stores.ROS2_KILTED
BASE_STORE_NAME = 'ROS 2 Kilted'


def msg_search_dirs():
    """Directories searched for the package's .msg files, in order of preference."""
    return package_files.search_paths('msg')


def find_msg_dir():
    """The directory holding this package's .msg files; raises BagError when there is none."""
    searched = msg_search_dirs()
    for path in searched:
        if path.is_dir() and any(path.glob('*.msg')):
            return path
    raise BagError(f'cannot find the {PACKAGE} message definitions (msg/*.msg); looked in '
                   f'{[str(p) for p in searched]}. Source the workspace (AMENT_PREFIX_PATH) or '
                   f'pass msg_dir.')


def make_typestore(msg_dir=None):
    """A fresh rosbags Typestore: ROS 2 Kilted messages plus this package's messages.

    msg_dir: directory with ``<Name>.msg`` files registered as ``cosmos_policy_ros/msg/<Name>``;
    found with ``find_msg_dir()`` when None.
    """
    msg_dir = Path(msg_dir) if msg_dir is not None else find_msg_dir()
    files = sorted(msg_dir.glob('*.msg'))
    if not files:
        raise BagError(f'no .msg files in {msg_dir}')
    types = {}
    for path in files:
        name = f'{PACKAGE}/msg/{path.stem}'
        try:
            types.update(get_types_from_msg(path.read_text(), name))
        except (TypesysError, OSError) as error:
            raise BagError(f'cannot load message definition {path}: {error}') from None
    store = get_typestore(BASE_STORE)
    store.register(types)
    return store


def ns_to_stamp(stamp_ns, typestore):
    """Integer nanoseconds -> builtin_interfaces/msg/Time of `typestore`."""
    sec, nanosec = conversions.ns_to_stamp(stamp_ns)
    return typestore.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)


def latched_qos():
    """Offered QoS of a latched topic (reliable, transient local, depth 1) for bag metadata."""
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


def reader_typestore():
    """``make_typestore()``, or the plain ROS 2 store when the msg files cannot be found.

    Enough for reading: bags embed the definitions of this package's messages.
    """
    try:
        return make_typestore()
    except BagError:
        return get_typestore(BASE_STORE)
