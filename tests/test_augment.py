import pytest
import torch

from trainables.data.augment import AUGMENTS, centre_crop


def batch(n=8, size=36):
    torch.manual_seed(0)
    one = torch.rand(1, 1, size, size)
    return one.expand(n, 1, size, size).contiguous()  # n copies of the same image


@pytest.mark.parametrize("name", AUGMENTS.names())
def test_policy_shapes_range_and_seeded_stream(name):
    x = batch()
    a = AUGMENTS.get(name)(x, 32, torch.Generator().manual_seed(5))
    b = AUGMENTS.get(name)(x, 32, torch.Generator().manual_seed(5))
    assert a.shape == (8, 1, 32, 32) and a.dtype == x.dtype
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", [n for n in AUGMENTS.names() if n != "none"])
def test_parameters_are_drawn_per_sample(name):
    out = AUGMENTS.get(name)(batch(), 32, torch.Generator().manual_seed(0))
    diffs = [(out[i] - out[0]).abs().mean().item() for i in range(1, 8)]
    assert min(diffs) > 1e-3  # same input image, different result for every sample


def test_none_is_the_exact_centre_crop():
    x = torch.rand(3, 1, 36, 36)
    assert torch.equal(AUGMENTS.get("none")(x, 32, torch.Generator()), x[..., 2:34, 2:34])
    assert torch.equal(centre_crop(x, 32), x[..., 2:34, 2:34])


def test_standard_flips_about_half_of_the_samples():
    # a left-bright ramp: a flipped sample is brighter on its right half
    ramp = torch.linspace(1, 0, 36).expand(1, 1, 36, 36).repeat(400, 1, 1, 1)
    out = AUGMENTS.get("standard")(ramp, 32, torch.Generator().manual_seed(0))
    flipped = (out[..., 16:].mean((1, 2, 3)) > out[..., :16].mean((1, 2, 3))).float().mean()
    assert 0.4 < flipped < 0.6

