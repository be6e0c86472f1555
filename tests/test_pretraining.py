"""``init`` and ``freeze``: weights written in the test are loaded through the strategy and compared
tensor by tensor; freeze policies leave exactly the expected parameters trainable."""
import pytest
import torch

from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.errors import ConfigError
from trainables.models import build_model
from trainables.strategies import FREEZES, INITS
from trainables.strategies.freeze import train_mode
from trainables.train import build_trial, train_one_epoch


def reference(name, num_classes, in_channels=3, seed=123):
    torch.manual_seed(seed)
    return build_model(name, num_classes, in_channels).state_dict()


def fresh(name, num_classes=3, in_channels=3):
    torch.manual_seed(0)
    return build_model(name, num_classes, in_channels)


def assert_backbone_loaded(model, source, head="fc."):
    own = model.state_dict()
    for k, v in source.items():
        if k.startswith(head):
            assert own[k].shape != v.shape
        else:
            assert torch.equal(own[k], v), k


def test_imagenet_from_torchvisions_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = reference("resnet18", 1000)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(weights, tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    model = fresh("resnet18")
    head = model.fc.weight.detach().clone()
    INITS.get("imagenet")(model, "resnet18", None)
    assert_backbone_loaded(model, weights)
    assert torch.equal(model.fc.weight, head)  # the head stays the seeded 3-class one


def test_imagenet_from_a_path_into_a_grey_model(tmp_path):
    weights = reference("resnet18", 1000)
    torch.save(weights, tmp_path / "w.pth")
    model = fresh("resnet18", in_channels=1)
    INITS.get("imagenet")(model, "resnet18", tmp_path / "w.pth")
    assert torch.equal(model.conv1.weight, weights["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.layer4[1].conv2.weight, weights["layer4.1.conv2.weight"])


def test_missing_imagenet_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    with pytest.raises(ConfigError, match=f"init: ImageNet weights for resnet50 not found at {expected}; "
                                          "nothing is downloaded: put https://download.pytorch.org/"
                                          "models/resnet50-11ad3fa6.pth there"):
        INITS.get("imagenet")(fresh("resnet18"), "resnet50", None)
    with pytest.raises(ConfigError, match="init: no torchvision ImageNet weights for model 'simple_cnn'"):
        INITS.get("imagenet")(fresh("simple_cnn"), "simple_cnn", None)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_moco_checkpoint_loads_the_query_encoder_without_its_head(tmp_path, version):
    query = reference("resnet50", 128, seed=1)
    key = reference("resnet50", 128, seed=2)
    if version == "v2":  # MLP head fc.0 / fc.2
        del query["fc.weight"], query["fc.bias"]
        query |= {"fc.0.weight": torch.randn(2048, 2048), "fc.0.bias": torch.randn(2048),
                  "fc.2.weight": torch.randn(128, 2048), "fc.2.bias": torch.randn(128)}
    state = {f"module.encoder_q.{k}": v for k, v in query.items()}
    state |= {f"module.encoder_k.{k}": v for k, v in key.items()}
    state |= {"module.queue": torch.randn(128, 16), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": state}, tmp_path / "moco.pth.tar")
    model = fresh("resnet50")
    INITS.get("moco")(model, "resnet50", tmp_path / "moco.pth.tar")
    own = model.state_dict()
    for k, v in query.items():
        if not k.startswith("fc."):
            assert torch.equal(own[k], v), k
    assert own["fc.weight"].shape == (3, 2048)


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    state = {f"module.encoder_q.{k}": v for k, v in reference("resnet18", 128).items()}
    torch.save({"state_dict": state}, tmp_path / "moco.pth.tar")
    with pytest.raises(ConfigError, match=r"init_path: .*moco.pth.tar does not fit the model"):
        INITS.get("moco")(fresh("resnet50"), "resnet50", tmp_path / "moco.pth.tar")
    with pytest.raises(ConfigError, match="init_path: init 'moco' needs the MoCo checkpoint file"):
        parse_config({"model": "resnet50", "init": "moco"})


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


HEAD = {"simple_cnn": "head.3.", "resnet18_cifar": "fc.", "resnet18": "fc."}
LAST_BLOCK = {"simple_cnn": "layer3.", "resnet18_cifar": "layer4.1.", "resnet18": "layer4.1."}
EXPECTED = {
    "none": lambda names, model: set(names),
    "backbone": lambda names, model: {n for n in names if n.startswith(HEAD[model])},
    "last_block": lambda names, model: {n for n in names if n.startswith((HEAD[model], LAST_BLOCK[model]))},
}


def test_last_block_needs_a_model_made_of_stages():
    with pytest.raises(ConfigError, match="freeze: 'last_block' needs a model made of stages"):
        parse_config({"model": "squeezenet1_0", "freeze": "last_block"})


@pytest.mark.parametrize("model_name", sorted(HEAD))
@pytest.mark.parametrize("policy", FREEZES.names())
def test_freeze_leaves_exactly_the_expected_parameters_trainable(policy, model_name):
    model = fresh(model_name)
    FREEZES.get(policy)(model)
    names = [n for n, _ in model.named_parameters()]
    assert trainable(model) == EXPECTED[policy](names, model_name)
    assert trainable(model)


def test_linear_probe_trains_only_the_head_and_keeps_frozen_statistics(tiny_config, tmp_path):
    torch.save(reference("resnet18", 1000), tmp_path / "w.pth")
    cfg = parse_config(tiny_config | {"model": "resnet18", "init": "imagenet",
                                      "init_path": str(tmp_path / "w.pth"),
                                      "freeze": "backbone"})
    trial = build_trial(cfg, load_arrays(cfg.data))
    before = {k: v.clone() for k, v in trial.model.state_dict().items()}
    assert {id(p) for g in trial.optimizer.param_groups for p in g["params"]} == {
        id(trial.model.fc.weight), id(trial.model.fc.bias)}
    train_one_epoch(trial)
    after = trial.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}
    train_mode(trial.model)
    assert not trial.model.bn1.training and trial.model.training
