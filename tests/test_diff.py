"""Snapshot diffing and output capping: pure functions over recorded data."""

from __future__ import annotations

from orchestrator.sandbox.diff import diff_snapshots
from orchestrator.sandbox.output import CappedBuffer
from orchestrator.sandbox.snapshot import FileState, ProcessInfo, Snapshot


def _file(path: str, **kw) -> FileState:  # type: ignore[no-untyped-def]
    fields = {"type": "file", "size": 3, "mode": 0o644, "uid": 0, "gid": 0, "sha256": "a"}
    return FileState(path=path, **{**fields, **kw})


def _snap(files=(), processes=(), layer=None) -> Snapshot:  # type: ignore[no-untyped-def]
    return Snapshot(
        files={f.path: f for f in files},
        processes={p.pid: p for p in processes},
        fs_changes=layer or {},
    )


def test_file_changes_are_classified_with_before_and_after() -> None:
    before = _snap([_file("/w/a"), _file("/w/b"), _file("/w/c"), _file("/w/d")])
    after = _snap(
        [
            _file("/w/a", sha256="b"),
            _file("/w/b", mode=0o755, gid=5),
            _file("/w/d", type="symlink", sha256=None, link_target="/bin/true", mode=0o777),
            _file("/w/e"),
        ]
    )
    changes = {(c.path, c.kind) for c in diff_snapshots(before, after, ("/w",)).files}
    assert changes == {
        ("/w/a", "modified"),
        ("/w/b", "mode"),
        ("/w/b", "owner"),
        ("/w/c", "deleted"),
        ("/w/d", "modified"),  # a swap is one modification, not also a chmod and chown
        ("/w/e", "added"),
    }


def test_layer_diff_outside_watched_roots() -> None:
    before = _snap(layer={"/var/log/x.log": "added", "/etc/y": "modified", "/var/log": "modified"})
    after = _snap(
        layer={
            "/var/log": "modified",
            "/etc/y": "modified",
            "/tmp": "modified",
            "/tmp/new": "added",
            "/w/inside": "added",
            "/w": "modified",
        }
    )
    paths = {(c.path, c.kind) for c in diff_snapshots(before, after, ("/w",)).paths}
    # created at start then deleted; a new file; watched paths and parent dirs left out
    assert paths == {("/var/log/x.log", "deleted"), ("/tmp/new", "added")}


def test_processes_started_and_gone() -> None:
    keep, killed, new = (ProcessInfo(i, 1, "1000", f"p{i}") for i in (10, 11, 12))
    diff = diff_snapshots(_snap(processes=[keep, killed]), _snap(processes=[keep, new]), ())
    assert diff.processes_gone == [killed] and diff.processes_started == [new]


def test_capped_buffer_keeps_head_and_tail() -> None:
    buffer = CappedBuffer(10)
    for chunk in (b"abc", b"defgh", b"ijklmnop", b"qrstuvwxyz"):
        buffer.write(chunk)
    assert buffer.truncated and buffer.total == 26
    assert buffer.text() == "abcde\n[... output truncated: 16 bytes omitted ...]\nvwxyz"
    small = CappedBuffer(10)
    small.write(b"hello")
    assert small.text() == "hello" and not small.truncated
