import subprocess
import sys

import pytest


def study(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "study.cli", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_data_synth_writes_an_image_folder_with_covidx_metadata(tmp_path):
    out = tmp_path / "synth"
    r = study("data", "synth", "--out", str(out), "--n", "50", "--seed", "2", "--size", "64")
    assert r.returncode == 0, r.stderr
    lines = (out / "metadata.txt").read_text().splitlines()
    assert len(lines) == 50
    patient, filename, label, source = lines[0].split()
    assert (out / label / filename).is_file() and source == "synthetic"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["covid", "normal", "pneumonia"]


def test_trial_runs_a_spec_strategy(tmp_path):
    r = study("trial", "search_spaces/quickstart.yaml", "--strategy", "combined", "--set", "epochs=2",
              "--set", "data.synthetic.n=300", "--set", "num_threads=1")
    assert r.returncode == 0, r.stderr
    assert "sampler=class_balanced loss=class_weighted augment=standard" in r.stdout
    assert r.stdout.count("\nepoch ") == 2
    assert '"test/sensitivity"' in r.stdout


@pytest.mark.parametrize("args, message", [
    (["trial", "nope.yaml"], "nope.yaml: spec file does not exist"),
    (["trial", "search_spaces/quickstart.yaml", "--strategy", "vabal"], "strategies: no strategy 'vabal'"),
    (["trial", "search_spaces/quickstart.yaml", "--set", "lr=-1"], "lr: Input should be greater than 0"),
])
def test_trial_bad_input_is_one_message(args, message):
    r = study(*args)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("study: error:") and message in r.stderr
    assert "Traceback" not in r.stderr


def test_validate_checks_a_spec_without_running():
    r = study("validate", "search_spaces/quickstart.yaml")
    assert r.returncode == 0, r.stderr
    assert "ok — study 'quickstart', 5 strategies" in r.stdout


@pytest.mark.parametrize("how", ["--set", "--address"])
def test_run_with_an_unreachable_ray_address_is_one_error(tmp_path, tiny_spec_file, how, port):
    free = port()
    address = f"ray.address=127.0.0.1:{free}" if how == "--set" else f"127.0.0.1:{free}"
    r = study("run", str(tiny_spec_file()), how, address)
    assert r.returncode == 2
    assert f"study: error: ray.address: cannot reach Ray at 127.0.0.1:{free}" in r.stderr
    assert "Traceback" not in r.stderr
