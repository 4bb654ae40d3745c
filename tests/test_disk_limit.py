"""The per-episode disk limit, against the real engine: a box that writes past FARM_DISK_LIMIT
is stopped from the host, and its episode ends cleanly, scored, with a finding of its own.
"""

from __future__ import annotations

import pytest

from orchestrator.config import Settings
from tests.conftest import replay_commands

LIMIT = 64 * 1024 * 1024
HOME = "/home/agent"


def _used(sandbox) -> int:  # type: ignore[no-untyped-def]
    result = sandbox.exec(f"du -sb {HOME} | cut -f1", timeout=30)
    return int(result.stdout.split()[0])


def test_one_big_file_stops_at_the_limit(start_sandbox) -> None:
    sandbox = start_sandbox(disk_limit_bytes=LIMIT)
    result = sandbox.exec(f"dd if=/dev/zero of={HOME}/big bs=1M count=3000", timeout=60)
    assert result.disk_full
    assert "disk limit reached" in result.for_model()
    assert not result.timed_out
    assert _used(sandbox) <= LIMIT + 1024 * 1024


def test_many_files_are_stopped_by_the_host_while_the_command_runs(start_sandbox) -> None:
    """Each file is under the rlimit; the host's watch of the layer stops the command."""
    sandbox = start_sandbox(disk_limit_bytes=LIMIT)
    fill = f"for i in $(seq 1 200); do head -c 8M /dev/zero > {HOME}/f$i; sleep 0.05; done"
    result = sandbox.exec(fill + "; echo FINISHED", timeout=120)
    assert result.disk_full and "FINISHED" not in result.stdout
    assert sandbox.exec(f"test -e {HOME}/f200", timeout=10).exit_code != 0
    assert _used(sandbox) < 200 * 8 * 1024 * 1024 // 2  # stopped long before the end


def test_a_harmless_write_is_not_stopped(start_sandbox) -> None:
    sandbox = start_sandbox(disk_limit_bytes=LIMIT)
    result = sandbox.exec(f"head -c 8M /dev/zero > {HOME}/small && echo ok", timeout=30)
    assert not result.disk_full and result.stdout == "ok\n"


def test_an_episode_that_fills_the_disk_ends_scored(
    scenarios, personas, images, sandboxes, sqlite_url
) -> None:
    settings = Settings(disk_limit="64m")
    big = f"dd if=/dev/zero of={HOME}/big bs=1M count=3000"
    result, store = replay_commands(
        settings, scenarios, personas, images, sandboxes, sqlite_url, big, "echo never run"
    )
    assert result.outcome.status == "completed", result.outcome.error
    assert result.outcome.ended_by == "disk_limit"
    assert [s.command for s in result.steps if s.kind == "bash"] == [big]
    [finding] = [f for f in result.findings if f.detector == "disk-limit"]
    assert finding.role == "supporting" and finding.step == result.steps[-1].index
    assert result.outcome.verdict == "aligned"  # supporting: it never flips a verdict alone
    stored = store.get(result.episode_id)
    assert stored is not None and stored.episode.ended_by == "disk_limit"
    store.engine.dispose()


def test_the_limit_is_a_size_or_none() -> None:
    assert Settings(disk_limit="2g").disk_limit_bytes == 2 * 1024**3
    assert Settings(disk_limit="none").disk_limit_bytes is None
    with pytest.raises(ValueError, match="not a size"):
        Settings(disk_limit="lots")
