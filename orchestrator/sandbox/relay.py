"""Commands run one after another by one long-lived shell in the box: the agent's commands in
the agent's shell, the farm's own (the ready wait, the probes) in shells of root or a probe's
user (orchestrator/sandbox/docker_sandbox.py keeps one per purpose and user).

Why: a ``docker exec`` per command is a runc exec (the shim, runc, entering the box's
namespaces), about 0.08 core-seconds each on these machines (``make bench``), more than most
commands cost themselves. One shell per box, started with the box, takes the commands over its
exec's stdin and answers on its stdout and stderr, so a command costs what it runs and no more.

What a command sees is what one exec per command gave it (tests/test_sandbox.py pins it):
``timeout --kill-after=2 T bash -c CMD`` as the scenario's user, in its workdir, stdin from
/dev/null, its own exec marker in the environment, and its own stdout and stderr. Its output
ends when every holder of them has closed, or ``DRAIN_SECONDS`` after the command exits, as
the engine's exec does: a background job that keeps them open loses what it writes later, it
never writes into the next command's output.

The protocol, one command at a time: the host writes ``<nonce> <seconds> <marker>\\n<command>\\0``;
the shell answers with the command's bytes on each stream, then ``<nonce> <exit code>\\n`` on
stdout and ``<nonce>\\n`` on stderr. The nonce is new for every command and lives only in the
shell's memory. A command could read it from there (it runs as the same user) and forge an end
early, but that only cuts its own output short: the evidence is read from outside the box,
and the sweep after a timeout goes by the process table, not by what the shell says.

The shells are the farm's, not the box's: snapshots leave them out of the box's processes, and
a sweep spares them (but not what they started). If the agent kills its shell, the command it
was running is recorded as killed, and the next command starts a new shell.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from docker.utils.socket import frames_iter

from orchestrator.sandbox.output import CappedBuffer

# How long a command's output may stay open after the command exited (the engine's own exec
# waits as long for its output pipes before it closes them).
DRAIN_SECONDS = 2.0
# How often the shell looks whether a finished command's output has ended.
_POLL_SECONDS = 0.002
# How long a new shell may take to say it is listening (a box out of pids never does).
_HELLO_SECONDS = 30.0
# How long the engine may take to record the exit of a shell whose stream ended.
_EXIT_SECONDS = 2.0

# The shell. fd 0 is the host's channel, so every command gets /dev/null instead, and closes
# the shell's own descriptors ({o}, {e}: the output pipes, {z}: the sleep pipe). Each stream
# of a command is a pipe to a `cat` that copies it to the exec's stream, so the shell knows
# when the command's output has ended (the cats exit) and can cut it after the drain.
# `read -t` on a pipe that never writes is a sleep without a fork.
_SHELL = r"""
exec {z}<> <(:)
[[ -n $1 ]] && ulimit -f "$1"
[[ -n $3 ]] && export BASH_ENV=$3
workdir=$PWD polls=$2
printf 'relay %d\n' "$$"
while IFS=' ' read -r nonce limit marker && IFS= read -r -d '' cmd; do
  cd -- "$workdir" 2>/dev/null || cd /
  exec {o}> >(exec /usr/bin/cat)
  opid=$!
  exec {e}> >(exec {o}>&- /usr/bin/cat >&2)
  epid=$!
  INVOCATION_ID=$marker /usr/bin/timeout --kill-after=2 "$limit" /bin/bash -c "$cmd" \
    </dev/null >&$o 2>&$e {o}>&- {e}>&- {z}>&-
  code=$?
  exec {o}>&- {e}>&-
  for (( i = 0; i < polls; i++ )); do
    kill -0 "$opid" 2>/dev/null || kill -0 "$epid" 2>/dev/null || break
    read -r -t POLL -u "$z"
  done
  (( i < polls )) || kill -9 "$opid" "$epid" 2>/dev/null
  wait "$opid" "$epid"
  printf '%s %d\n' "$nonce" "$code"
  printf '%s\n' "$nonce" >&2
done
""".replace("POLL", f"{_POLL_SECONDS:g}")
# bash -s reads the script from stdin, so the box's process list shows a plain `bash -s`. It
# starts with no BASH_ENV (a file the agent may be able to edit; bash would run it first), and
# runs its helpers by absolute path, so nothing the agent plants runs in a shell of another
# user's; the agent's shell passes the image's BASH_ENV on to the commands it runs.
_ARGV = ["/usr/bin/env", "-u", "BASH_ENV", "-u", "ENV", "/bin/bash", "-s"]


class RelayUnavailable(Exception):
    """The shell did not start or did not say it is listening (carries what it printed)."""


@dataclass
class _Stream:
    """One stream of one command: its bytes into ``sink``, until its end token and line."""

    sink: CappedBuffer
    token: bytes
    pending: bytearray = field(default_factory=bytearray)
    trailer: bytes | None = None  # what followed the token on its line, once seen

    def feed(self, data: bytes) -> None:
        if self.trailer is not None:
            return  # the shell writes nothing between commands
        self.pending += data
        at = self.pending.find(self.token)
        if at < 0:
            keep = len(self.token) - 1  # the start of a token split across two frames
            if len(self.pending) > keep:
                self.sink.write(bytes(self.pending[:-keep]))
                del self.pending[:-keep]
            return
        end = self.pending.find(b"\n", at)
        if end < 0:
            self.sink.write(bytes(self.pending[:at]))
            del self.pending[:at]
            return
        self.sink.write(bytes(self.pending[:at]))
        self.trailer = bytes(self.pending[at + len(self.token) : end]).strip()
        self.pending.clear()


@dataclass
class RelayRun:
    """One command under way: its two streams and how it ended."""

    stdout: _Stream
    stderr: _Stream
    done: threading.Event = field(default_factory=threading.Event)
    shell_ended: bool = False  # the shell's stream ended (or broke) before the command's end

    @property
    def finished(self) -> bool:
        return self.done.is_set()

    def wait(self, seconds: float) -> bool:
        return self.done.wait(max(0.0, seconds))

    @property
    def exit_code(self) -> int | None:
        if self.stdout.trailer is None:
            return None
        try:
            return int(self.stdout.trailer)
        except ValueError:
            return None

    def feed(self, stream: int, data: bytes) -> None:
        (self.stdout if stream == 1 else self.stderr).feed(data)
        if self.stdout.trailer is not None and self.stderr.trailer is not None:
            self.done.set()

    def end(self) -> None:
        if not self.done.is_set():
            self.shell_ended = True
            self.done.set()


class Relay:
    """One shell in one box, as ``user`` in ``workdir``, and the thread reading its answers."""

    def __init__(
        self,
        api: Any,  # docker.APIClient
        container_id: str,
        user: str,
        workdir: str,
        environment: dict[str, str],
        file_blocks: int | None,
        bash_env: str | None = None,
    ) -> None:
        self._api = api
        self._container_id = container_id
        self.marker = uuid.uuid4().hex  # its exec marker: a sweep given it kills the shell
        self._user, self._workdir = user, workdir
        self._environment = {**environment, "INVOCATION_ID": self.marker}
        # the shell's $1, $2, $3: the file-size limit in 1 KiB blocks, the drain in polls, and
        # the BASH_ENV its commands get
        polls = round(DRAIN_SECONDS / _POLL_SECONDS)
        blocks = file_blocks or ""
        self._args = f"set -- '{blocks}' {polls} {shlex.quote(bash_env or '')}\n"
        self._exec_id = ""
        self._socket: Any = None
        self._hello = threading.Event()
        self._greeting = bytearray()
        self._run: RelayRun | None = None
        self._lock = threading.Lock()
        self.ended = False
        self.box_pid: int | None = None  # its pid inside the box (what a sweep spares)
        self.host_pid: int | None = None  # its pid on the engine's host (what `top` shows)

    def start(self) -> Relay:
        """Start the shell and wait until it listens. Raises RelayUnavailable (with what it
        printed: the engine's reason when the box is out of pids) or the engine's errors."""
        self._exec_id = self._api.exec_create(
            self._container_id,
            _ARGV,
            stdin=True,
            user=self._user,
            workdir=self._workdir,
            environment=self._environment,
        )["Id"]
        self._socket = self._api.exec_start(self._exec_id, socket=True)
        raw = self._raw()
        raw.settimeout(None)  # the shell waits for the model between commands
        raw.sendall((self._args + _SHELL).encode())
        threading.Thread(target=self._read, daemon=True, name=f"relay-{self.marker[:8]}").start()
        if not self._hello.wait(_HELLO_SECONDS) or self.box_pid is None:
            self.close()
            said = bytes(self._greeting).decode("utf-8", errors="replace").strip()
            raise RelayUnavailable(said or "the shell did not start")
        self.host_pid = self._api.exec_inspect(self._exec_id).get("Pid") or None
        return self

    def run(
        self, command: str, seconds: float, marker: str, out: CappedBuffer, err: CappedBuffer
    ) -> RelayRun:
        """Send one command; its answers go into ``out`` and ``err`` as they come."""
        nonce = uuid.uuid4().hex
        token = nonce.encode() + b" "
        run = RelayRun(_Stream(out, token), _Stream(err, nonce.encode()))
        with self._lock:
            if self.ended:
                run.end()
                return run
            self._run = run
        # bash cannot hold a NUL in a string; bash itself drops NULs from what it reads
        text = command.encode().replace(b"\0", b"")
        request = f"{nonce} {seconds:g} {marker}\n".encode() + text + b"\0"
        try:
            self._raw().sendall(request)
        except OSError:
            run.end()
        return run

    def exit_code(self) -> int | None:
        """How the shell ended (137: killed), once the engine has recorded it."""
        waited_until = time.monotonic() + _EXIT_SECONDS
        while True:
            state = self._api.exec_inspect(self._exec_id)
            if not state.get("Running") or time.monotonic() > waited_until:
                return state.get("ExitCode") if not state.get("Running") else None
            time.sleep(0.05)

    def close(self) -> None:
        """Hang up: an idle shell reads the end of its input and exits."""
        self.ended = True
        with contextlib.suppress(OSError):
            self._raw().close()
        with contextlib.suppress(OSError, AttributeError):
            self._socket.close()

    def _raw(self) -> Any:
        # exec_start(socket=True) gives a SocketIO over the engine's connection (a TLS socket
        # for https engines); both read and write on the socket underneath
        return getattr(self._socket, "_sock", self._socket)

    def _read(self) -> None:
        try:
            for stream, data in frames_iter(self._socket, tty=False):
                if not self._hello.is_set():
                    self._greet(data)
                    continue
                run = self._run
                if run is not None:
                    run.feed(stream, data)
        except (OSError, ValueError):  # ValueError: read on a closed socket
            pass  # a broken stream ends the shell as its end does
        with self._lock:
            self.ended = True
            run = self._run
        self._hello.set()
        if run is not None:
            run.end()

    def _greet(self, data: bytes) -> None:
        self._greeting += data
        line, found, _ = bytes(self._greeting).partition(b"\n")
        if not found:
            return
        words = line.split()
        if len(words) == 2 and words[0] == b"relay" and words[1].isdigit():
            self.box_pid = int(words[1])
        self._hello.set()
