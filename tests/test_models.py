import pytest
import torch

from trainables.config import parse_config
from trainables.errors import ConfigError
from trainables.models import MODELS, ModelOptions, build_model, head_name, normalisation, stage_outputs


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


def _outputs(name: str, options: ModelOptions, train: bool) -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model(name, 3, 1, options).train(train)
    torch.manual_seed(1)
    return model(torch.randn(4, 1, 32, 32))


@pytest.mark.parametrize("name", MODELS.names())
def test_head_dropout_changes_training_only_and_keeps_the_weights(name):
    torch.manual_seed(0)
    model = build_model(name, 3, 1)
    assert isinstance(model.get_submodule(head_name(model)), torch.nn.Linear) == MODELS.get(name).linear_head
    plain = model.state_dict()
    torch.manual_seed(0)
    dropped = build_model(name, 3, 1, ModelOptions(dropout=0.5)).state_dict()
    assert plain.keys() == dropped.keys() and all(torch.equal(plain[k], dropped[k]) for k in plain)
    none, half = ModelOptions(dropout=0.0), ModelOptions(dropout=0.5)
    assert torch.equal(_outputs(name, none, train=False), _outputs(name, half, train=False))
    assert not torch.equal(_outputs(name, none, train=True), _outputs(name, half, train=True))


@pytest.mark.parametrize("name, choice", [(n, c) for n in MODELS.names() for c in MODELS.get(n).batch_norm])
def test_every_batch_norm_choice_builds_and_trains(name, choice):
    model = build_model(name, 3, 1, ModelOptions(batch_norm=choice))
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert has_bn == choice
    model(torch.randn(2, 1, 32, 32)).sum().backward()


def test_a_batch_norm_choice_the_model_lacks_names_the_field(tiny_config):
    with pytest.raises(ConfigError, match=r"model_options.batch_norm: resnet50 is built with batch norm only"):
        parse_config(tiny_config | {"model": "resnet50", "model_options": {"batch_norm": False}})
    with pytest.raises(ConfigError, match=r"model_options.dropout: Input should be less than 1"):
        parse_config(tiny_config | {"model_options": {"dropout": 1.0}})


def test_half_normalisation_is_report_002s():
    mean, std = normalisation("resnet50", 1, "half")
    assert mean.flatten().tolist() == [0.5] and std.flatten().tolist() == [0.5]
    assert normalisation("resnet50", 3, "model")[0].flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
