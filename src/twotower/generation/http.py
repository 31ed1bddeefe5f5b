"""Any OpenAI-compatible endpoint as a query generator: vLLM, the llama.cpp server, Ollama.

Each task is one POST to ``{url}/v1/chat/completions`` with CADET's chat prompt (Tamber et al.
2025), or, for base models, to ``{url}/v1/completions`` with the few-shot continuation and a
newline stop. Requests carry the sampling settings and a per-task seed (servers that honour
``seed`` then answer a re-run alike), run ``concurrency`` at a time under a bound on requests
per second, time out, and are retried with exponential back-off on connection errors,
timeouts, 429 and 5xx answers; an endpoint still failing after the retries is one
:class:`GenerationError` line naming its URL. Standard library only (urllib).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from twotower.errors import ConfigError, check_integer
from twotower.generation.base import (
    GenerationError,
    GenerationTask,
    Generator,
    SamplingSettings,
    task_seed,
)
from twotower.generation.prompts import PromptBuilder

APIS = ("chat", "completions")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_BACKOFF_S = 30.0


class RateLimiter:
    """At most ``per_second`` calls of :meth:`wait` return per second, across threads (calls
    are spaced ``1 / per_second`` apart); ``None`` does not limit."""

    def __init__(
        self,
        per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second is not None and not per_second > 0:
            raise ConfigError(f"requests_per_second: must be positive, got {per_second}")
        self.interval = 1.0 / per_second if per_second else 0.0
        self.clock = clock
        self.sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:  # waiting inside the lock keeps the threads in line
            now = self.clock()
            if self._next > now:
                self.sleep(self._next - now)
                now = self._next
            self._next = now + self.interval


def base_url(url: str) -> str:
    """``http://host:8000``, ``…/v1`` or ``…/v1/chat/completions`` → ``http://host:8000``."""
    parsed = urllib.parse.urlparse(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"endpoint '{url}': expected http://HOST[:PORT] or https://HOST[:PORT]")
    path = parsed.path.rstrip("/")
    for suffix in ("/chat/completions", "/completions", "/models"):
        path = path.removesuffix(suffix)
    path = path.removesuffix("/v1")
    return urllib.parse.urlunparse((parsed.scheme, parsed.netloc, path, "", "", ""))


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HTTPGenerator(Generator):
    """Queries from an OpenAI-compatible server (see the module docstring).

    ``model`` is the served model's name; without one, the first of ``GET /v1/models``.
    ``api`` is ``chat`` (instruction-tuned models) or ``completions`` (base models).
    """

    kind = "http"

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        sampling: SamplingSettings | None = None,
        batch_size: int = 8,
        prompts: PromptBuilder | None = None,
        api: str = "chat",
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 1.0,
        requests_per_second: float | None = None,
        concurrency: int = 4,
        api_key: str | None = None,
    ) -> None:
        if api not in APIS:
            raise ConfigError(f"api '{api}': expected one of {', '.join(APIS)}")
        if not timeout > 0:
            raise ConfigError(f"timeout: must be positive seconds, got {timeout}")
        if not backoff >= 0:
            raise ConfigError(f"backoff: must be >= 0 seconds, got {backoff}")
        check_integer("retries", retries, minimum=0)
        check_integer("concurrency", concurrency, minimum=1)
        self.url = base_url(url)
        self.api = api
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.concurrency = concurrency
        self.limiter = RateLimiter(requests_per_second)
        self.requests_per_second = requests_per_second
        self.prompts = prompts or PromptBuilder()
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        # A local server is reached directly, whatever proxy the environment names.
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback(self.url) else []
        self._opener = urllib.request.build_opener(*handlers)
        self.model = model or self._served_model()
        super().__init__(name=self.model, sampling=sampling, batch_size=batch_size)
        self._count_lock = threading.Lock()

    # -- requests -------------------------------------------------------------------------

    def _request(self, path: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        """The JSON answer of one GET (``payload`` None) or POST, retried; else one line."""
        url = self.url + path
        body = json.dumps(payload).encode() if payload is not None else None
        last = "no attempt"
        attempts = self.retries + 1
        for attempt in range(attempts):
            self.limiter.wait()
            request = urllib.request.Request(
                url, data=body, headers=self._headers, method="GET" if body is None else "POST"
            )
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    raw = response.read()
                try:
                    answer = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise GenerationError(f"{url}: the answer is not JSON: {raw[:120]!r}") from None
                if not isinstance(answer, dict):
                    raise GenerationError(f"{url}: expected a JSON object, got {answer!r:.120}")
                return answer
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace").strip().replace("\n", " ")
                last = f"HTTP {exc.code}" + (f": {detail}" if detail else "")
                if exc.code not in RETRY_STATUS:  # a bad request stays bad: no retry
                    raise GenerationError(f"{url}: {last}") from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc
                last = (
                    f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
                )
            if attempt + 1 < attempts:
                time.sleep(min(self.backoff * 2**attempt, MAX_BACKOFF_S))
        raise GenerationError(f"{url}: no answer after {attempts} attempts ({last})")

    def _served_model(self) -> str:
        try:
            answer = self._request("/v1/models", None)
            return str(answer["data"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise ConfigError(
                f"{self.url}/v1/models lists no model; name one with --model"
            ) from None
        except GenerationError as exc:
            raise ConfigError(
                f"{exc} (asked which model it serves; or name one with --model)"
            ) from None

    def payload(self, task: GenerationTask) -> tuple[str, dict[str, Any]]:
        """The endpoint path and JSON body of ``task``'s request."""
        s = self.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": task_seed(s.seed, *task.key) % 2**31,  # some servers take 32-bit seeds
            "n": 1,
        }
        if self.api == "chat":
            return "/v1/chat/completions", {**body, "messages": self.prompts.chat(task, s.seed)}
        prompt = self.prompts.continuation(task, s.seed)
        return "/v1/completions", {**body, "prompt": prompt, "stop": ["\n"]}

    def _one(self, task: GenerationTask) -> tuple[str, int]:
        path, body = self.payload(task)
        answer = self._request(path, body)
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"] if self.api == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise GenerationError(
                f"{self.url}{path}: unexpected answer (no choices[0] text): {json.dumps(answer)[:160]}"
            ) from None
        text = text or ""
        usage = answer.get("usage") or {}
        tokens = usage.get("completion_tokens")
        # Without usage, whitespace words stand in for tokens (an approximation).
        return text, int(tokens) if isinstance(tokens, int) else len(text.split())

    def generate(self, tasks: Sequence[GenerationTask]) -> list[str]:
        if not tasks:
            return []
        workers = min(self.concurrency, len(tasks))
        if workers == 1:
            results = [self._one(t) for t in tasks]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(self._one, tasks))
        with self._count_lock:
            self.generated_tokens += sum(n for _, n in results)
        return [text for text, _ in results]

    def instructions(self, query_type: str) -> list[str]:
        return self.prompts.instructions(query_type)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "url": self.url,
            "api": self.api,
            "prompting": "chat" if self.api == "chat" else "few-shot",
            "prompt": self.prompts.describe(),
        }
