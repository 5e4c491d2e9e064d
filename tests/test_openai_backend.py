"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 with injected faults.

The fake server answers ``POST /v1/chat/completions`` in the OpenAI format with
``SELECT <length of the last user message>``. Markers in the last user message inject faults,
counted per prompt: ``[429x2]`` (first two attempts 429 + Retry-After), ``[500x1]``,
``[slow]`` (first attempt sleeps past the client timeout), ``[malformed]`` (first attempt a 200
with broken JSON), ``[nochoices]`` (first attempt valid JSON without choices), ``[drop]`` (first
attempt closes the connection), ``[400]`` (always), ``[401]`` (always), ``[500xinf]`` (always).

Retrying HTTP and transport faults is the OpenAI SDK's (its backoff, its Retry-After); these
tests check that the backend hands it the budget and the timeout, counts the retries it made,
and turns what fails for good into one clear ``Completion.error``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("openai")

from sqlwright.errors import UserError  # noqa: E402
from sqlwright.infer import openai_api  # noqa: E402
from sqlwright.infer.backend import BackendConfig, GenerationConfig, Request  # noqa: E402
from sqlwright.infer.openai_api import OpenAIBackend  # noqa: E402

TIMEOUT = 0.5  # client timeout in these tests
SLOW = 1.0  # how long "[slow]" sleeps (> TIMEOUT)


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = {}  # prompt -> attempts seen
        self.bodies: list[dict] = []
        self.inflight = 0
        self.max_inflight = 0
        self.total = 0
        self.max_choices: int | None = None  # None: honour n; 1: a server that ignores n
        self.delay = 0.0  # seconds every request takes
        self.retry_after = "0.1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: FakeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (timeout, cancelled): nothing to do
            self.close_connection = True

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
        self._send(status, json.dumps(body).encode(), headers)

    def do_POST(self) -> None:
        srv = self.server
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/v1/chat/completions":
            self._error(404, f"no route {self.path}")
            return
        try:
            req = json.loads(raw)
        except ValueError:  # the client was cancelled while sending the body
            self.close_connection = True
            return
        prompt = [m["content"] for m in req["messages"] if m["role"] == "user"][-1]
        with srv.lock:
            srv.total += 1
            srv.bodies.append(req)
            attempt = srv.attempts[prompt] = srv.attempts.get(prompt, 0) + 1
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
        try:
            self._answer(req, prompt, attempt)
        finally:
            with srv.lock:
                srv.inflight -= 1

    def _answer(self, req: dict, prompt: str, attempt: int) -> None:
        srv = self.server
        if srv.delay:
            time.sleep(srv.delay)
        m = re.search(r"\[(\d{3})x(\d+|inf)\]", prompt)
        if m and (m.group(2) == "inf" or attempt <= int(m.group(2))):
            status = int(m.group(1))
            headers = {"Retry-After": srv.retry_after} if status == 429 else None
            self._error(status, f"injected {status} (attempt {attempt})", headers)
            return
        if "[400]" in prompt:
            self._error(400, "This model's maximum context length is 8192 tokens.\nPlease reduce the length.")
            return
        if "[401]" in prompt:
            self._error(401, "Incorrect API key provided")
            return
        if attempt == 1 and "[slow]" in prompt:
            time.sleep(SLOW)
        if attempt == 1 and "[malformed]" in prompt:
            self._send(200, b'{"id": "chatcmpl-1", "choices": [{"index": 0, "mess')
            return
        if attempt == 1 and "[nochoices]" in prompt:
            self._send(200, json.dumps({"id": "chatcmpl-1", "object": "chat.completion"}).encode())
            return
        if attempt == 1 and "[drop]" in prompt:
            self.close_connection = True  # close without a response
            return
        n = int(req.get("n") or 1)
        if srv.max_choices is not None:
            n = min(n, srv.max_choices)
        content = f"```sql\nSELECT {len(prompt)}\n```"
        prompt_tokens = sum(len(m["content"]) for m in req["messages"])
        body = {
            "id": f"chatcmpl-{attempt}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req["model"],
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                for i in range(n)
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 7 * n, "total_tokens": prompt_tokens + 7 * n},
        }
        self._send(200, json.dumps(body).encode())


@pytest.fixture
def server():
    srv = FakeServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    """Short waits between retries: ours (malformed bodies) and the SDK's exponential backoff
    (0.5 s doubling; its module constants, left alone if a later SDK renames them). A server's
    Retry-After is honoured as sent either way."""
    import openai._base_client as sdk

    monkeypatch.setattr(openai_api, "MALFORMED_DELAY", 0.01)
    monkeypatch.setattr(sdk, "INITIAL_RETRY_DELAY", 0.01, raising=False)
    monkeypatch.setattr(sdk, "MAX_RETRY_DELAY", 0.05, raising=False)


def make_backend(server: FakeServer, **kw) -> OpenAIBackend:
    opts = {"model": "fake-model", "backend": "openai", "base_url": server.url, "api_key_env": "SQLWRIGHT_TEST_NO_KEY",
            "concurrency": 4, "max_retries": 3, "timeout": TIMEOUT}
    opts.update(kw)
    return OpenAIBackend(BackendConfig(**opts))


def req(rid: str, text: str) -> Request:
    return Request(rid, [{"role": "system", "content": "You write SQLite."}, {"role": "user", "content": text}])


def run(backend: OpenAIBackend, requests: list[Request], **gen) -> dict:
    out: dict = {}
    for c in backend.generate(requests, GenerationConfig(**gen)):
        assert c.id not in out, f"{c.id} yielded twice"
        out[c.id] = c
    return out


def test_mixed_faults_batch(server):
    faults = {"429": "[429x2]", "500": "[500x1]", "slow": "[slow]", "malformed": "[malformed]",
              "nochoices": "[nochoices]", "drop": "[drop]", "400": "[400]", "401": "[401]", "500inf": "[500xinf]"}
    requests = [req(f"ok{i}", f"question {i}?") for i in range(21)]
    requests += [req(f"f_{name}", f"question {marker} about {name}") for name, marker in faults.items()]
    assert len(requests) == 30
    backend = make_backend(server)
    t0 = time.monotonic()
    out = run(backend, requests)
    backend.close()
    assert time.monotonic() - t0 < 10
    assert sorted(out) == sorted(r.id for r in requests)  # every id exactly once

    for r in requests:
        c = out[r.id]
        prompt = r.messages[-1]["content"]
        if r.id in ("f_400", "f_401", "f_500inf"):
            continue
        assert c.error is None, (r.id, c.error)
        assert c.texts == [f"```sql\nSELECT {len(prompt)}\n```"]
        assert c.prompt_tokens == len("You write SQLite.") + len(prompt)
        assert c.completion_tokens == 7
        assert c.latency > 0
    attempts = {r.id: server.attempts[r.messages[-1]["content"]] for r in requests}

    # transient faults succeed within the budget; attempts = 1 + retries
    expected_retries = {"f_429": 2, "f_500": 1, "f_slow": 1, "f_malformed": 1, "f_nochoices": 1, "f_drop": 1}
    for rid, k in expected_retries.items():
        assert out[rid].extra["retries"] == k, rid
        assert attempts[rid] == k + 1, rid
    for i in range(21):
        assert out[f"ok{i}"].extra["retries"] == 0 and attempts[f"ok{i}"] == 1
    assert out["f_slow"].latency >= TIMEOUT
    assert out["f_429"].latency >= 0.2  # two Retry-After: 0.1 waits

    # permanent failures: one clear line, no texts, not retried
    for rid, status in (("f_400", 400), ("f_401", 401)):
        c = out[rid]
        assert c.texts == [] and c.error.startswith(f"HTTP {status}: "), c.error
        assert "\n" not in c.error and attempts[rid] == 1 and c.extra["retries"] == 0
    assert "maximum context length" in out["f_400"].error
    # exhausted retries: 1 + max_retries attempts
    c = out["f_500inf"]
    assert c.texts == [] and c.error.startswith("HTTP 500: injected 500") and "gave up after 3 retries" in c.error
    assert attempts["f_500inf"] == 4 and c.extra["retries"] == 3


def test_retry_after_is_honoured(server):
    server.retry_after = "0.4"
    backend = make_backend(server)
    t0 = time.monotonic()
    out = run(backend, [req("a", "rate limited [429x1]")])
    elapsed = time.monotonic() - t0
    assert out["a"].error is None and out["a"].extra["retries"] == 1
    assert elapsed >= 0.4 and out["a"].latency >= 0.4  # backoff alone would be <= 0.01 s


def test_retry_after_beyond_the_sdk_cap_fails_at_once(server):
    """The SDK waits out a Retry-After of up to two minutes; a server asking for longer is not
    retried (the old hand-written loop capped the wait at 60 s and retried): the request fails
    at once, with the server's message, and a rerun of ``sqlwright predict`` retries it."""
    server.retry_after = "600"
    t0 = time.monotonic()
    out = run(make_backend(server), [req("a", "rate limited [429x2]")])
    assert time.monotonic() - t0 < 2
    c = out["a"]
    assert c.texts == [] and c.error.startswith("HTTP 429: injected 429 (attempt 1)") and c.extra["retries"] == 0
    assert server.attempts["rate limited [429x2]"] == 1


def test_malformed_bodies_share_the_retry_budget(server):
    """A 200 with a broken body is retried by the backend, within ``max_retries`` like the SDK's
    own retries: with one retry allowed it succeeds, with none it is an error at once."""
    out = run(make_backend(server, max_retries=1), [req("a", "broken once [malformed]")])
    assert out["a"].error is None and out["a"].extra["retries"] == 1
    out = run(make_backend(server, max_retries=0), [req("b", "broken once too [nochoices]")])
    c = out["b"]
    assert c.texts == [] and c.error == "malformed response body: no 'choices' (gave up after no retries)"
    assert c.extra["retries"] == 0 and server.attempts["broken once too [nochoices]"] == 1


def test_n_samples_server_honours_n(server):
    out = run(make_backend(server), [req("a", "three please"), req("b", "three more")], n=3, temperature=0.8)
    for rid in "ab":
        assert len(out[rid].texts) == 3 and out[rid].error is None
        assert out[rid].completion_tokens == 21
    assert server.total == 2
    assert all(b["n"] == 3 and b["temperature"] == 0.8 for b in server.bodies)


def test_n_samples_server_ignores_n(server):
    server.max_choices = 1
    prompt = "top me up"
    out = run(make_backend(server), [req("a", prompt)], n=3, temperature=0.8, seed=5, max_new_tokens=64)
    c = out["a"]
    assert c.error is None and len(c.texts) == 3
    assert server.total == 3  # asked for 3, then 2, then 1
    assert [b.get("n", 1) for b in server.bodies] == [3, 2, 1]
    assert [b["seed"] for b in server.bodies] == [5, 6, 7]  # top-ups do not repeat the same samples
    assert all(b["max_tokens"] == 64 and b["model"] == "fake-model" for b in server.bodies)
    # usage is summed over the three calls
    assert c.prompt_tokens == 3 * (len("You write SQLite.") + len(prompt))
    assert c.completion_tokens == 3 * 7


def test_n_samples_partial_choices(server):
    server.max_choices = 2
    out = run(make_backend(server), [req("a", "two at a time")], n=3)
    assert len(out["a"].texts) == 3 and server.total == 2
    assert out["a"].completion_tokens == 14 + 7


def test_concurrency_bound(server):
    server.delay = 0.05
    requests = [req(f"r{i}", f"q{i}") for i in range(24)]
    out = run(make_backend(server, concurrency=3), requests)
    assert len(out) == 24 and all(c.error is None for c in out.values())
    assert 2 <= server.max_inflight <= 3


def test_missing_key_without_base_url(monkeypatch):
    monkeypatch.delenv("SQLWRIGHT_TEST_NO_KEY", raising=False)
    with pytest.raises(UserError, match="SQLWRIGHT_TEST_NO_KEY"):
        OpenAIBackend(BackendConfig(model="gpt-4o-mini", backend="openai", api_key_env="SQLWRIGHT_TEST_NO_KEY"))


def test_key_from_environment(monkeypatch, server):
    monkeypatch.setenv("SQLWRIGHT_TEST_KEY", "sk-test")
    b = OpenAIBackend(BackendConfig(model="m", backend="openai", api_key_env="SQLWRIGHT_TEST_KEY"))
    assert b._api_key == "sk-test"
    monkeypatch.delenv("SQLWRIGHT_TEST_NO_KEY", raising=False)
    assert make_backend(server)._api_key == "EMPTY"  # a local server needs no key


def test_missing_openai_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` raise ImportError
    with pytest.raises(UserError, match=r"pip install 'sqlwright\[api\]'"):
        OpenAIBackend(BackendConfig(model="m", backend="openai", base_url="http://127.0.0.1:9/v1"))


def test_connection_refused_is_an_error_not_an_exception():
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = OpenAIBackend(BackendConfig(model="m", backend="openai", base_url=f"http://127.0.0.1:{port}/v1",
                                    max_retries=1, timeout=TIMEOUT))
    out = run(b, [req("a", "anyone?")])
    assert out["a"].texts == [] and out["a"].error.startswith("connection error")
    assert out["a"].extra["retries"] == 1


def _our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(openai_api.THREAD_NAME) or t.name.startswith("asyncio_")]


def test_early_close_cancels_and_ends_thread(server):
    server.delay = 0.3
    backend = make_backend(server, concurrency=4)
    gen = backend.generate([req(f"r{i}", f"q{i}") for i in range(40)], GenerationConfig())
    got = []
    for c in gen:
        got.append(c)
        if len(got) == 2:
            break
    t0 = time.monotonic()
    gen.close()
    assert time.monotonic() - t0 < 2  # in-flight requests were cancelled, not awaited
    deadline = time.monotonic() + 2
    while _our_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _our_threads() == []
    assert server.total < 40  # the rest were never sent
    # the backend still works after an early close, with a fresh client
    server.delay = 0.0
    out = run(backend, [req("again", "once more")])
    assert out["again"].error is None
    backend.close()
    backend.close()  # idempotent
    assert _our_threads() == []


def test_keyboard_interrupt_in_consumer_stops_the_run(server):
    server.delay = 0.2
    gen = make_backend(server).generate([req(f"r{i}", f"q{i}") for i in range(20)], GenerationConfig())
    next(gen)
    with pytest.raises(KeyboardInterrupt):
        gen.throw(KeyboardInterrupt)  # what Ctrl-C does while the caller waits in the generator
    deadline = time.monotonic() + 2
    while _our_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _our_threads() == []
    assert server.total < 20


def test_empty_request_list(server):
    assert list(make_backend(server).generate([], GenerationConfig())) == []
    assert server.total == 0
