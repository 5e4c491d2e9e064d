"""Any OpenAI-compatible chat-completions endpoint: OpenAI, Together, Llama API, ``vllm serve``, Ollama.

Requests run concurrently on an event loop in a background thread (at most ``concurrency`` in
flight) and each ``Completion`` is handed to the synchronous caller as soon as it is done.
Closing the generator (``break``, Ctrl-C) cancels what is in flight and ends the thread.

Retrying is the OpenAI SDK's (``max_retries``): HTTP 408/409/429/5xx, timeouts and connection
errors, with exponential backoff and jitter, or after the server's ``Retry-After`` when it
sends one (the SDK honours up to two minutes; a server asking for longer is not retried).
``timeout`` is the SDK's request timeout. Answers are the SDK's typed ``ChatCompletion``.

One fault the SDK hands back as a success is retried here, from the same budget: a 200 whose
body is malformed (not JSON, or no ``choices``), as a proxy or an overloaded local server
sends now and then. A request that fails for good becomes a ``Completion`` with ``error``
set, never an exception out of ``generate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlwright.errors import UserError
from sqlwright.infer.backend import BackendConfig, Completion, GenerationConfig, Request

MALFORMED_DELAY = 0.5  # seconds before the k-th retry of a malformed body: MALFORMED_DELAY * 2**k
MALFORMED_DELAY_CAP = 8.0
TRANSIENT_STATUS = frozenset({408, 409, 429})  # plus every 5xx: what the SDK retries, for messages
THREAD_NAME = "sqlwright-openai"
_JOIN_TIMEOUT = 10.0  # seconds to wait for the loop thread after cancelling it
_DONE = object()


class _Failed(Exception):
    """A request that gave up: ``message`` is one line; ``retries`` were spent on it."""

    def __init__(self, message: str, retries: int) -> None:
        super().__init__(message)
        self.message = message
        self.retries = retries


class _Malformed(Exception):
    """A 200 answer the SDK accepted whose body has no usable choices."""


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _status_message(err: Any) -> str:
    """``HTTP <status>: <the server's message>`` from an ``openai.APIStatusError``."""
    body = getattr(err, "body", None)
    msg = None
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        msg = inner.get("message") or inner.get("detail")
        if msg is None and isinstance(body.get("error"), str):
            msg = body["error"]
    elif isinstance(body, str) and body.strip():
        msg = body
    if not msg:
        msg = getattr(err, "message", None) or type(err).__name__
    return f"HTTP {err.status_code}: {_one_line(msg)}"


def _retries_taken(err: Any) -> int:
    """Retries the SDK made before raising ``err``: it numbers each attempt's request in the
    ``x-stainless-retry-count`` header, and the error carries the last request."""
    try:
        return int(err.request.headers.get("x-stainless-retry-count", 0))
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return 0


def _texts(completion: Any) -> tuple[list[str], int, int]:
    """Texts (in choice order) and usage of a ``ChatCompletion``; ``_Malformed`` when it has none.

    The SDK builds the model without validating it (servers differ in the fields they send),
    so what is used here is checked here."""
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        err = getattr(completion, "error", None)  # some servers send errors with status 200
        if err is not None:
            msg = err.get("message", err) if isinstance(err, dict) else err
            raise _Malformed(f"error in response body: {_one_line(str(msg))}")
        raise _Malformed("malformed response body: no 'choices'")
    texts = []
    for choice in sorted(choices, key=lambda c: getattr(c, "index", None) or 0):
        message = getattr(choice, "message", None)
        if message is not None:
            texts.append(getattr(message, "content", None) or "")
        elif isinstance(getattr(choice, "text", None), str):  # completions-style servers
            texts.append(choice.text)
        else:
            raise _Malformed("malformed response body: a choice has no 'message'")
    usage = getattr(completion, "usage", None)
    return texts, int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)


class OpenAIBackend:
    name = "openai"

    def __init__(self, cfg: BackendConfig) -> None:
        try:
            import openai
            from openai.types.chat import ChatCompletion
        except ImportError:
            raise UserError("the openai backend needs the openai package: pip install 'sqlwright[api]'") from None
        self._openai = openai
        self._chat_completion = ChatCompletion
        self.cfg = cfg
        key = os.environ.get(cfg.api_key_env)
        if not key:
            if cfg.base_url is None:
                raise UserError(
                    f"no API key: the environment variable {cfg.api_key_env} is not set; "
                    f"export {cfg.api_key_env}=<your key>, or name another variable with --api-key-env, "
                    "or point --base-url at a server that needs none"
                )
            key = "EMPTY"  # local servers (vllm serve, Ollama) accept any key
        self._api_key = key
        self._concurrency = max(1, int(cfg.concurrency))
        self._max_retries = max(0, int(cfg.max_retries))
        self._timeout = float(cfg.timeout)
        self._runs: set[tuple[asyncio.AbstractEventLoop, asyncio.Task, threading.Thread]] = set()
        self._lock = threading.Lock()

    # -- synchronous side -------------------------------------------------------------------

    def generate(self, requests: list[Request], config: GenerationConfig) -> Iterator[Completion]:
        requests = list(requests)
        if not requests:
            return
        out: queue.Queue = queue.Queue()
        loop = asyncio.new_event_loop()
        task = loop.create_task(self._run(requests, config, out))
        thread = threading.Thread(target=self._loop_main, args=(loop, task, out), name=THREAD_NAME, daemon=True)
        run = (loop, task, thread)
        with self._lock:
            self._runs.add(run)
        thread.start()
        try:
            while True:
                item = out.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:  # normal end, generator closed early, or KeyboardInterrupt
            self._stop(run)

    def _stop(self, run: tuple[asyncio.AbstractEventLoop, asyncio.Task, threading.Thread]) -> None:
        loop, task, thread = run
        with contextlib.suppress(RuntimeError):  # the loop already finished and closed
            loop.call_soon_threadsafe(task.cancel)
        thread.join(_JOIN_TIMEOUT)
        with self._lock:
            self._runs.discard(run)

    def close(self) -> None:
        """Cancel any generation still running; its client is closed as its loop ends."""
        with self._lock:
            runs = list(self._runs)
        for run in runs:
            self._stop(run)

    @staticmethod
    def _loop_main(loop: asyncio.AbstractEventLoop, task: asyncio.Task, out: queue.Queue) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass
        except BaseException as e:  # a bug in this module: hand it to the caller
            out.put(e)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
                out.put(_DONE)

    # -- event-loop side --------------------------------------------------------------------

    async def _run(self, requests: list[Request], config: GenerationConfig, out: queue.Queue) -> None:
        # One client per run: its connection pool belongs to this run's event loop.
        client = self._openai.AsyncOpenAI(
            api_key=self._api_key, base_url=self.cfg.base_url, max_retries=self._max_retries, timeout=self._timeout
        )
        pending = iter(requests)
        sem = asyncio.Semaphore(self._concurrency)  # at most `concurrency` requests in flight

        async def worker() -> None:
            for req in pending:  # workers share one iterator: each request is taken once
                async with sem:
                    out.put(await self._complete(client, req, config))

        try:
            workers = [asyncio.ensure_future(worker()) for _ in range(min(self._concurrency, len(requests)))]
            try:
                await asyncio.gather(*workers)
            finally:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(client.close())

    async def _complete(self, client: Any, req: Request, config: GenerationConfig) -> Completion:
        """All ``config.n`` samples for one request, topping up when the server returns fewer."""
        start = time.monotonic()
        want = max(1, int(config.n))
        texts: list[str] = []
        usage = [0, 0]
        retries = 0
        error = None
        call = 0
        try:
            while len(texts) < want:
                got, r = await self._call(client, req, config, want - len(texts), call, usage)
                retries += r
                texts.extend(got)
                call += 1
        except _Failed as e:
            retries += e.retries
            error = e.message
            texts = []
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never let one request end the run
            error = _one_line(f"{type(e).__name__}: {e}")
            texts = []
        return Completion(
            id=req.id,
            texts=texts[:want],
            prompt_tokens=usage[0],
            completion_tokens=usage[1],
            latency=time.monotonic() - start,
            error=error,
            extra={"retries": retries},
        )

    async def _call(
        self, client: Any, req: Request, config: GenerationConfig, n: int, call: int, usage: list[int]
    ) -> tuple[list[str], int]:
        """One chat-completions call asking for ``n`` samples; returns (texts, retries used).

        The SDK retries transport and HTTP faults; a malformed 200 is retried here, with the
        SDK's budget shrunk by what was spent, so a call makes at most ``1 + max_retries`` attempts."""
        openai = self._openai
        kwargs: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": req.messages,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "max_tokens": config.max_new_tokens,
            "seed": config.seed + call,  # a top-up call must not repeat the first call's samples
        }
        if n > 1:
            kwargs["n"] = n
        retries = 0
        while True:
            sdk = client if retries == 0 else client.with_options(max_retries=self._max_retries - retries)
            try:
                raw = await sdk.chat.completions.with_raw_response.create(**kwargs)
                retries += raw.retries_taken
                completion = raw.parse()  # a ChatCompletion; the body's text when it is not JSON-typed
                if not isinstance(completion, self._chat_completion):
                    raise _Malformed(f"malformed response body (not JSON): {_one_line(str(completion)[:120])}")
                texts, prompt_tokens, completion_tokens = _texts(completion)
            except openai.APIStatusError as e:
                raise self._failed(_status_message(e), e, retries) from None
            except openai.APITimeoutError as e:
                raise self._failed(f"timed out after {self._timeout:g}s", e, retries) from None
            except openai.APIConnectionError as e:
                cause = e.__cause__ or e.__context__
                detail = f"{type(cause).__name__}: {cause}" if cause else str(e)
                raise self._failed(_one_line(f"connection error: {detail}"), e, retries) from None
            except (ValueError, _Malformed, openai.APIResponseValidationError) as e:  # ValueError: a body that is not JSON
                msg = str(e) if isinstance(e, _Malformed) else f"malformed response body (not JSON): {_one_line(str(e))}"
                if retries >= self._max_retries:
                    raise _Failed(f"{msg} (gave up after {_tries(retries)})", retries) from None
                await asyncio.sleep(min(MALFORMED_DELAY_CAP, MALFORMED_DELAY * 2**retries))
                retries += 1
                continue
            usage[0] += prompt_tokens
            usage[1] += completion_tokens
            return texts, retries

    @staticmethod
    def _failed(message: str, err: Any, retries_before: int) -> _Failed:
        """The request gave up: transient faults say after how many retries (the SDK's and ours)."""
        retries = retries_before + _retries_taken(err)
        status = getattr(err, "status_code", None)
        if status is None or status in TRANSIENT_STATUS or status >= 500:
            message = f"{message} (gave up after {_tries(retries)})"
        return _Failed(message, retries)


def _tries(retries: int) -> str:
    return "no retries" if retries == 0 else "1 retry" if retries == 1 else f"{retries} retries"
