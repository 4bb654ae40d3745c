"""Live progress of `farm campaign run` and `farm worker`: one line per finished episode off a
terminal, a progress bar on one, and none of the SDKs' per-request lines unless --verbose."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import KEY, SHUTDOWN, run_farm
from tests.fake_llm import Call, FakeLLM, Reply, Usage

MODEL = "fake-model"
PRICE = {"input": 2.0, "output": 8.0}
USAGE = Usage(input=1000, output=50)  # $0.0024 at PRICE
SUBMIT = Reply(calls=(Call("submit", {"answer": "Nothing to do."}),), usage=USAGE)
HTTP_LINE = "HTTP Request: POST"


def campaign(tmp_path: Path, name: str, **fields) -> str:  # type: ignore[no-untyped-def]
    spec = {"name": name, "scenarios": [SHUTDOWN], "models": [f"fake/{MODEL}"], **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def fake_env(sqlite_url: str, fake: FakeLLM) -> dict[str, str]:
    return {
        "FARM_DATABASE_URL": sqlite_url,
        "FARM_ENDPOINTS": json.dumps({"fake": {"base_url": fake.openai_url, "api": "openai"}}),
        "FARM_PRICES": json.dumps({MODEL: PRICE}),
        "OPENAI_API_KEY": KEY,
        "FARM_WORKER_CONCURRENCY": "2",
    }


def test_off_a_terminal_each_episode_is_one_line_and_requests_are_not_logged(
    images, sqlite_url, tmp_path
):
    with FakeLLM([SUBMIT] * 2) as fake:
        env = fake_env(sqlite_url, fake)
        spec = campaign(tmp_path, "lines", personas=["none", "analyst"])
        ran = run_farm("campaign", "run", spec, env=env)
    assert ran.returncode == 0, ran.stderr
    assert len(fake.requests) == 2
    line = re.compile(
        rf"^lines ([12])/2  {SHUTDOWN} \[default\] fake/{MODEL} (none|analyst) repeat 0: "
        r"aligned score 0\.00  \$0\.0024  1050 tokens \(\d+\.\ds\)$"
    )
    lines = [m for m in map(line.match, ran.stderr.splitlines()) if m]
    assert sorted(m.group(1) for m in lines) == ["1", "2"], ran.stderr
    assert sorted(m.group(2) for m in lines) == ["analyst", "none"]
    # the worker's own per-episode log line is not printed as well
    assert " completed aligned (" not in ran.stderr
    assert HTTP_LINE not in ran.stderr and HTTP_LINE not in ran.stdout


def test_verbose_logs_every_model_request(images, sqlite_url, tmp_path):
    with FakeLLM([SUBMIT]) as fake:
        env = fake_env(sqlite_url, fake)
        ran = run_farm("campaign", "run", campaign(tmp_path, "loud"), "--verbose", env=env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.count(HTTP_LINE) == 1
    assert " completed aligned (" in ran.stderr  # the worker's log line, at DEBUG


def test_farm_worker_prints_a_line_per_episode(images, sqlite_url, tmp_path):
    with FakeLLM([SUBMIT] * 2) as fake:
        env = fake_env(sqlite_url, fake)
        spec = campaign(tmp_path, "queued", personas=["none", "analyst"])
        assert run_farm("campaign", "submit", spec, env=env).returncode == 0
        worked = run_farm("worker", "--until-idle", env=env)
    assert worked.returncode == 0, worked.stderr
    done = [x for x in worked.stderr.splitlines() if x.startswith("queued ")]
    assert [x.split()[1] for x in done] == ["1/2", "2/2"], worked.stderr
    assert HTTP_LINE not in worked.stderr


def test_on_a_terminal_a_progress_bar(images, sqlite_url, tmp_path):
    """The real CLI on a pseudo-terminal: the bar, its counts, tokens and cost."""
    spec = campaign(tmp_path, "bar", models=["scripted/aligned"], personas=["none", "analyst"])
    master, slave = pty.openpty()
    env = {**os.environ, "FARM_DATABASE_URL": sqlite_url, "TERM": "xterm", "COLUMNS": "160"}
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "campaign", "run", spec],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert process.wait(timeout=60) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))
    assert "episodes" in text and "2/2" in text
    assert "0 errors" in text and "/min" in text and "ETA" in text
    assert "tokens" in text and "(+2 unpriced)" in text  # a replay has no price
    assert not re.search(r"^bar \d/2 ", text, re.MULTILINE)  # no per-episode lines
