"""Per registered model: forward shape, no NaN, overfits one batch, state-dict round trip, bad inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from microcnn.models import build_model, list_models, model_task
from microcnn.models.blocks import ModelInputError

from .tiny import TINY

ALL = list_models()


def _build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    kwargs, size = TINY[name]
    return build_model(name, **kwargs), size


def _expected_shape(name: str, n: int, size: int) -> tuple[int, ...]:
    kwargs, _ = TINY[name]
    task = model_task(name)
    if task == "classification":
        return (n, kwargs["num_classes"])
    if task == "segmentation":
        return (n, kwargs["num_classes"], size, size)
    return (n, kwargs["num_targets"])


def _batch(size: int, n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    # smooth blobs: learnable by every architecture, also by decoders without skips (SegNet, FCN)
    return F.interpolate(torch.rand(n, 1, 4, 4, generator=g), size=(size, size), mode="bilinear")


def test_every_tiny_config_is_listed():
    assert sorted(TINY) == ALL


@pytest.mark.parametrize("name", ALL)
def test_forward_shape_and_finite(name):
    model, size = _build(name)
    model.eval()
    with torch.no_grad():
        out = model(_batch(size, n=2))
    assert tuple(out.shape) == _expected_shape(name, 2, size)
    assert torch.isfinite(out).all()
    assert model.task == model_task(name)
    assert isinstance(model.cam_layer, torch.nn.Module)
    assert model.output_stride >= 1 and model.min_input_size >= 1


@pytest.fixture
def one_thread():
    """Train on one thread: these batches are tiny, and under other CPU load two threads made the
    ResNet-U-Net's steps 15-40x slower (302 s for this test; 4 s on one thread). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ALL)
def test_overfits_one_small_batch(name, one_thread):
    model, size = _build(name)
    x = _batch(size, n=2)
    task = model_task(name)
    if task == "classification":
        y = torch.tensor([0, 2])
    elif task == "segmentation":
        y = (x[:, 0] > 0.5).long()
    else:
        y = torch.randn(2, TINY[name][0]["num_targets"], generator=torch.Generator().manual_seed(2))
    loss_fn = F.mse_loss if task == "regression" else F.cross_entropy
    # lr 1e-2: every registered model gets there in 2-101 steps (3e-3 needed up to 150)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(300):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
        if loss.item() <= 0.1 * first:
            break
    assert loss.item() <= 0.1 * first, f"{name}: loss {first:.3f} -> {loss.item():.3f} in 300 steps"


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip(name, tmp_path):
    model, size = _build(name, seed=0)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    other, _ = _build(name, seed=1)
    other.load_state_dict(load_file(str(path)), strict=True)
    model.eval(), other.eval()
    x = _batch(size, n=2)
    with torch.no_grad():
        assert torch.equal(model(x), other(x))


@pytest.mark.parametrize("name", ALL)
def test_wrong_channels_is_refused_with_the_fix(name):
    model, size = _build(name)
    with pytest.raises(ModelInputError, match=r"built for 1 input channel.*got 3.*in_channels=3"):
        model(torch.zeros(1, 3, size, size))


@pytest.mark.parametrize("name", ALL)
def test_too_small_input_is_refused(name):
    model, _ = _build(name)
    small = model.min_input_size - 1
    # the message names the minimum (or, for fixed-size heads, the expected size) and what came
    with pytest.raises(ValueError, match=rf"{small}×{small}|\({small}, {small}\)"):
        model(torch.zeros(1, 1, small, small))


@pytest.mark.parametrize("name", ALL)
def test_unbatched_input_is_refused(name):
    model, size = _build(name)
    with pytest.raises(ModelInputError, match="unsqueeze"):
        model(torch.zeros(1, size, size))
