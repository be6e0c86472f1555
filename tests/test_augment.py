import pytest
import torch

from trainables.data.augment import AUGMENTS, REPORT_PIPELINES, centre_crop, elastic_field, zoom_step


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


@pytest.mark.parametrize("name", [n for n in AUGMENTS.names() if n != "none" and n not in REPORT_PIPELINES])
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



def test_report_baseline_is_the_centre_crop():
    x = torch.rand(3, 1, 36, 36)
    assert torch.equal(AUGMENTS.get("baseline")(x, 32, torch.Generator()), centre_crop(x, 32))


@pytest.mark.parametrize("name, share", [("baseline_crop", 0.1), ("baseline_crop_distortion", 0.19),
                                         ("baseline_crop_zoom", 0.19)])
def test_report_pipelines_change_their_share_of_samples_each_differently(name, share):
    """Each step applies with probability 0.1, drawn per sample (two steps: 1 - 0.9^2 = 0.19); the
    samples left alone are the exact centre crop, the changed ones all differ from one another."""
    x = batch(n=2000)
    out = AUGMENTS.get(name)(x, 32, torch.Generator().manual_seed(1))
    changed = (out - centre_crop(x, 32)).abs().amax((1, 2, 3)) > 1e-4
    assert changed.float().mean().item() == pytest.approx(share, abs=0.03)
    picked = out[changed][:40].flatten(1)
    gaps = torch.cdist(picked, picked) + torch.eye(len(picked)) * 1e9
    assert gaps.min() > 1e-4


def test_distortion_fields_are_drawn_per_sample_on_a_10x10_grid():
    field = elastic_field(2, 32, 36, torch.Generator().manual_seed(0), p=1.0)
    assert field.shape == (2, 32, 32, 2) and not torch.equal(field[0], field[1])  # one field per sample
    assert field.abs().max() <= 3 * 2 / 36 + 1e-6  # at most 3 px of the 36 px image
    assert field[:, 0].abs().max() == field[:, -1].abs().max() == field[:, :, 0].abs().max() == 0  # the border stays


def test_zoom_keeps_80_percent_of_the_area_inside_the_view():
    half, centre = torch.full((500, 2), 0.9), torch.zeros(500, 2)
    zoomed, moved = zoom_step(half, centre, torch.Generator().manual_seed(0), p=1.0)
    assert torch.allclose(zoomed, half * 0.8 ** 0.5)
    assert (moved.abs() + zoomed <= half + 1e-6).all()  # the zoomed view stays inside the old one


@pytest.mark.parametrize("name", ["baseline_crop", "baseline_crop_distortion", "baseline_crop_zoom"])
def test_report_pipelines_leave_the_unchosen_samples_at_the_centre_crop_with_an_odd_margin(name):
    x = torch.rand(200, 1, 35, 35)  # a margin of 3 px: centre_crop starts at pixel 1
    out = AUGMENTS.get(name)(x, 32, torch.Generator().manual_seed(2))
    same = (out - centre_crop(x, 32)).abs().amax((1, 2, 3)) < 1e-5
    assert 0.7 < same.float().mean() < 0.95
