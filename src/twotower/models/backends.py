"""Where an inference-only encode runs: torch, or the route exported to OpenVINO.

Measured on this CPU (AMX and AVX512-BF16; all-MiniLM-L6-v2, 160 CISI documents of 164 tokens
on average, one thread): OpenVINO at bf16 57-60 documents/s against torch's bf16 autocast 33-37
and torch fp32 15, at the autocast's cosine to fp32 (0.99999); OpenVINO fp32 31 (2x torch fp32,
exact); ONNX Runtime fp32 21.5, and its int8 dynamic quantisation 44 but at a cosine of 0.946
(min 0.90) to fp32, too far. So ``auto`` is OpenVINO on a CPU where it is installed, at the
encoder's precision (bf16 through ``INFERENCE_PRECISION_HINT``), and torch elsewhere (a GPU).

A route is traced once (``torch.jit.trace``, then ``openvino.convert_model``: about 2.5 s for
MiniLM) and cached in ``$TWOTOWER_CACHE/graphs`` under the route's embedding fingerprint, which
covers its weights, settings, back-end and precision: a fine-tuned model never meets another
model's graph. One file per graph (header, IR, weights), written with
:func:`~twotower.data.files.atomic_write` and its checksum. A missing package or a failed export
falls back to torch with one log line, and the encoder's fingerprints change with it, so its
embeddings are never cached as OpenVINO's. ``TWOTOWER_BACKEND=torch`` forces torch everywhere.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from twotower.data.files import atomic_write, checksum_problem, file_lock
from twotower.errors import ConfigError
from twotower.models.adapter import bypassed
from twotower.settings import backend_override, cache_root

if TYPE_CHECKING:
    from twotower.models.encoder import Encoder, Task

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "openvino"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "openvino")
Runner = Callable[[dict[str, Any]], torch.Tensor]

_MAGIC = b"TWOTOWER-OPENVINO 1\n"  # then one JSON line (inputs, constants, IR size), IR, weights
_said: set[str] = set()


def _say_once(level: int, message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.log(level, message)


def openvino_installed() -> bool:
    try:  # find_spec, not an import: a cached evaluation should not pay OpenVINO's import
        return importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules holds None (import blocked)
        return False


def resolve_backend(setting: str, device: torch.device) -> str:
    """The back-end an encoder on ``device`` runs: ``$TWOTOWER_BACKEND`` if set, else
    ``setting``; ``auto`` is OpenVINO on a CPU where it is installed, torch otherwise."""
    choice = backend_override() or setting
    if choice not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {choice!r}")
    if choice == "torch":
        return "torch"
    explicit = logging.WARNING if choice == "openvino" else logging.DEBUG
    if device.type != "cpu":
        _say_once(explicit, f"openvino is used on the CPU only: encoding on {device} with torch")
        return "torch"
    if not openvino_installed():
        level = logging.WARNING if choice == "openvino" else logging.INFO
        _say_once(
            level, "openvino is not installed (pip install 'twotower[fast]'): encoding with torch"
        )
        return "torch"
    return "openvino"


def graph_path(encoder: Encoder, task: Task) -> Path:
    """The cached graph of ``task``'s route: its embedding fingerprint (weights, settings,
    back-end, precision) and the OpenVINO version that converted it."""
    import openvino

    version = openvino.__version__.split("-")[0]
    precision = "bf16" if encoder.use_bf16() else "fp32"
    # The route without its residual adapters, which run after it in torch (models/adapter.py).
    fingerprint = encoder.fingerprint_for(task, adapted=False)
    name = f"{fingerprint}-{encoder.backend}-{precision}-{version}.graph"
    return cache_root() / "graphs" / name


class OpenVinoRoute:
    """One route compiled for the CPU; called with a batch of features, returns its embeddings."""

    def __init__(self, compiled: Any, inputs: Sequence[str], constants: dict[str, Any]) -> None:
        self.request = compiled.create_infer_request()
        self.inputs = tuple(inputs)
        self.constants = constants

    def accepts(self, batch: dict[str, Any]) -> bool:
        """Whether ``batch`` has the traced inputs, and the values traced in as constants."""
        rest = {k: v for k, v in batch.items() if k not in self.inputs}
        return all(k in batch for k in self.inputs) and rest == self.constants

    def __call__(self, batch: dict[str, Any]) -> torch.Tensor:
        outputs = self.request.infer([batch[name].cpu().numpy() for name in self.inputs])
        # The request reuses its output buffer on the next batch: copy.
        return torch.from_numpy(np.array(outputs.to_tuple()[0], dtype=np.float32))


@cache
def _core() -> Any:
    import openvino

    return openvino.Core()


def _compile(model: Any, bf16: bool) -> Any:
    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),  # the threads the run gave torch
        "PERFORMANCE_HINT": "LATENCY",  # one stream over all threads: batches come one at a time
    }
    return _core().compile_model(model, "CPU", config)


def _split(example: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The per-row tensors (graph inputs) and the rest, traced in as constants."""
    rows = example["attention_mask"].shape[0]
    inputs, constants = [], {}
    for key, value in example.items():
        if isinstance(value, torch.Tensor):
            if value.dim() == 0 or value.shape[0] != rows:
                raise ValueError(f"feature {key!r} is a tensor that is not per text")
            inputs.append(key)
        elif value is None or isinstance(value, str | int | float | bool):
            constants[key] = value
        else:
            raise ValueError(f"feature {key!r} ({type(value).__name__}) cannot be traced in")
    return inputs, constants


def _padded(example: dict[str, Any], inputs: Sequence[str]) -> tuple[torch.Tensor, ...]:
    """The example with one masked column more, so the trace keeps the attention mask's path
    (a model may skip the mask when a batch has no padding)."""
    rows = example["attention_mask"].shape[0]
    tensors = []
    for key in inputs:
        value = example[key].detach().cpu().clone()
        if value.dim() == 2 and value.shape[0] == rows:
            extra = torch.zeros_like(value[:, -1:]) if key == "attention_mask" else value[:, -1:]
            value = torch.cat([value, extra], dim=1)
        tensors.append(value)
    return tuple(tensors)


class _Route(torch.nn.Module):
    """``task``'s route of a SentenceTransformer as a function of its input tensors."""

    def __init__(self, model: torch.nn.Module, task: str, inputs: Sequence[str], constants: dict):
        super().__init__()
        self.model, self.task, self.names, self.constants = model, task, tuple(inputs), constants

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        features = dict(zip(self.names, tensors, strict=True), **self.constants)
        return self.model(features, task=self.task)["sentence_embedding"]


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _convert(encoder: Encoder, task: Task, example: dict[str, Any]) -> tuple[Any, dict]:
    import openvino as ov

    inputs, constants = _split(example)
    tensors = _padded(example, inputs)
    route = _Route(encoder.model, task, inputs, constants).eval()
    heads = encoder.route_adapters(task)
    # The encode that asks is under inference mode and maybe autocast: neither may be traced.
    with (
        contextlib.ExitStack() as stack,
        torch.inference_mode(False),
        torch.no_grad(),
        torch.autocast(encoder.device.type, enabled=False),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # the tracer's warnings about Python values it fixed
        stack.enter_context(_quiet("sentence_transformers"))  # deprecated attributes it reads
        stack.enter_context(bypassed(heads))  # the graph is the route under its adapters
        tensors = tuple(t.clone() for t in tensors)
        traced = torch.jit.trace(route, tensors, check_trace=False, strict=False)
        shapes = [(ov.PartialShape([-1] * t.dim()), ov.Type(t.numpy().dtype)) for t in tensors]
        graph = ov.convert_model(traced, input=shapes)
    return graph, {"inputs": inputs, "constants": constants}


def _write(path: Path, graph: Any, meta: dict, bf16: bool) -> None:
    import tempfile

    import openvino as ov

    with tempfile.TemporaryDirectory() as folder:
        # fp16 weights for a bf16 run: half the file, and bf16 keeps fewer bits than fp16 anyway.
        ov.save_model(graph, f"{folder}/route.xml", compress_to_fp16=bf16)
        xml = Path(folder, "route.xml").read_bytes()
        weights = Path(folder, "route.bin").read_bytes()
    header = json.dumps({**meta, "xml_bytes": len(xml)}).encode() + b"\n"
    with atomic_write(path, "wb", checksum=True) as handle:
        for part in (_MAGIC, header, xml, weights):
            handle.write(part)


def _read(path: Path) -> tuple[Any, dict] | None:
    """The graph cached at ``path`` and its inputs and constants; None (warned) if damaged."""
    problem = checksum_problem(path)
    if problem is not None:
        log.warning("%s %s: exporting again", path, problem)
        return None
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        log.warning("%s is not a twotower graph: exporting again", path)
        return None
    end = data.index(b"\n", len(_MAGIC))
    meta = json.loads(data[len(_MAGIC) : end])
    xml_end = end + 1 + meta["xml_bytes"]
    import openvino as ov

    weights = ov.Tensor(np.frombuffer(data, dtype=np.uint8, offset=xml_end).copy())
    return _core().read_model(model=data[end + 1 : xml_end], weights=weights), meta


def openvino_route(encoder: Encoder, task: Task, example: dict[str, Any]) -> OpenVinoRoute:
    """``task``'s route compiled by OpenVINO: the cached graph, else one exported (and cached)
    from ``encoder.model`` with ``example`` (a batch of features) to trace it."""
    path = graph_path(encoder, task)
    bf16 = encoder.use_bf16()
    with file_lock(path):  # processes sharing the cache export a route once
        cached = _read(path) if path.is_file() else None
        if cached is None:
            graph, meta = _convert(encoder, task, example)
            _write(path, graph, meta, bf16)
            log.info("exported the %s route to OpenVINO (%s)", task, path.name)
            # Run what was cached (its weights fp16 for bf16), so a later process that reads the
            # graph gets these embeddings to the bit.
            cached = _read(path)
            if cached is None:
                raise OSError(f"{path} cannot be read back")
        graph, meta = cached
    return OpenVinoRoute(_compile(graph, bf16), meta["inputs"], meta["constants"])


def _fall_back(encoder: Encoder, task: Task, exc: BaseException) -> None:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    log.warning("openvino export of the %s route failed (%s): encoding with torch", task, reason)
    encoder.backend = "torch"
    # Its embeddings are torch's from now on, and so must be their cache keys.
    encoder._fingerprints.clear()
    encoder.__dict__.pop("fingerprint", None)


def ready_route(encoder: Encoder, task: Task, example: dict[str, Any]) -> OpenVinoRoute | None:
    """``task``'s compiled route (made once per encoder); None where the encoder runs torch,
    after a failed export too."""
    if encoder.backend == "torch":
        return None
    key = encoder.fingerprint_for(task, adapted=False)
    route = encoder._graphs.get(key)
    if route is None:
        try:
            route = openvino_route(encoder, task, example)
        except Exception as exc:  # any failure to export or compile: torch still encodes
            _fall_back(encoder, task, exc)
            return None
        encoder._graphs[key] = route
    return route


def prepare_backend(encoder: Encoder, task: Task, texts: Sequence[str]) -> None:
    """Ready ``task``'s route before its embeddings are keyed: a failed export falls back to
    torch, which changes the key they are cached under."""
    if encoder.backend == "torch" or not texts:
        return
    example = encoder.model.preprocess(list(texts[:1]), prompt=encoder.prompts[task], task=task)
    ready_route(encoder, task, example)


def batch_runner(encoder: Encoder, task: Task) -> Runner:
    """What turns a batch of ``task`` features into embeddings (float32, not normalised)."""

    def with_torch(batch: dict[str, Any]) -> torch.Tensor:
        return encoder.model(batch, task=task)["sentence_embedding"].float()

    if encoder.backend == "torch":
        return with_torch

    def run(batch: dict[str, Any]) -> torch.Tensor:
        route = ready_route(encoder, task, batch)
        if route is None:
            return with_torch(batch)
        if not route.accepts(batch):  # a feature the trace fixed has changed: torch is exact
            _say_once(
                logging.WARNING, f"the {task} graph does not take this batch: torch encodes it"
            )
            return with_torch(batch)
        return route(batch)

    return run
