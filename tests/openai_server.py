"""A real HTTP server on loopback that speaks OpenAI chat completions, answering from a script.

Each request takes the next scripted answer: a structured answer (arguments of the output tool,
valid or not), malformed JSON, a truncated body, an HTTP error with headers, or a hang that
holds the request until the client closes the connection. Everything it saw is recorded:
each request's headers and JSON body, and when a held connection was closed by the client.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    kind: str  # "tool" | "malformed" | "truncated" | "status" | "hang" | "raw" (a 200 body)
    arguments: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    prompt_tokens: int = 100
    completion_tokens: int = 20
    echo_auth: bool = False  # an error body that quotes the Authorization header back
    message: str = "scripted"  # an error body's message (before the quoted header, if any)
    usage: bool = True  # False: the completion carries no `usage` (some servers omit it)
    tool_name: str | None = None  # the tool called; default: the request's first tool
    model: str | None = None  # the model the completion names; default: the one asked for


def tool(
    arguments: dict[str, Any], *, prompt_tokens: int = 100, completion_tokens: int = 20
) -> Answer:
    return Answer("tool", arguments, prompt_tokens=prompt_tokens,
                  completion_tokens=completion_tokens)


@dataclass
class Seen:
    headers: dict[str, str]
    body: dict[str, Any]

    def prompt(self) -> str:
        """The last user message's text."""
        users = [m for m in self.body["messages"] if m["role"] == "user"]
        content = users[-1]["content"]
        return content if isinstance(content, str) else " ".join(p["text"] for p in content)


class ChatServer:
    def __init__(self, script: list[Answer]) -> None:
        self.script = list(script)
        self.requests: list[Seen] = []
        self.log: list[str] = []  # "request", "closed" in the order they happened
        self.closed = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with server._lock:
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    server.requests.append(Seen(headers, body))
                    server.log.append("request")
                    answer = server.script.pop(0) if server.script else Answer("status", status=599)
                server._answer(self, body, answer)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def _answer(
        self, handler: BaseHTTPRequestHandler, body: dict[str, Any], answer: Answer
    ) -> None:
        if answer.kind == "hang":
            handler.connection.settimeout(30)
            try:
                while handler.connection.recv(1024):  # b"" once the client closes
                    pass
            except OSError:
                pass
            with self._lock:
                self.log.append("closed")
            self.closed.set()
            handler.close_connection = True
            return
        if answer.kind == "status":
            message = answer.message
            if answer.echo_auth:  # as some servers do: "Incorrect API key provided: sk-..."
                auth = handler.headers.get("authorization")
                message = f"{answer.message} Incorrect API key provided: {auth}"
            payload = json.dumps({"error": {"message": message, "type": "scripted"}}).encode()
            handler.send_response(answer.status)
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        if answer.kind == "raw":
            raw = json.dumps(answer.arguments).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(raw)))
            handler.end_headers()
            handler.wfile.write(raw)
            return
        name = answer.tool_name or (
            body["tools"][0]["function"]["name"] if body.get("tools") else "final_result"
        )
        arguments = (
            "{not json" if answer.kind == "malformed" else json.dumps(answer.arguments)
        )
        completion = {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
            "model": answer.model or body.get("model", "gpt-4o-mini"),
            "choices": [{
                "index": 0, "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": None, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }]},
            }],
            "usage": {"prompt_tokens": answer.prompt_tokens,
                      "completion_tokens": answer.completion_tokens,
                      "total_tokens": answer.prompt_tokens + answer.completion_tokens},
        }
        if not answer.usage:
            del completion["usage"]
        payload = json.dumps(completion).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if answer.kind == "truncated":
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload[: len(payload) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


@contextmanager
def chat_server(script: list[Answer]) -> Iterator[ChatServer]:
    server = ChatServer(script)
    thread = threading.Thread(target=server._http.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server._http.shutdown()
        server._http.server_close()
