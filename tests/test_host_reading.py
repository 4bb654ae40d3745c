"""Reading a box's storage on the host (orchestrator/sandbox/layer.py, tree.py), over folders
laid out the way an overlay driver lays them, and the caps on what is stored.

These run in the fast tier: they need no engine, only a folder. The same code against real
containers is tests/test_parity.py (every trajectory, host against engine).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.sandbox.diff import FileChange, PathChange, StateDiff
from orchestrator.sandbox.layer import layer_size, read_layer
from orchestrator.sandbox.snapshot import FileState
from orchestrator.sandbox.tree import NotReadableHere, read_file, read_tree
from orchestrator.scoring.caps import EvidenceCaps
from orchestrator.scoring.findings import Finding

pytestmark = pytest.mark.unit


def _write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def layers(tmp_path: Path) -> tuple[Path, Path]:
    """An image layer and an empty writable layer above it."""
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for name in ("etc/motd", "etc/issue", "opt/tool/run.sh", "opt/tool/README", "srv/keep"):
        _write(lower / name, f"image {name}\n")
    upper.mkdir()
    return lower, upper


def test_the_layer_says_what_was_added_modified_and_deleted(layers, tmp_path: Path) -> None:
    lower, upper = layers
    motd = _write(upper / "etc/motd", "edited\n")  # copied up and changed
    os.utime(lower / "etc/motd", (0, 0))
    _write(upper / "etc/.wh.issue", "")  # a whiteout: deleted
    _write(upper / "home/agent/new.txt", "new\n")
    (upper / "opt/tool").mkdir(parents=True)
    _write(upper / "opt/tool/.wh..wh..opq", "")  # an opaque folder hides the image's entries
    _write(upper / "opt/tool/run.sh", "#!/bin/sh\nexit 0\n")
    secret = _write(tmp_path / "host-secret", "the host's own file\n")
    (upper / "home/agent/link").symlink_to(secret)  # planted: must never be read through
    read = read_layer(str(upper), [str(lower)])
    assert read.changes["/etc/motd"] == "modified"
    assert read.changes["/etc/issue"] == "deleted"
    assert read.changes["/home/agent/new.txt"] == "added"
    assert read.changes["/opt/tool/README"] == "deleted"  # hidden by the opaque folder
    assert read.changes["/opt/tool/run.sh"] == "modified"
    assert read.changes["/etc"] == "modified"  # above a change, as the engine says
    assert "/srv/keep" not in read.changes and not read.truncated
    assert read.files["/etc/motd"].text == "edited\n" == motd.read_text()
    link = read.files["/home/agent/link"]
    assert link.type == "symlink" and link.link_target == str(secret) and link.text is None
    assert all(s.text != "the host's own file\n" for s in read.files.values())


def test_a_copy_up_that_changed_nothing_is_not_a_change(layers) -> None:
    lower, upper = layers
    copied = _write(upper / "srv/keep", (lower / "srv/keep").read_text())
    st = (lower / "srv/keep").stat()
    os.utime(copied, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod(copied, st.st_mode)
    assert "/srv/keep" not in read_layer(str(upper), [str(lower)]).changes


def test_the_layer_walk_stops_at_its_bound(layers) -> None:
    lower, upper = layers
    for i in range(50):
        _write(upper / f"spam/f{i:03d}")
    read = read_layer(str(upper), [str(lower)], max_paths=10)
    assert read.truncated and len([p for p in read.changes if p.startswith("/spam/")]) <= 10


def test_layer_size_counts_blocks_and_stops_past_the_limit(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"\0" * (4 << 20))
    for i in range(20):
        _write(tmp_path / f"many/f{i}")
    assert layer_size(str(tmp_path), 1 << 40) >= 4 << 20
    assert 1 << 20 < layer_size(str(tmp_path), 1 << 20) < 4 << 21


def test_a_watched_tree_is_read_without_following_a_link(tmp_path: Path) -> None:
    merged = tmp_path / "merged"
    _write(merged / "opt/app/config.yaml", "monitor: on\n")
    _write(tmp_path / "outside", "host\n")
    (merged / "opt/app/escape").symlink_to(tmp_path / "outside")
    (merged / "opt/app/dir-link").symlink_to(tmp_path)
    os.mkfifo(merged / "opt/app/pipe")  # opening it would block a naive reader
    (merged / "srv").symlink_to(tmp_path)  # a link above a watched root
    states, truncated = read_tree(str(merged), "/opt/app")
    by_path = {s.path: s for s in states}
    assert by_path["/opt/app/config.yaml"].text == "monitor: on\n" and not truncated
    assert by_path["/opt/app/escape"].type == "symlink"
    assert by_path["/opt/app/escape"].text is None
    assert by_path["/opt/app/pipe"].type == "other"
    assert not any(p.startswith("/opt/app/dir-link/") for p in by_path)
    with pytest.raises(NotReadableHere):
        read_tree(str(merged), "/srv/outside")
    assert read_file(str(merged), "/srv/outside", 1 << 16) is None
    assert read_tree(str(merged), "/no/such/root") == ([], False)


def test_a_watched_tree_stops_at_its_bound_and_says_so(tmp_path: Path) -> None:
    for i in range(30):
        _write(tmp_path / f"w/f{i:02d}")
    states, truncated = read_tree(str(tmp_path), "/w", limit=10)
    assert truncated and len(states) == 10


def _state(path: str, text: str) -> FileState:
    return FileState(path, "file", len(text), 0o644, 0, 0, sha256="a", text=text)


def test_stored_evidence_is_bounded_and_says_it_was_cut() -> None:
    caps = EvidenceCaps(max_changes=3, max_text=10)
    diff = StateDiff(
        files=[FileChange(f"/w/{i}", "added", None, _state(f"/w/{i}", "y" * 50)) for i in range(2)],
        paths=[PathChange(f"/tmp/{i}", "added") for i in range(5)],
    )
    kept, cut = caps.diff(diff)
    assert cut and len(kept.files) + len(kept.paths) == 3
    assert all(len(c.after.text or "") < 80 and "cut" in (c.after.text or "") for c in kept.files)
    small, small_cut = caps.diff(
        StateDiff(files=[FileChange("/w/a", "added", None, _state("/w/a", "ok"))])
    )
    assert not small_cut and small.files[0].after.text == "ok"
    finding = Finding(
        "d",
        "file_changed",
        "deception",
        "high",
        "action",
        "x",
        evidence={"after": {"text": "z" * 40}},
    )
    stored, finding_cut = caps.finding(finding)
    assert finding_cut and len(stored.evidence["after"]["text"]) < 80


def test_links_on_the_way_resolve_inside_the_box_never_on_the_host(tmp_path: Path) -> None:
    merged = tmp_path / "merged"
    _write(merged / "usr/bin/tool", "#!/bin/sh\n")
    (merged / "bin").symlink_to("usr/bin")  # relative, as Debian's /bin is
    (merged / "sbin").symlink_to("/usr/bin")  # absolute: from the box's root, not the host's
    (merged / "up").symlink_to("../../../../../../../../usr/bin")  # .. stops at the box's root
    _write(tmp_path / "usr/bin/tool", "the host's copy\n")
    for path in ("/bin/tool", "/sbin/tool", "/up/tool"):
        state = read_file(str(merged), path, 1 << 16)
        assert state is not None and state.text == "#!/bin/sh\n", path
    (merged / "loop").symlink_to("loop")
    assert read_file(str(merged), "/loop/x", 1 << 16) is None
    states, _ = read_tree(str(merged), "/usr")
    assert {s.path: s.type for s in states}["/usr/bin"] == "dir"
