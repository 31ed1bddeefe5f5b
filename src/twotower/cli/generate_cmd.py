"""``twotower generate``: typed synthetic queries for a collection's passages (resumable)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from twotower.cli.common import DataDirOpt, DeviceOpt, user_errors, write_json
from twotower.data import load_corpus
from twotower.errors import ConfigError
from twotower.generation import (
    CUTS,
    QUERY_TYPES,
    REASONS,
    JunkFilter,
    SamplingSettings,
    build_generator,
    generate_queries,
    parse_query_types,
    select_documents,
)
from twotower.generation.job import EMPTY_PASSAGE, GenerationReport
from twotower.generation.prompts import DEFAULT_MAX_PASSAGE_WORDS, DEFAULT_SHOTS

SAMPLING = SamplingSettings()  # the defaults of the paper's released code (Tamber et al. 2025)


def _positive(option: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{option} must be positive, got {value}")


@user_errors
def generate_command(
    data: Annotated[
        str, typer.Option("--data", "-d", help="collection name or folder (its corpus is read)")
    ],
    generator: Annotated[
        str,
        typer.Option(
            "--generator",
            "-g",
            help="ict, crop, ict+crop (both types), smollm2, gemma3-270m, a model folder or .gguf file, a hub name "
            "org/name, or an OpenAI-compatible endpoint http(s)://HOST:PORT",
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="append the queries to this JSONL (an existing one is resumed; dropped "
            "completions go to OUTPUT.dropped.jsonl)",
        ),
    ],
    types: Annotated[
        str | None,
        typer.Option(
            "--types",
            "-t",
            help=f"query types, comma-separated: {', '.join(QUERY_TYPES)} (needed for a model; "
            "ict and crop write their own type)",
        ),
    ] = None,
    per_doc: Annotated[int, typer.Option(min=1, help="queries of each type per document")] = 1,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="model an endpoint serves (default: the first of /v1/models)"
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="the first N documents, in corpus order")
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(min=1, help="a uniform random sample of N documents (drawn with --seed)"),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(min=0, help="seed of the document sample, the few-shot draws and sampling"),
    ] = 0,
    temperature: Annotated[
        float, typer.Option(min=0.0, help="sampling temperature (0: greedy decoding)")
    ] = SAMPLING.temperature,
    top_p: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="nucleus sampling: top-p in (0, 1]")
    ] = SAMPLING.top_p,
    max_new_tokens: Annotated[
        int, typer.Option(min=1, help="most tokens generated per query")
    ] = SAMPLING.max_new_tokens,
    max_passage_words: Annotated[
        int, typer.Option(min=1, help="passages are cut to this many words in prompts")
    ] = DEFAULT_MAX_PASSAGE_WORDS,
    shots: Annotated[
        int, typer.Option(min=0, help="few-shot examples drawn per prompt ('search' has none)")
    ] = DEFAULT_SHOTS,
    max_query_words: Annotated[
        int, typer.Option(min=1, help="drop a query longer than this many words (too_long)")
    ] = JunkFilter.max_words,
    chat: Annotated[
        bool | None,
        typer.Option(
            "--chat/--few-shot",
            help="prompting of a local model (default: chat when its tokenizer has a chat template)",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="tasks per generation batch (default: 16 for a model, 256 for ict/crop)"
        ),
    ] = None,
    device: DeviceOpt = None,
    precision: Annotated[
        str,
        typer.Option(
            help="a local model's weights: auto (bf16 where the CPU or GPU has it), bf16 or fp32"
        ),
    ] = "auto",
    api: Annotated[
        Literal["chat", "completions"],
        typer.Option(help="endpoint API: chat (/v1/chat/completions) or completions (base models)"),
    ] = "chat",
    requests_per_second: Annotated[
        float | None, typer.Option(help="most requests per second to an endpoint")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for an endpoint's answer")] = 60.0,
    retries: Annotated[
        int, typer.Option(min=0, help="retries of a failed request (exponential back-off)")
    ] = 3,
    concurrency: Annotated[
        int, typer.Option(min=1, help="requests in flight at once to an endpoint")
    ] = 4,
    remove_sentence: Annotated[
        bool,
        typer.Option(
            "--ict-remove/--ict-keep",
            help="ict: write the passage without the query's sentence as the line's positive, "
            "or keep the whole passage",
        ),
    ] = True,
    report: Annotated[Path | None, typer.Option(help="also write the report as JSON here")] = None,
    data_dir: DataDirOpt = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="show a progress bar")
    ] = True,
) -> None:
    """Write synthetic queries (CADET's typed queries, ICT sentences or random crops) for a
    corpus' passages, each appended as its batch finishes; a re-run resumes."""
    if not 0 < top_p <= 1:
        raise ConfigError(f"--top-p must be in (0, 1], got {top_p}")
    _positive("--timeout", timeout)
    _positive("--requests-per-second", requests_per_second)
    if limit is not None and sample is not None:
        raise ConfigError("--limit and --sample choose documents in two ways; give one")
    wanted = None
    if types:
        names = [t.strip() for t in types.split(",") if t.strip()]
        if all(cut in CUTS for cut in generator.strip().lower().split("+")):
            # An unknown name is named as such; a known one the job refuses for ict/crop.
            parse_query_types(
                [n for n in names if n.lower() not in ("ict", "crop")] or ["questions"]
            )
            wanted = names
        else:
            wanted = parse_query_types(names)
    sampling = SamplingSettings(
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
    )
    collection = load_corpus(data, data_dir)
    corpus = collection.corpus
    doc_ids = select_documents(corpus.ids, limit=limit, sample=sample, seed=seed)
    backend = build_generator(
        generator,
        model_name=model,
        sampling=sampling,
        batch_size=batch_size,
        device=device,
        max_passage_words=max_passage_words,
        shots=shots,
        chat=chat,
        api=api,
        timeout=timeout,
        retries=retries,
        requests_per_second=requests_per_second,
        concurrency=concurrency,
        remove_sentence=remove_sentence,
        precision=precision,
    )
    try:
        result = generate_queries(
            {d: corpus.text_of(d) for d in doc_ids},
            doc_ids,
            wanted,
            per_doc,
            backend,
            output,
            batch_size=batch_size,
            junk=JunkFilter(max_words=max_query_words),
            progress=progress,
        )
    finally:
        backend.close()
    if report is not None:
        write_json(report, {"data": collection.name, **result.as_dict()})
    print_report(result, collection.name)


def print_report(result: GenerationReport, collection: str) -> None:
    console = Console(stderr=True)
    if result.dropped:
        reasons = [r for r in (*REASONS, EMPTY_PASSAGE) if result.dropped.get(r)]
        table = Table(title="dropped completions", title_justify="left")
        table.add_column("type")
        table.add_column("written", justify="right")
        for reason in reasons:
            table.add_column(reason, justify="right")
        for kind in sorted(set(result.written_by_type) | set(result.dropped_by_type)):
            of_kind = result.dropped_by_type.get(kind, Counter())
            table.add_row(
                kind,
                str(result.written_by_type.get(kind, 0)),
                *(str(of_kind.get(r, 0)) for r in reasons),
            )
        console.print(table)
    by_type = ", ".join(f"{k} {n}" for k, n in sorted(result.written_by_type.items()))
    dropped = ", ".join(f"{k} {n}" for k, n in result.dropped.most_common())
    console.print(
        f"wrote {result.written} queries{f' ({by_type})' if by_type else ''}, dropped "
        f"{result.dropped_total}{f' ({dropped})' if dropped else ''}, {result.skipped_done} already "
        f"done, for {result.documents} documents of {collection} with {result.generator['name']} in "
        f"{result.seconds:.1f} s: {result.queries_per_second:.2f} queries/s, "
        f"{result.completions_per_second:.2f} completions/s, {result.tokens_per_second:.1f} tokens/s "
        f"({result.generated_tokens} generated) → {result.output}",
        highlight=False,
        soft_wrap=True,
    )
