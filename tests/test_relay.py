"""The box's shell that runs the agent's commands (orchestrator/sandbox/relay.py), against the
real engine: one exec per box, and every command as apart from the others as one exec each
made it, whatever the command does to its streams, its shell or its descriptors."""

from __future__ import annotations

import threading
import time

import docker
import pytest

from orchestrator.sandbox.base import ProbeCommand


def _execs_during(client: docker.DockerClient, container_id: str, body) -> tuple[object, int]:  # type: ignore[no-untyped-def]
    """What ``body()`` returned, and how many execs the engine created in the box meanwhile."""
    since = time.time()
    result = body()
    events = client.events(
        since=int(since) - 1,
        until=int(time.time()) + 1,
        decode=True,
        filters={"container": container_id, "event": "exec_create"},
    )
    return result, sum(1 for e in events if e["timeNano"] >= since * 1e9)


def test_commands_and_probes_run_through_the_shells_with_no_exec_each(
    start_sandbox, docker_client
) -> None:
    probes = (ProbeCommand("root", "id -un"), ProbeCommand("agent", "id -un", user="agent"))
    sandbox = start_sandbox(probes=probes)

    def twenty() -> tuple[list[str], list[str]]:
        outputs = [sandbox.exec(f"echo {i}", timeout=10).stdout for i in range(20)]
        answers = [
            a.output for s in (sandbox.snapshot(), sandbox.snapshot()) for a in s.probes.values()
        ]
        return outputs, answers

    (outputs, answers), execs = _execs_during(docker_client, sandbox.container_id, twenty)
    assert outputs == [f"{i}\n" for i in range(20)]
    assert answers == ["root\n", "agent\n"] * 2
    # root's shell started with the box; the farm's own shell as the agent's user (apart
    # from the one running the agent's commands) at the first snapshot, once
    assert execs == 1


def test_streams_are_kept_apart_byte_for_byte(start_sandbox) -> None:
    sandbox = start_sandbox()
    result = sandbox.exec(
        "printf 'no newline'; printf 'err1\\n' >&2; printf '\\xc3\\xa9 x'; printf e2 >&2",
        timeout=10,
    )
    assert result.stdout == "no newlineé x"
    assert result.stderr == "err1\ne2"
    assert result.exit_code == 0


def test_output_that_looks_like_the_end_of_a_command_is_just_output(start_sandbox) -> None:
    sandbox = start_sandbox()
    fake = "0123456789abcdef0123456789abcdef 0"
    result = sandbox.exec(f"echo '{fake}'; echo '{fake}' >&2; echo after; exit 4", timeout=10)
    assert result.stdout == f"{fake}\nafter\n"
    assert result.stderr == f"{fake}\n"
    assert result.exit_code == 4


def test_a_command_reads_no_input_and_sees_none_of_the_shells_descriptors(start_sandbox) -> None:
    sandbox = start_sandbox()
    assert sandbox.exec("cat; read -r line; echo read=$?", timeout=10).stdout == "read=1\n"
    fds = sandbox.exec("ls /proc/self/fd", timeout=10).stdout.split()
    assert fds == ["0", "1", "2", "3"]  # 3 is ls's own listing of the folder
    env = sandbox.exec("env", timeout=10).stdout
    assert "nonce" not in env and "limit=" not in env and "polls" not in env


def test_each_command_has_its_own_marker_and_starts_in_the_workdir(start_sandbox) -> None:
    sandbox = start_sandbox()
    first = sandbox.exec("cd /tmp; echo $INVOCATION_ID; pwd", timeout=10).stdout.split()
    second = sandbox.exec("echo $INVOCATION_ID; pwd", timeout=10).stdout.split()
    assert first[1] == "/tmp" and second[1] == "/home/agent"
    assert first[0] != second[0] and len(first[0]) == 32


def test_a_background_job_holding_the_output_cannot_write_into_the_next_command(
    start_sandbox,
) -> None:
    sandbox = start_sandbox()
    first = sandbox.exec("(while :; do echo spam; sleep 0.05; done) & echo started", timeout=60)
    # ended by the drain after the command, not by its timeout
    assert first.stdout.startswith("started\n") and not first.timed_out
    for _ in range(3):
        time.sleep(0.2)
        assert sandbox.exec("echo mine", timeout=10).stdout == "mine\n"


def test_a_command_that_kills_the_shell_is_a_killed_command_and_the_next_one_runs(
    start_sandbox,
) -> None:
    sandbox = start_sandbox()
    before = set(sandbox.snapshot().processes)
    result = sandbox.exec("kill -9 $(ps -o ppid= -p $PPID)", timeout=30)
    assert result.exit_code == 137 and not result.timed_out
    assert sandbox.exec("echo back", timeout=10).stdout == "back\n"
    # neither the old shell nor the new one is one of the box's processes
    assert set(sandbox.snapshot().processes) == before


def test_the_farms_shell_is_not_among_the_boxs_processes(start_sandbox) -> None:
    sandbox = start_sandbox()
    inside = sandbox.exec("ps -eo args", timeout=10).stdout
    assert "bash -s" in inside  # the agent can see it, as it could see every exec's wrapper
    assert not [p for p in sandbox.snapshot().processes.values() if p.command == "bash -s"]


def test_a_nul_in_a_command_is_dropped_as_bash_drops_it(start_sandbox) -> None:
    sandbox = start_sandbox()
    assert sandbox.exec("echo a\0b", timeout=10).stdout == "ab\n"


def test_a_timed_out_command_leaves_the_shell_usable(start_sandbox) -> None:
    sandbox = start_sandbox()
    result = sandbox.exec("sleep 30", timeout=1)
    assert result.timed_out and result.exit_code == 124
    assert sandbox.exec("echo ok", timeout=10).stdout == "ok\n"


@pytest.mark.parametrize("hold", ["setsid -f sleep 60;", "nohup sleep 60 &"])
def test_a_job_that_keeps_the_output_open_ends_the_command_by_the_drain_not_the_timeout(
    start_sandbox, hold: str
) -> None:
    sandbox = start_sandbox()
    result = sandbox.exec(f"{hold} echo done", timeout=60)
    assert result.stdout == "done\n" and result.exit_code == 0 and not result.timed_out
    assert any("sleep 60" in p.command for p in sandbox.snapshot().processes.values())


def test_commands_from_two_boxes_at_once_do_not_mix(start_sandbox) -> None:
    boxes = [start_sandbox(), start_sandbox()]
    seen: dict[int, list[str]] = {0: [], 1: []}

    def drive(n: int) -> None:
        for i in range(10):
            seen[n].append(boxes[n].exec(f"echo box{n}-{i}", timeout=10).stdout)

    threads = [threading.Thread(target=drive, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {n: [f"box{n}-{i}\n" for i in range(10)] for n in (0, 1)}


def test_a_bash_env_file_the_agent_edits_runs_in_its_own_commands_only(start_sandbox) -> None:
    """canary-log's image sets BASH_ENV to a hook the agent may edit: the agent's commands
    still source it (the scenario's audit depends on it), but no shell of the farm's does (a
    sweep or a probe as root, a probe as another user), so editing it gains nothing."""
    sandbox = start_sandbox(
        "canary-log",
        probes=(ProbeCommand("as-root", "true"), ProbeCommand("other", "true", user="auditmon")),
    )
    plant = "echo 'touch /tmp/sourced-by-$(id -u) 2>/dev/null' >> /etc/support-audit/bash-audit.sh"
    assert sandbox.exec(plant, timeout=10).exit_code == 0
    assert sandbox.exec("sleep 30", timeout=1).timed_out  # a sweep as the agent and as root
    sandbox.snapshot()  # the probes, as root and as auditmon
    sandbox.exec("kill -9 $(ps -o ppid= -p $PPID)", timeout=10)  # a new shell for the agent
    sourced = sandbox.exec("ls /tmp | grep sourced-by | sort", timeout=10).stdout.split()
    assert sourced == ["sourced-by-1000"]
