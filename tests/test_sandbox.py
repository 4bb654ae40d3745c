"""The Docker sandbox against the real engine: hardening, exec, limits, cleanup."""

from __future__ import annotations

import socket
import subprocess
import uuid

import docker
import pytest

from orchestrator.config import Settings
from orchestrator.sandbox.backends.docker import DockerProvider, RuntimeRefused
from orchestrator.sandbox.base import SandboxError
from orchestrator.sandbox.reap import reap
from tests.conftest import SESSION


def _container(client: docker.DockerClient, sandbox) -> docker.models.containers.Container:  # type: ignore[no-untyped-def]
    return client.containers.get(sandbox.container_id)


def _processes(sandbox) -> list[str]:  # type: ignore[no-untyped-def]
    return [p.command for p in sandbox.snapshot().processes.values()]


def test_container_is_labelled_and_hardened(start_sandbox, docker_client) -> None:
    sandbox = start_sandbox()
    attrs = _container(docker_client, sandbox).attrs
    labels = attrs["Config"]["Labels"]
    assert labels["farm.managed"] == "true"
    assert labels["farm.episode"] == sandbox.config.episode_id
    assert labels["farm.scenario"] == "shutdown-script"
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["CapDrop"] == ["ALL"]
    assert set(host["CapAdd"] or []) == set(sandbox.config.capabilities)
    assert host["Init"] is True
    assert host["Memory"] == 512 * 1024 * 1024
    assert host["PidsLimit"] == 256
    assert host["NanoCpus"] == 1_000_000_000
    assert attrs["Mounts"] == [] and not host["Binds"]

    inside = sandbox.exec(
        "grep -E '^(NoNewPrivs|CapEff)' /proc/self/status; ls /sys/class/net; "
        "test -e /var/run/docker.sock && echo SOCKET || echo no-socket",
        timeout=10,
    )
    assert "NoNewPrivs:\t1" in inside.stdout
    assert "CapEff:\t0000000000000000" in inside.stdout
    assert inside.stdout.split()[-2:] == ["lo", "no-socket"]


def test_exec_runs_bash_as_the_scenario_user_in_its_workdir(start_sandbox) -> None:
    sandbox = start_sandbox()
    result = sandbox.exec("id -un; pwd; echo oops >&2; exit 3", timeout=10)
    assert result.stdout.split() == ["agent", "/home/agent"]
    assert result.stderr == "oops\n"
    assert result.exit_code == 3
    assert not result.timed_out
    assert result.duration_s > 0
    assert "[exit code 3]" in result.for_model()


def test_timeout_kills_the_whole_process_tree(start_sandbox) -> None:
    sandbox = start_sandbox()
    command = (
        "sleep 901 & setsid sleep 902 & (sleep 903 &) ; nohup sleep 904 >/dev/null & "
        # no marker in its environment, its own session, reparented to init
        "env -i setsid bash -c 'sleep 906 & disown' & "
        "env -i /usr/bin/setsid -f /bin/sleep 907; sleep 905"
    )
    result = sandbox.exec(command, timeout=1)
    assert result.timed_out
    assert result.exit_code in (124, 137)
    assert "timed out" in result.for_model()
    left = [c for c in _processes(sandbox) if "sleep 90" in c]
    assert left == []
    assert sandbox.exec("echo still-usable", timeout=5).stdout == "still-usable\n"


def test_a_timeout_spares_earlier_jobs_and_the_scenarios_services(start_sandbox) -> None:
    """What the timed-out command started goes; what ran before it stays."""
    sandbox = start_sandbox()
    sandbox.snapshot()  # the baseline: the scenario's services are running
    services = [c for c in _processes(sandbox) if "maintenance-scheduler" in c]
    assert services
    assert sandbox.exec("env -i setsid sleep 801 >/dev/null 2>&1 &", timeout=5).exit_code == 0
    assert sandbox.exec("env -i setsid -f sleep 802; sleep 60", timeout=1).timed_out
    running = _processes(sandbox)
    assert any("sleep 801" in c for c in running), "an earlier command's job is not this one's"
    assert not any("sleep 802" in c for c in running)
    assert [c for c in running if "maintenance-scheduler" in c] == services


def test_killing_every_process_is_recorded_as_a_killed_command_not_a_timeout(
    start_sandbox,
) -> None:
    sandbox = start_sandbox()
    result = sandbox.exec("kill -9 -1", timeout=30)
    assert not result.timed_out and "timed out" not in result.for_model()
    assert result.exit_code == 137
    assert sandbox.exec("echo alive", timeout=5).stdout == "alive\n"


def test_huge_output_is_capped_with_a_visible_marker(start_sandbox) -> None:
    sandbox = start_sandbox(output_limit_bytes=4096)
    result = sandbox.exec("head -c 3000000 /dev/zero | tr '\\0' x; echo; echo THE-END", timeout=30)
    assert result.truncated
    assert "output truncated" in result.stdout
    assert result.stdout.startswith("x" * 100)
    assert result.stdout.rstrip().endswith("THE-END")
    assert len(result.stdout) < 4096 + 200
    assert result.exit_code == 0


def test_fork_bomb_is_contained_and_cleared(start_sandbox) -> None:
    sandbox = start_sandbox()
    scheduler = [p for p in _processes(sandbox) if "maintenance-scheduler" in p]
    result = sandbox.exec("bomb() { bomb | bomb & }; bomb", timeout=5)
    assert "process limit reached" in result.stderr  # noticed, and its processes killed
    after = sandbox.exec("echo alive; ps -e --no-headers | wc -l", timeout=15)
    assert after.exit_code == 0
    assert after.stdout.split()[0] == "alive"
    assert int(after.stdout.split()[1]) < 20  # the bomb's processes are gone
    # The scenario's own services were not part of the exec and are untouched.
    assert [p for p in _processes(sandbox) if "maintenance-scheduler" in p] == scheduler


def test_silent_detached_fork_bomb_is_contained(start_sandbox, sandboxes, docker_client) -> None:
    """A bomb that hides its errors keeps the box busy, but within its limits: commands
    still return, host-side evidence still works, and close removes it all."""
    sandbox = start_sandbox()
    sandbox.exec("bomb() { bomb | bomb & }; bomb >/dev/null 2>&1 &", timeout=5)
    sandbox.exec("echo alive", timeout=5)  # returns (possibly failed), does not hang
    # Host-side evidence is intact: the scenario's service is still seen.
    assert any("maintenance-scheduler" in p for p in _processes(sandbox))
    container_id = sandbox.container_id
    sandbox.close()
    sandboxes.close()  # the removal runs off the critical path; closing waits for it
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container_id)


def test_memory_hog_is_contained(start_sandbox) -> None:
    sandbox = start_sandbox()
    hog = "python3 -c \"b = bytearray(2 * 1024**3); print('allocated', len(b))\""
    result = sandbox.exec(hog, timeout=60)
    assert result.exit_code != 0
    assert "allocated" not in result.stdout
    assert sandbox.exec("echo alive", timeout=10).stdout == "alive\n"


def test_close_removes_the_container_even_when_the_body_raises(
    start_sandbox, sandboxes, docker_client
) -> None:
    sandbox = start_sandbox()
    container_id = sandbox.container_id
    with pytest.raises(RuntimeError), sandbox:
        raise RuntimeError("boom")
    sandboxes.close()
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container_id)
    sandbox.close()  # idempotent


def test_exec_in_a_dead_container_is_an_infrastructure_error(start_sandbox, docker_client) -> None:
    sandbox = start_sandbox()
    _container(docker_client, sandbox).kill()
    with pytest.raises(SandboxError):
        sandbox.exec("true", timeout=5)
    with pytest.raises(SandboxError):
        sandbox.snapshot()


def test_reap_removes_stale_farm_containers_and_nothing_else(
    start_sandbox, docker_client, images
) -> None:
    finished = subprocess.Popen(["true"])  # a pid of this host that is no longer alive
    finished.wait()
    dead_owner = f"{socket.gethostname()}:{finished.pid}"
    stale = start_sandbox(extra_labels={"farm.owner": dead_owner, "farm.session": SESSION})
    live = start_sandbox()
    stranger = docker_client.containers.run(
        images["base"],
        detach=True,
        name=f"farm-lookalike-{uuid.uuid4().hex[:8]}",  # a farm-like name but no farm label
        labels={"farm.managed": "false"},
    )
    try:
        removed = reap(docker_client)
        assert stale.config.episode_id[:12] in " ".join(removed)
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(stale.container_id)
        docker_client.containers.get(live.container_id)  # its runner (this process) is alive
        docker_client.containers.get(stranger.id)
    finally:
        stranger.remove(force=True)


@pytest.mark.parametrize(
    ("runtime", "reason"),
    [("runsc", "gVisor"), ("no-such-runtime", "not a runtime of this engine")],
)
def test_a_runtime_whose_evidence_would_be_wrong_is_refused(runtime, reason, docker_client) -> None:
    with pytest.raises(RuntimeRefused, match=reason):
        DockerProvider(Settings(runtime=runtime), docker_client)


def test_the_default_runtime_is_recorded(start_sandbox) -> None:
    assert start_sandbox().provenance()["runtime"] == "runc"
