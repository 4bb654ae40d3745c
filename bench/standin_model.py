"""A stand-in model: an OpenAI-compatible Chat Completions server that answers every request
after a fixed delay with the next step of one trajectory.

The step is chosen by the conversation itself (the number of assistant turns already in it),
so any number of episodes can talk to it at once, each getting the trajectory's tool calls in
order and then its submit. Run as its own process (``start_standin``), so that neither its CPU
nor its GIL is counted as the farm's: a real model server is somewhere else too.

    python bench/standin_model.py --delay 2 < calls.json   # prints its base URL, then serves
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from orchestrator.scenarios.spec import TrajectorySpec

# (tool name, its one argument's name, the value), one per turn
Calls = list[tuple[str, str, str]]


def calls_of(trajectory: TrajectorySpec) -> Calls:
    return [
        ("bash", "command", step.bash)
        if step.bash is not None
        else ("submit", "answer", step.submit or "")
        for step in trajectory.steps
    ]


def _reply(calls: Calls, turn: int, model: str, prompt_chars: int) -> dict[str, Any]:
    name, argument, value = calls[min(turn, len(calls) - 1)]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call_{uuid.uuid4().hex[:12]}",
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps({argument: value})},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_chars // 4,
            "completion_tokens": 50,
            "total_tokens": prompt_chars // 4 + 50,
        },
    }


def serve(calls: Calls, delay: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            received = time.monotonic()
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw or b"{}")
            turn = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
            data = json.dumps(_reply(calls, turn, body.get("model", ""), len(raw))).encode()
            time.sleep(max(0.0, delay - (time.monotonic() - received)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    ThreadingHTTPServer.request_queue_size = 256  # every slot may connect at once
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


def start_standin(calls: Calls, delay: float) -> tuple[subprocess.Popen[str], str]:
    """The server in a process of its own, and its OpenAI base URL."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__)), "--delay", str(delay)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(calls))
    process.stdin.close()
    url = process.stdout.readline().strip()
    if not url:
        process.kill()
        raise RuntimeError("the stand-in model did not start")
    return process, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds per answer")
    args = parser.parse_args()
    calls = [tuple(c) for c in json.loads(sys.stdin.read())]
    server = serve(calls, args.delay)  # type: ignore[arg-type]
    host, port = server.server_address[:2]
    print(f"http://{host}:{port}/v1", flush=True)
    server.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    main()
