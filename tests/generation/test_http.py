"""The OpenAI-compatible back-end against a small server on 127.0.0.1 run by the test."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from twotower.errors import ConfigError
from twotower.generation import GenerationError, GenerationTask, SamplingSettings, build_generator
from twotower.generation.http import HTTPGenerator, RateLimiter, base_url

TASKS = [
    GenerationTask(f"d{i}", f"Passage number {i} about tea.", "questions", 0) for i in range(3)
]


class Server:
    """Answers POSTs by a script: "ok", an HTTP status as int, or "hang" (never answers)."""

    def __init__(self, script=(), default="ok"):
        self.script = list(script)
        self.default = default
        self.requests = []  # (arrival time, path, body)
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, payload):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._send(200, {"data": [{"id": "served-model"}]})

            def do_POST(self):
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                outer.requests.append((time.monotonic(), self.path, body))
                action = outer.script.pop(0) if outer.script else outer.default
                if action == "hang":
                    outer.release.wait(5)
                    return
                if isinstance(action, int):
                    self._send(action, {"error": {"message": f"scripted {action}"}})
                    return
                if self.path.endswith("/chat/completions"):
                    target = body["messages"][-1]["content"].rsplit("Target Passage: ", 1)[1]
                    choice = {
                        "message": {
                            "role": "assistant",
                            "content": f"Question: what of {target.split()[2]}?",
                        }
                    }
                else:
                    choice = {"text": " what of it?\n"}
                self._send(200, {"choices": [choice], "usage": {"completion_tokens": 7}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def make(url, **options):
    options.setdefault("model", "m")
    options.setdefault("backoff", 0.01)
    return HTTPGenerator(url, **options)


def test_chat_completions_one_answer_per_task_in_order():
    with Server() as server:
        generator = make(server.url + "/v1", concurrency=3, sampling=SamplingSettings(seed=3))
        answers = generator.generate(TASKS)
    assert answers == [f"Question: what of {i}?" for i in range(3)]
    assert generator.generated_tokens == 21
    paths = {path for _, path, _ in server.requests}
    assert paths == {"/v1/chat/completions"}
    body = server.requests[0][2]
    assert body["model"] == "m" and body["max_tokens"] == 50 and body["temperature"] == 0.8
    assert body["top_p"] == 1.0 and isinstance(body["seed"], int)
    assert body["messages"][0]["role"] == "system" and body["messages"][1]["role"] == "user"
    described = generator.describe()
    assert described["kind"] == "http" and described["url"] == server.url
    assert described["name"] == "m" and described["prompt"]["version"] == "v1"


def test_completions_api_for_base_models_stops_at_newline():
    with Server() as server:
        generator = make(server.url, api="completions", concurrency=1)
        assert generator.generate(TASKS[:1]) == [" what of it?\n"]
    _, path, body = server.requests[0]
    assert path == "/v1/completions" and body["stop"] == ["\n"]
    assert body["prompt"].endswith("Passage: Passage number 0 about tea.\nQuestion:")


def test_the_served_model_is_asked_for_when_not_named():
    with Server() as server:
        assert build_generator(server.url).name == "served-model"


def test_a_500_is_retried_then_succeeds():
    with Server(script=[500, 503]) as server:
        generator = make(server.url, retries=2, concurrency=1)
        assert generator.generate(TASKS[:1]) == ["Question: what of 0?"]
    assert len(server.requests) == 3


def test_a_bad_request_is_not_retried():
    with Server(script=[400]) as server:
        with pytest.raises(GenerationError, match="HTTP 400") as error:
            make(server.url, retries=3).generate(TASKS[:1])
    assert len(server.requests) == 1 and "\n" not in str(error.value)


def test_an_endpoint_that_never_answers_is_one_line_naming_its_url():
    with Server(default="hang") as server:
        generator = make(server.url, timeout=0.3, retries=1, concurrency=1)
        started = time.monotonic()
        with pytest.raises(GenerationError) as error:
            generator.generate(TASKS[:1])
    message = str(error.value)
    assert message.startswith(f"{server.url}/v1/chat/completions: no answer after 2 attempts")
    assert "\n" not in message and time.monotonic() - started < 3


def test_a_closed_port_is_one_line_too():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(
        ConfigError, match=f"127.0.0.1:{port}/v1/models: no answer after 1 attempts"
    ):
        HTTPGenerator(f"http://127.0.0.1:{port}", retries=0)


def test_the_request_rate_is_bounded():
    with Server() as server:
        generator = make(server.url, requests_per_second=20, concurrency=3)
        started = time.monotonic()
        generator.generate(
            [GenerationTask(f"d{i}", "tea leaves", "questions", 0) for i in range(6)]
        )
        elapsed = time.monotonic() - started
    arrivals = sorted(t for t, _, _ in server.requests)
    assert elapsed >= 0.24  # six requests at 20/s: the last starts 5 intervals after the first
    assert arrivals[-1] - arrivals[0] >= 0.22


def test_rate_limiter_spaces_calls_exactly():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 6))
        now[0] += seconds

    limiter = RateLimiter(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.wait()
    assert slept == [0.25, 0.25]
    now[0] += 10  # idle time is not banked as a burst beyond one call
    limiter.wait()
    limiter.wait()
    assert slept == [0.25, 0.25, 0.25]
    with pytest.raises(ConfigError, match="requests_per_second"):
        RateLimiter(0)


def test_urls_are_normalised_and_checked():
    assert base_url("http://h:8000/v1/chat/completions") == "http://h:8000"
    assert base_url("https://h/api/v1/") == "https://h/api"
    with pytest.raises(ConfigError, match="expected http"):
        base_url("ftp://h")
