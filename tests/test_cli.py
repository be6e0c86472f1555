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
    r = study("trial", "search_spaces/quickstart.yaml", "--strategy", "combined", "--set", "training.epochs=2",
              "--set", "data.synthetic.n=300", "--set", "training.num_threads=1")
    assert r.returncode == 0, r.stderr
    assert "sampler=class_balanced loss=class_weighted augment=standard" in r.stdout
    assert r.stdout.count("\nepoch ") == 2
    assert '"test/sensitivity"' in r.stdout


@pytest.mark.parametrize("args, message", [
    (["trial", "nope.yaml"], "nope.yaml: spec file does not exist"),
    (["trial", "search_spaces/quickstart.yaml", "--strategy", "vabal"], "strategies: no strategy 'vabal'"),
    (["trial", "search_spaces/quickstart.yaml", "--set", "training.lr=-1"], "lr: Input should be greater than 0"),
    (["trial", "search_spaces/quickstart.yaml", "--set", "training.epochs=0"],
     "--set: training.epochs: Input should be greater than or equal to 1"),
    (["trial", "search_spaces/quickstart.yaml", "--set", "epochs=2"],
     "--set 'epochs=2': 'epochs' is not a spec key (spec keys: name, data, model, training, strategies, "),
    (["run", "search_spaces/quickstart.yaml", "--set", "training.lr=[1"],
     "--set 'training.lr=[1': not valid YAML at line 1, column 3: expected ',' or ']', but got '<stream end>'"),
    (["validate", "search_spaces/quickstart.yaml", "--set", "training.lr=[1"], "--set 'training.lr=[1': not valid"),
])
def test_trial_bad_input_is_one_message(args, message):
    r = study(*args)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("study: error:") and message in r.stderr
    assert "Traceback" not in r.stderr


def test_validate_checks_a_spec_and_its_data_without_running():
    r = study("validate", "search_spaces/quickstart.yaml")
    assert r.returncode == 0, r.stderr
    assert "ok — study 'quickstart', 6 strategies" in r.stdout
    assert "data: ok — 3000 images (covid 102, normal 1719, pneumonia 1179)" in r.stdout
    assert "not checked here: the Ray address and the trials' resources" in r.stdout
    quick = study("validate", "search_spaces/quickstart.yaml", "--no-data")
    assert quick.returncode == 0 and "not checked (--no-data)" in quick.stdout and "data: ok" not in quick.stdout


def test_validate_names_what_the_data_lack(tmp_path):
    r = study("validate", "search_spaces/quickstart.yaml", "--set", "data.positive_class=tb")
    assert r.returncode == 2
    assert "study: error: data.positive_class: 'tb' is not one of the classes" in r.stderr


def test_help_and_version_answer_without_importing_torch_or_ray():
    code = ("import sys; from study.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'ray', 'mlflow', 'sklearn') if m in sys.modules]\n"
            "print('heavy:', heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "heavy: []" in r.stdout, r.stdout + r.stderr
    assert "Hyperparameter studies of class-imbalance strategies" in r.stdout
    v = study("--version")
    assert v.returncode == 0 and v.stdout.strip().startswith("study 0.")


@pytest.mark.parametrize("how", ["--set", "--address"])
def test_run_with_an_unreachable_ray_address_is_one_error(tmp_path, tiny_spec_file, how, port):
    free = port()
    address = f"ray.address=127.0.0.1:{free}" if how == "--set" else f"127.0.0.1:{free}"
    r = study("run", str(tiny_spec_file()), how, address)
    assert r.returncode == 2
    assert f"study: error: ray.address: cannot reach Ray at 127.0.0.1:{free}" in r.stderr
    assert "Traceback" not in r.stderr


def test_an_address_that_answers_but_is_not_ray_is_one_error(tiny_spec_file):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"127.0.0.1:{server.server_port}"
        r = subprocess.run([sys.executable, "-m", "study.cli", "run", str(tiny_spec_file()), "--address", address],
                           capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 2
    assert f"study: error: ray.address: {address} is not Ray (it answered \"HTTP/1.0 501" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_silent_port_is_one_error_not_a_hang(tiny_spec_file):
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        r = subprocess.run([sys.executable, "-m", "study.cli", "run", str(tiny_spec_file()), "--address", address],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert f"ray.address: {address} accepts connections but sent nothing within 5 s" in r.stderr


@pytest.mark.parametrize("request_, shown", [("resources.cpu=64", "64 CPU and 0 GPU"),
                                             ("resources.gpu=1", "1 CPU and 1 GPU")])
def test_a_trial_request_no_node_can_hold_is_one_error_not_a_hang(tiny_spec_file, request_, shown):
    r = subprocess.run([sys.executable, "-m", "study.cli", "run", str(tiny_spec_file()), "--set", request_,
                        "--set", "ray.num_gpus=0"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"study: error: resources: a trial asks for {shown}, but no node of the Ray cluster at this " \
           "machine (a local Ray) has that much" in r.stderr
    assert "Traceback" not in r.stderr


def test_an_unwritable_storage_path_is_one_error_before_any_work(tmp_path, tiny_spec_file):
    (tmp_path / "plain-file").write_text("not a folder")
    r = study("run", str(tiny_spec_file()), "--set", f"storage_path={tmp_path / 'plain-file' / 'results'}")
    assert r.returncode == 2
    assert f"study: error: storage_path: cannot write the study's folder {tmp_path / 'plain-file'}" in r.stderr
