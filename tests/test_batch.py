import pytest
import torch
from conftest import DEVICES

from meta_rl_lessons.rl.batch import EpisodeBatch


def make_batch(T=4, batch=(2, 3), obs=5, device="cpu", **overrides):
    fields = dict(
        observations=torch.randn(T, *batch, obs),
        actions=torch.randn(T, *batch, 2),
        rewards=torch.randn(T, *batch),
        next_observations=torch.randn(T, *batch, obs),
        terminated=torch.zeros(T, *batch, dtype=torch.bool),
        truncated=torch.zeros(T, *batch, dtype=torch.bool),
        mask=torch.ones(T, *batch),
    )
    fields = {k: v.to(device) for k, v in fields.items()}
    fields.update(overrides)
    return EpisodeBatch(**fields)


@pytest.mark.parametrize("device", DEVICES)
def test_shapes_and_device(device):
    batch = make_batch(device=device)
    assert batch.horizon == 4 and batch.batch_shape == (2, 3)
    assert batch.device.type == device
    assert batch.num_steps == 24


def test_masked_returns_ignore_padding():
    rewards = torch.tensor([[1.0, 2.0], [3.0, 100.0]])  # [T=2, B=2]
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # episode 1 ended after one step
    batch = make_batch(T=2, batch=(2,), rewards=rewards, mask=mask)
    assert batch.episode_returns().tolist() == [4.0, 2.0]


def test_task_and_flatten():
    batch = make_batch()
    one = batch.task(1)
    assert one.batch_shape == (3,)
    assert torch.equal(one.observations, batch.observations[:, 1])
    flat = batch.flatten_batch()
    assert flat.batch_shape == (6,)
    assert torch.equal(flat.actions[:, 3], batch.actions[:, 1, 0])


def test_dones_combine_termination_and_truncation():
    terminated = torch.zeros(4, 2, 3, dtype=torch.bool)
    truncated = torch.zeros(4, 2, 3, dtype=torch.bool)
    terminated[1, 0, 0] = True
    truncated[3, 1, 2] = True
    batch = make_batch(terminated=terminated, truncated=truncated)
    assert batch.dones.sum().item() == 2


def test_shape_mismatch_names_field():
    with pytest.raises(ValueError, match="actions"):
        make_batch(actions=torch.zeros(3, 2, 3, 2))


def test_task_needs_two_batch_dims():
    with pytest.raises(ValueError, match="num_tasks"):
        make_batch(batch=(3,)).task(0)


def test_non_tensor_field_is_rejected():
    with pytest.raises(TypeError, match="mask"):
        make_batch(mask=[1, 2])
