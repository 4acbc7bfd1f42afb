"""Latent layouts: the released presets exactly as the reference, custom layouts validated."""
import pytest

from cosmos_policy_ros.layout import LatentLayout


@pytest.mark.parametrize('name, frames, conditioning, action, value, shape', [
    ('libero', 9, 4, 4, 8, (16, 9, 28, 28)),
    ('robocasa', 11, 5, 5, 10, (16, 11, 28, 28)),
    ('aloha', 11, 5, 5, 10, (16, 11, 28, 28)),
])
def test_presets_match_the_reference(name, frames, conditioning, action, value, shape):
    layout = LatentLayout.preset(name)
    assert layout.num_frames == frames
    assert layout.num_conditioning_frames == conditioning
    assert layout.action_index == action
    assert layout.value_index == value
    assert layout.latent_shape == shape
    assert layout.num_pixel_frames == 1 + 4 * (frames - 1)  # 33 for LIBERO, 41 otherwise


def test_libero_and_aloha_frame_roles():
    # Reference section 1 index maps.
    assert LatentLayout.preset('libero').frame_roles() == (
        'blank', 'proprio', 'camera:wrist', 'camera:primary', 'action', 'future_proprio',
        'future_camera:wrist', 'future_camera:primary', 'value')
    aloha = LatentLayout.preset('aloha')
    assert [aloha.camera_index(c) for c in ('left_wrist', 'right_wrist', 'primary')] == [2, 3, 4]
    assert [aloha.future_camera_index(c) for c in aloha.cameras] == [7, 8, 9]
    assert aloha.future_proprio_index == 6
    assert (aloha.chunk_size, aloha.action_dim, aloha.proprio_dim) == (50, 14, 14)


def test_pixel_frames_of_a_latent_frame():
    layout = LatentLayout.preset('libero')
    assert list(layout.pixel_frames(0)) == [0]
    assert list(layout.pixel_frames(1)) == [1, 2, 3, 4]
    assert list(layout.pixel_frames(8)) == [29, 30, 31, 32]
    with pytest.raises(ValueError, match='latent frame index'):
        layout.pixel_frames(9)


def test_custom_layout_from_yaml(tmp_path):
    path = tmp_path / 'robot.yaml'
    path.write_text('layout:\n  name: ur5\n  cameras: [front]\n  chunk_size: 20\n'
                    '  action_dim: 7\n  proprio_dim: 8\n')
    layout = LatentLayout.from_yaml(path)
    assert layout.cameras == ('front',)
    assert layout.num_frames == 7 and layout.num_conditioning_frames == 3
    assert LatentLayout.from_dict(layout.to_dict()) == layout


def test_preset_with_overrides():
    layout = LatentLayout.from_dict({'preset': 'aloha', 'name': 'my_aloha', 'chunk_size': 25})
    assert layout.chunk_size == 25 and layout.cameras == LatentLayout.preset('aloha').cameras


@pytest.mark.parametrize('change, message', [
    ({'cameras': ()}, 'cameras'),
    ({'cameras': ('a', 'b', 'c', 'd', 'e')}, '1 to 4'),
    ({'cameras': ('wrist', 'wrist')}, 'unique'),
    ({'cameras': ('Wrist Cam',)}, 'identifiers'),
    ({'chunk_size': 0}, 'chunk_size'),
    ({'action_dim': 2.5}, 'action_dim'),
    ({'chunk_size': 1000, 'action_dim': 13}, 'does not fit in one latent frame'),
    ({'proprio_dim': 12545}, 'proprio_dim'),
    ({'image_size': 100}, 'multiple of 16'),
])
def test_bad_layouts_name_the_field(change, message):
    fields = dict(name='x', cameras=('primary',), chunk_size=16, action_dim=7, proprio_dim=9)
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        LatentLayout(**fields)


def test_bad_dict_and_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['horizon'\]"):
        LatentLayout.from_dict({'preset': 'libero', 'horizon': 3})
    with pytest.raises(ValueError, match='missing key'):
        LatentLayout.from_dict({'name': 'x', 'cameras': ['a']})
    with pytest.raises(ValueError, match='unknown layout preset'):
        LatentLayout.preset('bridge')
    with pytest.raises(ValueError, match='cannot read layout file'):
        LatentLayout.from_yaml(tmp_path / 'missing.yaml')
    with pytest.raises(ValueError, match='unknown camera'):
        LatentLayout.preset('libero').camera_index('left_wrist')
