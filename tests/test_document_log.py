"""The change log of an index folder: framing, torn tails, corruption, replay, and every snapshot crash window.

The crash windows are written by hand as the folder states a crash would leave (see the module docstring
of `tdro_suite.index.document_log`), then loaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tdro_suite.data.types import Passage
from tdro_suite.index.dense_index import MANIFEST_FILE, DenseIndex
from tdro_suite.index.document_log import LOG_FILE, Change, DocumentLog, DocumentLogError, encode, read_log
from tdro_suite.index.errors import IndexFormatError
from tdro_suite.serve.errors import ApiError
from tdro_suite.serve.metrics import ServeMetrics
from tdro_suite.serve.service import Service
from tdro_suite.serve.settings import ServeSettings

DIM = 8


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def vectors(n: int, seed: int) -> np.ndarray:
    return unit(np.random.default_rng(seed).normal(size=(n, DIM)))


def add(seq: int, ids: list[str], seed: int, text: str = "t") -> Change:
    return Change(seq, ids, vectors(len(ids), seed), [{"id": i, "title": "", "text": f"{text}-{i}"} for i in ids])


def delete(seq: int, ids: list[str]) -> Change:
    return Change(seq, ids)


def write_log(path: Path, changes: list[Change]) -> list[int]:
    """Write `changes` as records by hand; returns each record's offset."""
    offsets, data = [], b""
    for change in changes:
        offsets.append(len(data))
        data += encode(change)
    path.write_bytes(data)
    return offsets


def snapshot(folder: Path, docs: int = 4, index_type: str = "flat") -> DenseIndex:
    """A saved index of `docs` documents d0..; log_sequence 0."""
    ids = [f"d{i}" for i in range(docs)]
    index = DenseIndex.build(vectors(docs, 0), ids, index_type=index_type, docs=[{"text": i} for i in ids])
    index.save(folder)
    return index


def history() -> list[Change]:
    """Adds, a replace and a delete: what the crash-window tests replay."""
    return [add(1, ["a", "b"], 1), add(2, ["a"], 2, text="new"), delete(3, ["b"]), delete(4, ["d0"])]


def assert_history_applied(index: DenseIndex) -> None:
    assert sorted(index.ids) == ["a", "d1", "d2", "d3"]
    assert index.get_doc("a")["text"] == "new-a"  # the replacement, not the first add
    assert index.search(vectors(1, 2), 1)[1] == [["a"]]  # a's vector is the replacement's
    assert index.log_sequence == 4


def logged_folder(tmp_path: Path) -> Path:
    """A snapshot at change 0 with `history()` in its log: the state before every crash window."""
    folder = tmp_path / "idx"
    snapshot(folder)
    write_log(folder / LOG_FILE, history())
    return folder


def assert_loads_history(folder: Path, replayed: int) -> DenseIndex:
    loaded = DenseIndex.load(folder)
    assert_history_applied(loaded)
    assert loaded.replayed_changes == replayed
    return loaded


def test_round_trip_through_the_writer(tmp_path) -> None:
    changes = [add(1, ["x", "y/z"], 1), delete(2, ["x"]), Change(3, ["ünï"], vectors(1, 3), None)]
    log = DocumentLog.open(tmp_path, 0)
    for change in changes:
        log.append(change)
    log.close()
    contents = read_log(tmp_path / LOG_FILE)
    assert contents.end == contents.size == (tmp_path / LOG_FILE).stat().st_size == log.size
    assert [(c.sequence, list(c.ids), c.docs) for c in contents.changes] == [
        (c.sequence, list(c.ids), None if c.docs is None else list(c.docs)) for c in changes
    ]
    np.testing.assert_array_equal(contents.changes[0].vectors, changes[0].vectors)  # bit-exact float32
    assert contents.changes[1].is_delete and contents.changes[2].docs is None


def test_the_writer_refuses_a_change_out_of_order(tmp_path) -> None:
    log = DocumentLog.open(tmp_path, 5)
    with pytest.raises(ValueError, match="does not follow"):
        log.append(add(7, ["a"], 1))
    log.close()


@pytest.mark.parametrize("cut", [1, 15, 16, 40, -1])
@pytest.mark.parametrize("zero_fill", [False, True])
def test_a_torn_last_record_is_ignored_and_cut_off_by_the_writer(tmp_path, cut, zero_fill) -> None:
    path = tmp_path / LOG_FILE
    offsets = write_log(path, [add(1, ["a"], 1), add(2, ["b"], 2), add(3, ["c"], 3)])
    data = path.read_bytes()
    keep = offsets[2] + (cut if cut > 0 else len(data) - offsets[2] + cut)
    # a crash mid-append: a prefix of the record, or (file size extended first) the prefix then zeros
    path.write_bytes(data[:keep] + (b"\0" * (len(data) - keep) if zero_fill else b""))
    contents = read_log(path)
    assert [c.sequence for c in contents.changes] == [1, 2] and contents.end == offsets[2]

    log = DocumentLog.open(tmp_path, 2)  # the writer cuts the tail off, so the next record follows change 2
    assert log.size == path.stat().st_size == offsets[2]
    log.append(add(3, ["d"], 4))
    log.close()
    assert [list(c.ids) for c in read_log(path).changes] == [["a"], ["b"], ["d"]]


@pytest.mark.parametrize("where", ["payload", "length", "magic"])
def test_damage_in_the_middle_is_an_error_naming_the_file_and_offset(tmp_path, where) -> None:
    path = tmp_path / LOG_FILE
    offsets = write_log(path, [add(1, ["a"], 1), add(2, ["b"], 2), add(3, ["c"], 3)])
    data = bytearray(path.read_bytes())
    position = {"payload": offsets[1] + 30, "length": offsets[1] + 5, "magic": offsets[1]}[where]
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DocumentLogError, match=rf"{LOG_FILE}: the record at byte {offsets[1]} is damaged.*"
                                               rf"intact record follows at byte {offsets[2]}"):
        read_log(path)
    with pytest.raises(DocumentLogError):  # and the writer does not cut acknowledged changes off either
        DocumentLog.open(tmp_path, 3)


def test_a_log_that_is_not_one_sequence_is_refused(tmp_path) -> None:
    offsets = write_log(tmp_path / LOG_FILE, [add(1, ["a"], 1), add(3, ["b"], 2)])
    with pytest.raises(DocumentLogError, match=rf"byte {offsets[1]} is change 3, but the one before it is 1"):
        read_log(tmp_path / LOG_FILE)


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_load_replays_adds_replaces_and_deletes(tmp_path, index_type) -> None:
    folder = tmp_path / "idx"
    live = snapshot(folder, index_type=index_type)
    log = DocumentLog.open(folder, 0)
    for change in history():
        live.apply(change)
        log.append(change)
    log.close()
    loaded = DenseIndex.load(folder)
    assert_history_applied(loaded)
    assert loaded.replayed_changes == 4 and loaded.tombstones == live.tombstones
    assert loaded.ids == live.ids
    assert loaded.get_doc("b") is None and loaded.get_doc("d0") is None


def test_a_snapshot_holds_the_log_and_leaves_none(tmp_path) -> None:
    folder = logged_folder(tmp_path)
    DenseIndex.load(folder).save(folder)
    assert not (folder / LOG_FILE).exists()
    assert json.loads((folder / MANIFEST_FILE).read_text())["log_sequence"] == 4
    assert_loads_history(folder, replayed=0)


# ---- snapshot crash windows, each written by hand ------------------------------------------------------
def test_crash_while_the_snapshot_is_written_keeps_the_old_folder_and_its_log(tmp_path) -> None:
    folder = logged_folder(tmp_path)
    half = tmp_path / ".idx.123-abcdef.tmp"  # the unfinished new folder
    half.mkdir()
    (half / "index.faiss").write_bytes(b"\0" * 10)
    assert_loads_history(folder, replayed=4)


def test_crash_between_the_renames_names_the_folder_to_rename_back(tmp_path) -> None:
    folder = logged_folder(tmp_path)
    aside = tmp_path / ".idx.old-123"
    folder.rename(aside)
    with pytest.raises(IndexFormatError, match=r"interrupted.*\.idx\.old-123; rename it back to idx"):
        DenseIndex.load(folder)
    aside.rename(folder)
    assert_loads_history(folder, replayed=4)


def test_crash_after_the_new_folder_is_in_place_applies_nothing_twice(tmp_path) -> None:
    folder = logged_folder(tmp_path)
    shutil.copytree(folder, tmp_path / ".idx.old-123")  # the old folder, not yet removed
    DenseIndex.load(folder).save(folder)
    assert_loads_history(folder, replayed=0)


def test_a_log_that_outlived_its_snapshot_is_skipped_then_emptied_by_the_writer(tmp_path) -> None:
    folder = logged_folder(tmp_path)
    DenseIndex.load(folder).save(folder)  # snapshot at change 4 ...
    write_log(folder / LOG_FILE, history()[:3])  # ... and an older log put back: a reset that did not happen
    loaded = assert_loads_history(folder, replayed=0)  # nothing applied twice

    log = DocumentLog.open(folder, loaded.log_sequence)  # every record is in the snapshot: start afresh
    assert log.size == 0
    log.append(delete(5, ["a"]))
    log.close()
    assert DenseIndex.load(folder).ids == ["d1", "d2", "d3"]


def test_a_snapshot_in_the_middle_of_the_log_replays_only_what_follows(tmp_path) -> None:
    folder = tmp_path / "idx"
    live = snapshot(folder)
    for change in history()[:2]:
        live.apply(change)
    live.save(folder)  # holds changes 1 and 2
    write_log(folder / LOG_FILE, history())
    assert_loads_history(folder, replayed=2)


def test_a_log_with_a_gap_after_its_snapshot_is_refused(tmp_path) -> None:
    folder = tmp_path / "idx"
    snapshot(folder)
    write_log(folder / LOG_FILE, history()[2:])  # changes 3 and 4 after a snapshot at 0
    with pytest.raises(DocumentLogError, match=r"holds changes up to 0, but the log continues at 3"):
        DenseIndex.load(folder)


# ---- the service: threshold snapshots, shutdown, failed appends ------------------------------------------
def service_on(folder: Path, threshold: int) -> Service:
    service = Service(ServeSettings(index=folder, snapshot_log_bytes=threshold), ServeMetrics())
    service.index = DenseIndex.load(folder)
    return service


def post(service: Service, ids: list[str], seed: int) -> tuple[int, int]:
    return service.add_documents([Passage(i, f"text {i}") for i in ids], vectors(len(ids), seed))


def test_the_service_snapshots_at_its_threshold_and_at_close(tmp_path) -> None:
    folder = tmp_path / "idx"
    snapshot(folder)
    record = len(encode(Change(1, ["n0"], vectors(1, 1), [Passage("n0", "text n0").to_dict()])))  # as posted
    service = service_on(folder, threshold=3 * record)
    assert post(service, ["n0"], 1) == (1, 0)
    assert post(service, ["n1"], 2) == (1, 0)
    assert (folder / LOG_FILE).stat().st_size == 2 * record
    assert post(service, ["n2"], 3) == (1, 0)  # the log reached the threshold: snapshot, no log
    service.wait_for_snapshot()
    assert not (folder / LOG_FILE).exists()
    assert json.loads((folder / MANIFEST_FILE).read_text())["log_sequence"] == 3
    assert post(service, ["n0"], 4) == (0, 1)
    assert service.remove_document("d0") and not service.remove_document("d0")
    assert DenseIndex.load(folder).replayed_changes == 2
    service.close()
    loaded = DenseIndex.load(folder)
    assert loaded.replayed_changes == 0 and not (folder / LOG_FILE).exists()
    assert sorted(loaded.ids) == ["d1", "d2", "d3", "n0", "n1", "n2"] and loaded.log_sequence == 5


def test_a_failed_append_is_not_applied_and_answers_503(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "idx"
    snapshot(folder)
    service = service_on(folder, threshold=1 << 30)
    post(service, ["kept"], 1)

    def disk_full(self, change):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(DocumentLog, "append", disk_full)
    with pytest.raises(ApiError) as failed:
        post(service, ["lost"], 2)
    assert failed.value.status == 503
    with pytest.raises(ApiError):
        service.remove_document("kept")
    assert "lost" not in service.index and "kept" in service.index  # memory matches the disk
    monkeypatch.undo()
    post(service, ["later"], 3)
    assert sorted(DenseIndex.load(folder).ids) == ["d0", "d1", "d2", "d3", "kept", "later"]


def test_a_snapshot_is_made_outside_the_lock_and_keeps_the_changes_made_meanwhile(tmp_path, monkeypatch) -> None:
    from tdro_suite.index.dense_index import FORMAT_VERSION, LOGGED_FORMAT_VERSION

    folder = tmp_path / "idx"
    snapshot(folder)
    record = len(encode(Change(1, ["n0"], vectors(1, 1), [Passage("n0", "text n0").to_dict()])))
    service = service_on(folder, threshold=2 * record)
    post(service, ["n0"], 1)
    assert json.loads((folder / MANIFEST_FILE).read_text())["format_version"] == LOGGED_FORMAT_VERSION
    real_write = DenseIndex.write_files

    def write_while_serving(self, staging: Path) -> None:
        assert service.index_lock.acquire(blocking=False)  # searches and changes are not held up
        service.index_lock.release()
        assert service.search(vectors(1, 1), 1, False)[0][0]["id"] == "n0"
        assert post(service, ["mid"], 5) == (1, 0)  # logged in the old folder while the copy is written
        assert service.remove_document("d1")
        real_write(self, staging)

    monkeypatch.setattr(DenseIndex, "write_files", write_while_serving)
    post(service, ["n1"], 2)  # reaches the threshold: the folder is read back at change 2 and written
    service.wait_for_snapshot()
    monkeypatch.undo()
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["log_sequence"] == 2 and manifest["format_version"] == LOGGED_FORMAT_VERSION
    assert [c.sequence for c in read_log(folder / LOG_FILE).changes] == [3, 4]  # carried into the new folder
    loaded = DenseIndex.load(folder)
    assert loaded.replayed_changes == 2 and sorted(loaded.ids) == ["d0", "d2", "d3", "mid", "n0", "n1"]
    assert not list(tmp_path.glob(".idx.*"))  # neither the staging folder nor the old copy is left
    post(service, ["after"], 6)  # the log reopens in the new folder and continues at change 5
    service.close()
    loaded = DenseIndex.load(folder)
    assert loaded.log_sequence == 5 and "after" in loaded and not (folder / LOG_FILE).exists()
    assert json.loads((folder / MANIFEST_FILE).read_text())["format_version"] == FORMAT_VERSION


def test_a_folder_from_a_newer_format_is_refused(tmp_path) -> None:
    from tdro_suite.index.dense_index import LOGGED_FORMAT_VERSION

    folder = tmp_path / "idx"
    snapshot(folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["format_version"] = LOGGED_FORMAT_VERSION + 1
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="newer tdro-suite"):
        DenseIndex.load(folder)


def test_a_snapshot_copy_dropped_when_a_failed_write_reloaded_the_folder(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "idx"
    snapshot(folder)
    service = service_on(folder, threshold=1)
    real_write = DenseIndex.write_files

    def fail_meanwhile(self, staging: Path) -> None:
        with monkeypatch.context() as m:
            m.setattr(DocumentLog, "append", lambda self, change: (_ for _ in ()).throw(OSError(28, "full")))
            with pytest.raises(ApiError):
                post(service, ["lost"], 9)
        real_write(self, staging)

    monkeypatch.setattr(DenseIndex, "write_files", fail_meanwhile)
    post(service, ["kept"], 1)  # its snapshot is dropped: the log was reopened meanwhile
    service.wait_for_snapshot()
    monkeypatch.undo()
    loaded = DenseIndex.load(folder)
    assert sorted(loaded.ids) == ["d0", "d1", "d2", "d3", "kept"] and loaded.replayed_changes == 1
    assert not list(tmp_path.glob(".idx.*"))
