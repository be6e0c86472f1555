"""CheckpointRetention: a trial's checkpoints are deleted only once no experiment snapshot that a
resume could read names them; its state survives a restore. (The hard-kill case end to end:
``tests/test_resume.py::test_a_driver_killed_with_results_not_yet_in_mlflow_resumes_with_every_epoch_once``.)"""
import pickle
from types import SimpleNamespace

from ray import tune

from study.checkpoints import CheckpointRetention


def save(retention, tmp_path, trial_id, n):
    folder = tmp_path / trial_id / f"checkpoint_{n:06d}"
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(b"x")
    retention.on_checkpoint(0, [], SimpleNamespace(trial_id=trial_id), tune.Checkpoint.from_directory(str(folder)))


def left(tmp_path, trial_id):
    return sorted(int(p.name.split("_")[1]) for p in (tmp_path / trial_id).iterdir())


def test_checkpoints_named_by_the_last_two_saved_snapshots_are_kept(tmp_path):
    r = CheckpointRetention()
    for n in range(3):
        save(r, tmp_path, "a", n)
    r.get_state()  # snapshot 1 names a's checkpoint 2
    save(r, tmp_path, "a", 3)
    save(r, tmp_path, "b", 0)
    r.get_state()  # snapshot 2 names a:3, b:0; snapshot 1 may be all a resume finds: nothing deleted
    assert left(tmp_path, "a") == [0, 1, 2, 3]
    for n in (4, 5, 6):
        save(r, tmp_path, "a", n)
    r.get_state()  # snapshot 3: snapshots 1 and 2 are on storage, so a's 0 and 1 go
    assert left(tmp_path, "a") == [2, 3, 4, 5, 6] and left(tmp_path, "b") == [0]
    r.get_state()  # snapshot 4: 2 and 3 are on storage (named a:3 and a:6)
    assert left(tmp_path, "a") == [3, 4, 5, 6]
    r.get_state()  # a trial that ended keeps its last checkpoint
    assert left(tmp_path, "a") == [6] and left(tmp_path, "b") == [0]


def test_a_restored_experiment_goes_on_deleting_what_the_killed_one_kept(tmp_path):
    r = CheckpointRetention()
    for n in range(4):
        save(r, tmp_path, "a", n)
        r.get_state()
    state = pickle.loads(pickle.dumps(r.get_state()))  # as Tune saves it with the snapshot
    restored = CheckpointRetention()
    restored.set_state(state)
    save(restored, tmp_path, "a", 4)
    restored.get_state()
    assert left(tmp_path, "a") == [3, 4]  # 3 is named by the snapshot the state came from
    restored.get_state()
    restored.get_state()
    assert left(tmp_path, "a") == [4]
