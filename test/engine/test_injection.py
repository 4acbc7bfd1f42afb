"""Latent frame injection and extraction: the reference's tiling order and read-out."""
import pytest
import torch

from cosmos_policy_ros.engine.injection import (extract_actions, extract_proprio, extract_value,
                                                inject_actions, inject_proprio, inject_value,
                                                mean_of_copies, tile_frame)
from cosmos_policy_ros.layout import LatentLayout

PRESETS = ('libero', 'robocasa', 'aloha')


def _layout(name, image_size=224):
    base = LatentLayout.preset(name)
    return LatentLayout(base.name, base.cameras, base.chunk_size, base.action_dim,
                        base.proprio_dim, image_size=image_size)


def _latent(layout, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *layout.latent_shape, generator=generator)


def _uniform(shape, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) * 2 - 1


@pytest.mark.parametrize('name', PRESETS)
@pytest.mark.parametrize('image_size', [224, 64])
def test_round_trips_for_every_preset(name, image_size):
    layout = _layout(name, image_size)
    latent = _latent(layout)
    actions = _uniform((2, layout.chunk_size, layout.action_dim))
    proprio = _uniform((2, layout.proprio_dim))
    result = inject_actions(latent, layout, actions)
    result = inject_proprio(result, layout, proprio, future=True, round_to_bf16=False)
    result = inject_value(result, layout, torch.tensor([-0.5, 0.6]))
    torch.testing.assert_close(extract_actions(result, layout), actions, rtol=0, atol=1e-6)
    torch.testing.assert_close(extract_proprio(result, layout), proprio, rtol=0, atol=1e-6)
    torch.testing.assert_close(extract_value(result, layout), torch.tensor([0.25, 0.8]))
    # Only the three injected frames changed, and the input was not modified.
    changed = {layout.action_index, layout.future_proprio_index, layout.value_index}
    for index in range(layout.num_frames):
        assert torch.equal(result[:, :, index], latent[:, :, index]) == (index not in changed)
    assert torch.equal(latent, _latent(layout))


def test_tiling_order_hand_computed():
    # LIBERO at 224: 16 x 28 x 28 = 12544 values, 112 = 16 x 7 action values, 112 copies.
    # Flat index j = c * 784 + h * 28 + w holds a_flat[j mod 112] = a[k // 7, k % 7].
    layout = LatentLayout.preset('libero')
    actions = torch.arange(112, dtype=torch.float32).reshape(1, 16, 7)
    frame = inject_actions(torch.zeros(1, *layout.latent_shape), layout, actions)[0, :, 4]
    # j = 1000: c = 1, h = 216 // 28 = 7, w = 216 % 28 = 20; k = 1000 - 8 * 112 = 104
    # -> a[14, 6] (timestep 14, dimension 6).
    assert frame[1, 7, 20] == actions[0, 14, 6] == 104
    # j = 111 (the last value of the first copy) and j = 112 (the second copy starts).
    assert frame[0, 3, 27] == 111 and frame[0, 4, 0] == 0
    # j = 12543, the last element: 12543 mod 112 = 111.
    assert frame[15, 27, 27] == 111


def _bumped(latent, index, position, amount=100.0):
    """Copy of `latent` with element `position` (C-major) of frame `index` raised by amount."""
    result = latent.clone()
    frame = result[0, :, index].reshape(-1)  # (16, S, S) -> (16*S*S,), a copy
    frame[position] += amount
    result[0, :, index] = frame.reshape(result.shape[1], *result.shape[3:])
    return result


def test_aloha_partial_copy_is_written_but_ignored_on_read():
    layout = LatentLayout.preset('aloha')  # 700 action values: 17 full copies + 644
    actions = _uniform((1, 50, 14))
    latent = inject_actions(torch.zeros(1, *layout.latent_shape), layout, actions)
    flat = latent[0, :, layout.action_index].reshape(-1)  # (16, 28, 28) -> (12544,)
    assert torch.equal(flat[17 * 700:], actions.reshape(-1)[:644])  # the partial 18th copy
    tail = _bumped(latent, layout.action_index, 17 * 700 + 5)
    assert torch.equal(extract_actions(tail, layout), extract_actions(latent, layout))
    full = _bumped(latent, layout.action_index, 3 * 700 + 5)  # inside copy 4
    changed = extract_actions(full, layout) - extract_actions(latent, layout)
    # Element 5 = action[0, 5] moved by 100 / 17 (one copy in 17), nothing else moved.
    assert changed[0, 0, 5].item() == pytest.approx(100.0 / 17, rel=1e-5)
    changed[0, 0, 5] = 0
    assert changed.abs().max() < 1e-5


def test_read_out_averages_the_copies():
    # Copy c (of 4) holds the constant c: the average over copies is 1.5 everywhere.
    frame = torch.arange(4, dtype=torch.float32).repeat_interleave(10)  # 4 copies of 10 + 0
    frame = torch.cat([frame, torch.full((8,), 99.0)]).reshape(1, 3, 4, 4)  # 48 = 40 + 8 tail
    torch.testing.assert_close(mean_of_copies(frame, (2, 5)), torch.full((1, 2, 5), 1.5))


def test_tile_frame_puts_element_j_at_j_mod_n():
    values = torch.arange(5, dtype=torch.float64).reshape(1, 5)
    frame = tile_frame(values, (2, 3, 3))  # 18 values: 3 copies + 3
    assert frame.reshape(-1).tolist() == [j % 5 for j in range(18)]
    with pytest.raises(ValueError, match=r'19 values do not fit in one latent frame of 2 x 3 x 3'):
        tile_frame(torch.zeros(1, 19), (2, 3, 3))


def test_proprio_is_rounded_to_bfloat16_by_default():
    layout = LatentLayout.preset('libero')
    proprio = torch.tensor([[0.1, -0.3, 1.0 / 3, 0.7, -0.9, 0.123456, 0.5, -1.0, 0.999]],
                           dtype=torch.float64)
    latent = torch.zeros(1, *layout.latent_shape)
    rounded = extract_proprio(inject_proprio(latent, layout, proprio), layout, future=False)
    exact = extract_proprio(inject_proprio(latent, layout, proprio, round_to_bf16=False),
                            layout, future=False)
    bf16 = proprio.to(torch.bfloat16).to(torch.float32)
    torch.testing.assert_close(rounded, bf16, rtol=0, atol=0)
    assert not torch.equal(bf16, proprio.to(torch.float32))  # 0.1 is not a bf16 number
    torch.testing.assert_close(exact, proprio.to(torch.float32), rtol=0, atol=1e-6)
    # The current-proprio frame (index 1) was written, the future one (index 5) was not.
    assert torch.count_nonzero(inject_proprio(latent, layout, proprio)[:, :, 5]) == 0


def test_value_fills_the_frame_and_reads_back_clamped():
    layout = LatentLayout.preset('libero')
    latent = inject_value(torch.zeros(3, *layout.latent_shape), layout,
                          torch.tensor([0.0, -3.0, 2.0]))
    frame = latent[:, :, layout.value_index]
    assert torch.equal(frame[0], torch.zeros_like(frame[0]))
    assert torch.equal(frame[1], torch.full_like(frame[1], -3.0))
    assert extract_value(latent, layout).tolist() == [0.5, 0.0, 1.0]


def test_batch_samples_are_independent():
    layout = _layout('robocasa', 64)
    actions = _uniform((3, 32, 7))
    batched = extract_actions(inject_actions(_latent(layout, 3), layout, actions), layout)
    for index in range(3):
        single = inject_actions(_latent(layout, 3)[index:index + 1], layout,
                                actions[index:index + 1])
        assert torch.equal(extract_actions(single, layout)[0], batched[index])


def test_bad_input():
    layout = LatentLayout.preset('libero')
    latent = torch.zeros(2, *layout.latent_shape)
    with pytest.raises(ValueError, match=r'`latent` must have shape \(B, 16, 9, 28, 28\)'):
        extract_actions(torch.zeros(2, 16, 11, 28, 28), layout)
    with pytest.raises(ValueError, match=r'`actions` must have shape \(2, 16, 7\), got \(2, 7\)'):
        inject_actions(latent, layout, torch.zeros(2, 7))
    with pytest.raises(ValueError, match=r'`proprio` must have shape \(2, 9\)'):
        inject_proprio(latent, layout, torch.zeros(9))
    proprio = torch.zeros(2, 9)
    proprio[1, 3] = float('nan')
    with pytest.raises(ValueError, match=r'`proprio` has a non-finite value nan at index '
                                         r'\(1, 3\)'):
        inject_proprio(latent, layout, proprio)
    with pytest.raises(TypeError, match=r'`latent` must be a torch.Tensor'):
        extract_value(latent.numpy(), layout)
    with pytest.raises(ValueError, match=r'`latent` must be a floating tensor'):
        extract_value(latent.to(torch.int32), layout)
