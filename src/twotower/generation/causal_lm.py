"""A local causal language model as a query generator, through transformers.

The model is a folder, a hub name or a GGUF file (transformers dequantises GGUF weights with
the ``gguf`` package). An instruction-tuned model, one whose tokenizer has a chat template,
gets CADET's chat prompt (Tamber et al. 2025); a base model gets the few-shot text of
InPars (Bonifacio et al. 2022) and stops at the end of the line it completes. Prompts are
left-padded and generated in batches; sampling is seeded per batch from the settings' seed
and the batch's tasks, so the same tasks give the same queries.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch

from twotower.errors import ConfigError, ResolutionError
from twotower.generation.base import (
    GenerationError,
    GenerationTask,
    Generator,
    SamplingSettings,
    task_seed,
)
from twotower.generation.prompts import PromptBuilder
from twotower.models.encoder import bf16_supported

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_causal(config: Any, label: str) -> None:
    """Refuse a model transformers cannot generate with: an encoder (BERT), a sequence-to-
    sequence model (T5), anything without a causal-LM head in ``AutoModelForCausalLM``."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    architectures = list(getattr(config, "architectures", None) or [])
    causal_classes = {
        c
        for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()
        for c in (v if isinstance(v, (list, tuple)) else [v])
    }
    what = architectures[0] if architectures else f"model type {model_type!r}"
    reason = None
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(
        config, "is_encoder_decoder", False
    ):
        reason = "has no causal language-model head"
    elif architectures and not any(a in causal_classes for a in architectures):
        reason = "is saved without a causal language-model head"
    elif model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(
        config, "is_decoder", False
    ):
        reason = "is an encoder (is_decoder is false)"
    if reason:
        raise ConfigError(
            f"{label}: {what} {reason}; a generator needs a causal language model "
            "(a Llama, Qwen, Gemma, SmolLM … folder, hub name or .gguf file)"
        )


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def newline_stop(tokenizer: Any) -> Any:
    """A stopping criterion that ends a row once it generates a token containing a newline
    (few-shot continuation: the query is the rest of one line). Each token id is decoded once."""
    from transformers import StoppingCriteria

    class StopAtNewline(StoppingCriteria):
        def __init__(self) -> None:
            self.newline: dict[int, bool] = {}

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
            done = []
            for token in input_ids[:, -1].tolist():
                if token not in self.newline:
                    self.newline[token] = "\n" in tokenizer.decode([token])
                done.append(self.newline[token])
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StopAtNewline()


class CausalLMGenerator(Generator):
    """Queries from a transformers causal LM (see the module docstring).

    ``source`` is a folder or hub name; with ``gguf_file`` the GGUF file of that name inside
    it. ``chat`` forces chat prompts on or off (default: whether the tokenizer has a chat
    template). ``local_files_only`` keeps hub names to the local cache (offline).
    """

    kind = "causal-lm"

    def __init__(
        self,
        source: str | Path,
        *,
        gguf_file: str | None = None,
        name: str | None = None,
        sampling: SamplingSettings | None = None,
        batch_size: int = 8,
        device: str | None = None,
        prompts: PromptBuilder | None = None,
        chat: bool | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        precision: str = "auto",
    ) -> None:
        label = name or (str(Path(source) / gguf_file) if gguf_file else str(source))
        super().__init__(name=label, sampling=sampling, batch_size=batch_size)
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        if gguf_file and importlib.util.find_spec("gguf") is None:
            raise ConfigError(
                f"{label}: reading a GGUF file needs the gguf package "
                "(pip install 'twotower[generation]' or pip install gguf)"
            )
        self.gguf_file = gguf_file
        self.prompts = prompts or PromptBuilder()
        self.device = torch.device(device or default_device())
        load: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if gguf_file:
            load["gguf_file"] = gguf_file
        if local_files_only:
            load["local_files_only"] = True
        started = time.perf_counter()
        try:
            config = AutoConfig.from_pretrained(str(source), **load)
        except (OSError, ValueError, KeyError) as exc:
            raise ResolutionError(f"could not load model '{label}': {_first_line(exc)}") from None
        check_causal(config, label)
        if precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        # bf16 where the device computes it natively (CUDA, CPUs with AMX or AVX512-BF16): on
        # this project's Xeon, SmolLM2 generates 2.2x faster than in fp32 (BENCHMARKS.md).
        bf16 = precision == "bf16" or (precision == "auto" and bf16_supported(self.device))
        dtype = torch.bfloat16 if bf16 else torch.float32
        self.precision = "bf16" if bf16 else "fp32"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(source), **load)
            self.model = AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype, **load)
        except (OSError, ValueError, KeyError) as exc:
            raise ResolutionError(f"could not load model '{label}': {_first_line(exc)}") from None
        # transformers wraps PreTrainedModel.to in functools.wraps, which typeshed types unbound.
        self.model.to(self.device).eval()  # type: ignore[arg-type]
        self.tokenizer.padding_side = "left"  # generation continues every row from its end
        self.tokenizer.truncation_side = "left"  # an over-long prompt keeps its target passage
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ConfigError(f"{label}: the tokenizer has neither a pad nor an eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.chat = bool(getattr(self.tokenizer, "chat_template", None)) if chat is None else chat
        if self.chat and not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(
                f"{label}: chat prompts asked for, but the tokenizer has no chat template"
            )
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        self.pad_id = self.tokenizer.pad_token_id
        self.context = getattr(config, "max_position_embeddings", None)
        self._stop = newline_stop(self.tokenizer)
        parameters = sum(p.numel() for p in self.model.parameters())
        log.info(
            "%s: %s, %.0fM parameters, %s prompts, on %s (loaded in %.1f s)",
            label,
            type(self.model).__name__,
            parameters / 1e6,
            "chat" if self.chat else "few-shot",
            self.device,
            time.perf_counter() - started,
        )

    def render(self, task: GenerationTask) -> str:
        """The prompt text of ``task`` as the model sees it."""
        seed = self.sampling.seed
        if self.chat:
            rendered = self.tokenizer.apply_chat_template(
                self.prompts.chat(task, seed), tokenize=False, add_generation_prompt=True
            )
            return cast(str, rendered)  # tokenize=False: the text
        return self.prompts.continuation(task, seed)

    def instructions(self, query_type: str) -> list[str]:
        return self.prompts.instructions(query_type)

    def generate(self, tasks: Sequence[GenerationTask]) -> list[str]:
        if not tasks:
            return []
        sampling = self.sampling
        limit = {}
        if self.context:
            limit = {
                "truncation": True,
                "max_length": max(16, self.context - sampling.max_new_tokens),
            }
        encoded = self.tokenizer(
            [self.render(t) for t in tasks],
            return_tensors="pt",
            padding=True,
            # A rendered chat template already holds its special tokens.
            add_special_tokens=not self.chat,
            **limit,
        ).to(self.device)
        options: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "pad_token_id": self.pad_id,
            "eos_token_id": sorted(self.eos_ids) or None,
            "do_sample": not sampling.greedy,
        }
        if sampling.greedy:
            options.update(temperature=None, top_p=None, top_k=None)
        else:
            # top_k 0: nucleus sampling alone, whatever the model's generation config says.
            options.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if not self.chat:
            options["stopping_criteria"] = [self._stop]
        devices = [self.device] if self.device.type == "cuda" else []
        seed = task_seed(sampling.seed, "batch", *(k for t in tasks for k in t.key))
        try:
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                torch.manual_seed(seed)
                output = self.model.generate(**encoded, **options)
        except RuntimeError as exc:  # out of memory, a device error: one line, no traceback
            raise GenerationError(f"{self.name}: generation failed: {_first_line(exc)}") from None
        new = output[:, encoded["input_ids"].shape[1] :].tolist()
        completions = []
        for row in new:
            count = 0
            for token in row:
                if token in self.eos_ids:
                    count += 1
                    break
                if token == self.pad_id:
                    break
                count += 1
            self.generated_tokens += count
            text = self.tokenizer.decode(row[:count], skip_special_tokens=True)
            completions.append(cast(str, text))  # one row of ids decodes to one string
        return completions

    def describe(self) -> dict[str, Any]:
        described = {
            **super().describe(),
            "prompting": "chat" if self.chat else "few-shot",
            "precision": self.precision,
        }
        if self.gguf_file:
            described["gguf_file"] = self.gguf_file
        return {**described, "prompt": self.prompts.describe()}

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
