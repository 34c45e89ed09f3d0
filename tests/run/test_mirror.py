"""The mirror's writer, reader and leases against a local folder (file://) and a real S3 API on loopback (moto)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from podium.errors import PodiumError
from podium.run import lease
from podium.run.mirror import Mirror
from podium.run.pull import pull
from podium.run.store import Store


def fake_run(root: Path) -> Path:
    """A run folder as `podium train` leaves it mid-way: fold 0 finished, fold 1 with a checkpoint."""
    files = {".podium-run": "{}", "config.yaml": "name: r\n", "classes.json": '["a", "b"]', "oof.csv": "id\n",
             "locks/fold1.lock": "{}", "fold0/best.ckpt": "w0" * 500, "fold0/done.json": "{}",
             "fold0/tensorboard/events": "e", "fold1/last.ckpt": "l1" * 800, "fold1/metrics.csv": "epoch\n0\n"}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def publish(run: Path, url: str, folds=(0, 1), **kw) -> Mirror:
    m = Mirror(run, url, note=kw.pop("note", lambda text: None), **kw)
    for k in folds:
        m.own(k, lease.new_lease(k))
    return m


def test_manifests_name_complete_objects_and_pull_restores_the_run(tmp_path):
    run = fake_run(tmp_path / "run")
    url = f"file://{tmp_path}/mirror/r"
    assert publish(run, url).close()
    store = Store(url)
    manifests = store.manifests()
    assert sorted(manifests) == ["fold0", "fold1", "run"]
    assert sorted(manifests["run"]["files"]) == [".podium-run", "classes.json", "config.yaml", "oof.csv"]  # no locks
    assert sorted(manifests["fold0"]["files"]) == ["fold0/best.ckpt", "fold0/done.json", "fold0/tensorboard/events"]
    for part, manifest in manifests.items():
        for rel, entry in manifest["files"].items():
            data = store.read_object(part, entry["sha256"])
            assert len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
            assert data == (run / rel).read_bytes()
    summary = pull(url, tmp_path / "copy")
    assert summary == {"files": 9, "folds_done": [0], "folds_unfinished": [1]}
    got = {p.relative_to(tmp_path / "copy") for p in (tmp_path / "copy").rglob("*") if p.is_file()}
    assert got == {p.relative_to(run) for p in run.rglob("*") if p.is_file() and "locks" not in p.parts}
    assert all((tmp_path / "copy" / rel).read_bytes() == (run / rel).read_bytes() for rel in got)
    assert pull(url, tmp_path / "copy")["files"] == 0  # the same run again: nothing to write


def test_pull_refuses_another_run_a_foreign_folder_and_a_damaged_object(tmp_path):
    run = fake_run(tmp_path / "run")
    url = f"file://{tmp_path}/mirror/r"
    publish(run, url).close()
    other = fake_run(tmp_path / "other")
    (other / "config.yaml").write_text("name: other\n")
    before = {p: p.read_bytes() for p in other.rglob("*") if p.is_file()}
    with pytest.raises(PodiumError, match="another run"):
        pull(url, other)
    assert before == {p: p.read_bytes() for p in other.rglob("*") if p.is_file()}
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(PodiumError, match="not a podium run folder"):
        pull(url, tmp_path / "mine")
    entry = Store(url).manifest("fold1")["files"]["fold1/last.ckpt"]
    obj = tmp_path / "mirror" / "r" / "objects" / "fold1" / entry["sha256"]
    obj.write_bytes(obj.read_bytes()[:-10])  # truncated in the store: never written into the run
    with pytest.raises(PodiumError, match="changed under every read"):
        pull(url, tmp_path / "copy")
    assert not (tmp_path / "copy" / "fold1" / "last.ckpt").exists()


@pytest.mark.parametrize("where", ["file", "s3"])
def test_a_reader_never_sees_a_manifest_naming_a_missing_or_partial_object(tmp_path, where, request):
    url = f"file://{tmp_path}/mirror/r" if where == "file" else "s3://podium/runs/r"
    if where == "s3":
        request.getfixturevalue("s3")
    run = fake_run(tmp_path / "run")
    ckpt = run / "fold1" / "last.ckpt"
    stop = threading.Event()

    def train():  # a checkpoint rewritten atomically every few milliseconds
        while not stop.wait(0.005):
            tmp = ckpt.with_name(".last.ckpt.x.tmp")
            tmp.write_bytes(os.urandom(1 << 18))
            os.replace(tmp, ckpt)

    mirror = publish(run, url, interval=0.01).start()
    writer = threading.Thread(target=train)
    writer.start()
    store, seen, violations = Store(url), set(), []
    deadline = time.time() + 300
    while store.manifest("fold1") is None and time.time() < deadline:  # the first round connects and uploads all
        time.sleep(0.05)
    deadline, until = time.time() + 3, time.time() + 120  # 3 s, or longer until 3 versions were seen (a busy machine)
    while time.time() < deadline or (len(seen) < 3 and time.time() < until):
        manifest = store.manifest("fold1")
        if manifest is None:
            continue
        seen.add(manifest["files"]["fold1/last.ckpt"]["sha256"])
        for rel, entry in manifest["files"].items():
            try:
                data = store.read_object("fold1", entry["sha256"])
                ok = len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
            except FileNotFoundError:
                ok = False
            if not ok and store.manifest("fold1") == manifest:  # the manifest still published names a bad object
                violations.append(rel)
    stop.set()
    writer.join()
    assert mirror.close()
    assert not violations
    assert len(seen) >= 3, "the writer published too rarely for the test to mean anything"
    # objects named by neither of the last two publications are collected
    objects = Store(url).fs.ls(f"{store.root}/objects/fold1", detail=False)
    assert len(objects) <= 2 + 1 + 2  # last.ckpt's newest two versions, metrics.csv, at most two in flight


def test_a_failing_store_is_reported_once_retried_and_never_raises(tmp_path, s3):
    import fsspec

    run = fake_run(tmp_path / "run")
    notes: list[str] = []
    mirror = publish(run, "s3://not-yet/runs/r", interval=0.05, note=notes.append).start()
    deadline = time.time() + 120
    while not notes and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # more failing rounds, backing off: said once
    assert len(notes) == 1 and "cannot write" in notes[0] and "Training goes on locally" in notes[0], notes
    fsspec.filesystem("s3", skip_instance_cache=True).mkdir("not-yet")  # the store works again
    deadline = time.time() + 20  # the next try comes after the back-off (2, then 4 s ...)
    while time.time() < deadline and "writing again" not in notes[-1]:
        time.sleep(0.1)
    assert "writing again" in notes[-1] and len(notes) == 2, notes
    assert sorted(Store("s3://not-yet/runs/r").parts()) == ["fold0", "fold1", "run"]
    assert mirror.close()
    notes.clear()
    refused = publish(run, "s3://never-made/runs/r", note=notes.append)
    assert not refused.close()  # the end of a command: a few tries, then said, never raised
    assert "cannot write" in notes[0] and "still failing" in notes[-1] and len(notes) == 2, notes


@pytest.mark.parametrize("where", ["file", "s3"])
def test_a_fold_lease_is_taken_once_and_a_stale_one_taken_over(tmp_path, where, request):
    if where == "s3":
        request.getfixturevalue("s3")
    store = Store(f"file://{tmp_path}/m/r" if where == "file" else "s3://podium/runs/r")
    mine, holder = lease.take(store, 0)
    assert mine is not None and holder is None
    again, holder = lease.take(store, 0)
    assert again is None and holder["token"] == mine["token"]
    assert lease.refresh(store, 0, mine)
    lease.release(store, 0, mine)
    theirs, _ = lease.take(store, 0)
    assert theirs is not None
    store.write_lease(0, {**theirs, "heartbeat": time.time() - lease.LEASE_TTL - 1})  # its machine died
    taken, _ = lease.take(store, 0)
    assert taken is not None and json.loads(store.fs.cat_file(store.lease_path(0)))["token"] == taken["token"]
    assert not lease.refresh(store, 0, theirs)  # the dead machine, back, learns it lost the fold


def test_two_takers_at_once_get_the_fold_once(tmp_path, s3):
    store = Store("s3://podium/runs/race")
    barrier, got = threading.Barrier(8), []

    def taker():
        barrier.wait()
        got.append(lease.take(Store("s3://podium/runs/race"), 3)[0])

    threads = [threading.Thread(target=taker) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sum(g is not None for g in got) == 1
    assert store.lease(3)["token"] == next(g for g in got if g)["token"]
