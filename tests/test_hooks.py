"""Every registered trial hook, the moment it is registered: a config that uses it activates it
(and only it), its trial trains, and a trial stopped mid-way resumes bit-identically on CPU from
the checkpoint (which carries the hook's state)."""
import shutil

import pytest

from trainables.config import parse_config
from trainables.hooks import HOOKS, TrialHook, active_hooks
from trainables.train import run

# A config that uses each hook; a new hook without an entry here fails test_every_hook_has_a_config.
USES = {
    "cascade": {"strategy": "cascade"},
    "balanced_mixup": {"strategy": "balanced_mixup"},
    "crt": {"strategy": "crt", "crt": {"epochs": 1}},
    "drw": {"strategy": "ldam_drw"},
    "mixup": {"strategy": "mixup"},
    "ssl": {"init": "ssl", "ssl": {"epochs": 1, "batch_size": 32, "dim": 8}},
    "tau_norm": {"strategy": "tau_norm"},
    "vabal": {"strategy": "vabal_both", "vabal": {"refresh_every": 1, "mc_samples": 10, "vae_epochs": 1}},
}


def test_every_hook_has_a_config():
    assert sorted(USES) == HOOKS.names()


def test_a_plain_config_uses_no_hook(tiny_config):
    assert active_hooks(parse_config(tiny_config | {"strategy": "combined"})) == []


@pytest.mark.parametrize("name", HOOKS.names())
def test_the_config_activates_exactly_its_hook(tiny_config, name):
    hooks = active_hooks(parse_config(tiny_config | USES[name]))
    assert [h.name for h in hooks] == [name] and isinstance(hooks[0], TrialHook)


@pytest.mark.parametrize("name", HOOKS.names())
def test_a_hooked_trial_resumes_bit_identically(tiny_config, tmp_path, name):
    config = tiny_config | USES[name] | {"epochs": 3, "device": "cpu",
                                         "data": tiny_config["data"] | {"cache_dir": str(tmp_path)}}
    full = []
    run(config, lambda m, ckpt: full.append(m))

    class Interrupted(Exception):
        pass

    def stop(metrics, ckpt):
        if metrics["epoch"] == 2:
            shutil.copytree(ckpt, tmp_path / "ckpt")
            raise Interrupted

    with pytest.raises(Interrupted):
        run(config, stop)
    resumed = []
    run(config, lambda m, ckpt: resumed.append(m), checkpoint_dir=tmp_path / "ckpt")

    def scalars(m):
        return {k: v for k, v in m.items() if not k.endswith(("epoch_seconds", "_s"))}

    assert [scalars(m) for m in resumed] == [scalars(m) for m in full[2:]]
