import pytest
import torch

from trainables.models import MODELS, build_model, normalisation, stage_outputs


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_model_trains_one_step(name, channels):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3, in_channels=channels)
    x = torch.randn(2, channels, 32, 32)
    out = model(x)
    assert out.shape == (2, 3)
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    mean, std = normalisation(name, channels)
    assert mean.shape == std.shape == (1, channels, 1, 1)


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.get(n).has_stages])
def test_stage_outputs_are_the_stages(name):
    model = build_model(name, 3, 1).eval()
    outs = stage_outputs(model, torch.randn(2, 1, 64, 64))
    widths = [o.shape[1] for o in outs]
    assert len(outs) == (3 if name == "simple_cnn" else 4)
    assert widths[-1] in (64, 512, 2048) and widths == sorted(widths)
    sides = [o.shape[-1] for o in outs]
    assert sides == sorted(sides, reverse=True)  # each stage keeps or halves the resolution


def test_models_without_stages_say_so():
    with pytest.raises(ValueError, match="cannot list its stage outputs"):
        stage_outputs(build_model("squeezenet1_0", 3, 1), torch.randn(1, 1, 64, 64))


def test_resnet18_cifar_keeps_resolution_in_first_stage():
    outs = stage_outputs(build_model("resnet18_cifar", 3, 1), torch.randn(1, 1, 32, 32))
    assert [tuple(o.shape[1:]) for o in outs] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
