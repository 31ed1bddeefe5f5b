"""Kill anywhere, resume to the same result: `twotower train`, `generate` and `eval` are sent
SIGKILL at moments spread over their runs, resumed, and compared with an uninterrupted run.

    python benchmarks/kill_resume.py                     # 24 training trials, 6 generate, 6 eval
    python benchmarks/kill_resume.py --train-trials 6 --generate-trials 2 --eval-trials 2

Everything is tiny (a random 1-layer BERT built by tests/conftest.py, a few queries and
thousands of filler passages) so that process start, not training, is most of the time; each
process runs on one thread (two threads fight on a shared 2-core machine). Each trial:

- train: one of three recipes, taken in the turn of --variants: ``mined`` (hard negatives
  mined by the model being trained, a fusion teacher, Margin-MSE and InfoNCE), ``sync-refresh``
  (InfoNCE, negatives refreshed every 6 steps while training waits), each 24 steps with a
  checkpoint every 2, and ``async-refresh`` (refreshed beside training: 800 steps, a
  checkpoint every 20, so that rounds of several seconds land while it runs). The kill is aimed at a phase (a random moment, mining, a step after the first
  checkpoint, a checkpoint being written, a refresh round, the final save) and the phase it hit
  is read from the log and the run folder when it lands. The run is resumed with --resume (the
  same command without it when no checkpoint was complete yet) and its final safetensors are
  compared with the uninterrupted run's: bit-identical is the bar on a CPU. An async round is
  adopted whenever it happens to finish, so two uninterrupted async runs already differ; their
  difference is measured and an async trial is only checked to finish its schedule.
- generate (ict and crop): killed while batches are appended; after the resumed run every task
  (document, type, sample) is in the output or the dropped file exactly once and the lines are
  the uninterrupted run's.
- eval: killed while the corpus (more than one resume chunk of the embedding cache) is encoded
  or written; the resumed eval reuses the saved chunks, and its metrics equal the
  uninterrupted eval's.

Writes benchmarks/kill_resume.json and the `kill-resume` section of BENCHMARKS.md. The cases are
here; the processes, phases and comparisons in kill_resume_harness.py, the report in
kill_resume_report.py.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from kill_resume_harness import (
    CLI,
    POLL_S,
    TOLERANCE,
    Child,
    Reference,
    Trial,
    aim,
    attempt,
    complete_checkpoints,
    eval_phase,
    generate_phase,
    round_running,
    run_to_end,
    task_key,
    task_lines,
    train_phase,
    wait_gone,
    weight_difference,
    weights_verdict,
)
from kill_resume_report import SECTION, section, summary, table
from sections import write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tiny model and collection of the tests

from tests.conftest import (  # noqa: E402
    DOCS,
    QRELS,
    build_tiny_bert,
    last_logged_step,
    write_collection,
)

SAVE_STEPS = 2
# Train: a first checkpoint after 2 steps, rounds every 6; generate and eval: enough passages
# that the kill can land mid-run (eval: more than one 20,000-text chunk of the embedding cache).
TRAIN_EPOCHS = 12
# Async rounds (several seconds each, mostly process start) must land while training runs.
ASYNC_EPOCHS, ASYNC_SAVE_STEPS = 400, 20
TRAIN_FILLER = 6_000
GENERATE_FILLER = 20_000
EVAL_FILLER = 45_000
TRAIN_VARIANTS = ("mined", "sync-refresh", "async-refresh")
# Async trials take a full run each and compare with nothing exactly: fewer of them.
DEFAULT_VARIANTS = "mined,sync-refresh,mined,sync-refresh,async-refresh"
TRAIN_TARGETS = {
    "mined": ("random moment", "mining", "step", "checkpoint write", "final save"),
    "sync-refresh": ("random moment", "step", "checkpoint write", "refresh round", "final save"),
    "async-refresh": ("random moment", "step", "refresh round", "checkpoint write"),
}


# --- inputs ------------------------------------------------------------------------------------


def filler_documents(count: int, seed: int) -> list[dict]:
    """Passages of 2-4 sentences over the tiny model's words (so they tokenize), all distinct."""
    words = sorted({w.lower().strip(".,") for d in DOCS for w in d["text"].split()})
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        sentences = [
            " ".join(rng.choice(words) for _ in range(rng.randint(4, 9))).capitalize()
            for _ in range(rng.randint(2, 4))
        ]
        docs.append({"_id": f"f{i}", "title": "", "text": ". ".join(sentences) + f". Item {i}."})
    return docs


def build_inputs(work: Path) -> dict[str, Path]:
    model = build_tiny_bert(work / "tiny-bert")
    train = write_collection(work / "train-data", docs=DOCS + filler_documents(TRAIN_FILLER, 1))
    (train / "qrels" / "train.tsv").write_text(QRELS)
    generate = write_collection(work / "generate-data", docs=filler_documents(GENERATE_FILLER, 2))
    evaluate = write_collection(work / "eval-data", docs=DOCS + filler_documents(EVAL_FILLER, 3))
    return {"model": model, "train": train, "generate": generate, "eval": evaluate}


def train_recipe(work: Path, variant: str, model: Path, collection: Path) -> Path:
    optim = {
        "batch_size": 2,
        "epochs": ASYNC_EPOCHS if variant == "async-refresh" else TRAIN_EPOCHS,
        "save_steps": ASYNC_SAVE_STEPS if variant == "async-refresh" else SAVE_STEPS,
        "save_total_limit": 2,
        "precision": "fp32",
        "logging_steps": 1,
        "seed": 7,
        "learning_rate": 1e-3,  # weights that move: a wrong negative shows in them
    }
    if variant == "mined":
        extra = f"teacher: {{kind: fusion, model: {model}}}\n" + (
            "loss:\n  - {loss: margin_mse, weight: 1}\n"
            "  - {loss: contrastive, directions: [q2d, d2q], weight: 0.5}\n"
        )
    else:
        mode = variant.split("-")[0]
        refresh = {"mode": mode, "every_steps": 6, "depth": 8, "threads": 1, "precision": "fp32"}
        extra = f"refresh: {json.dumps(refresh)}\nloss:\n  - {{loss: contrastive, preset: mnrl}}\n"
    path = work / f"{variant}.yaml"
    path.write_text(
        f"# kill-resume benchmark: {variant}\n"
        f"model: {{name: {model}}}\n"
        f"train: {{data: {collection}, split: train}}\n"
        "negatives: {source: dense, count: 1, rank_window: [1, 5]}\n"
        f"{extra}optim: {json.dumps(optim)}\n"
    )
    return path


def train_command(recipe: Path, run: Path, *extra: str) -> list[str]:
    return [*CLI, "train", str(recipe), "--output-dir", str(run), *extra]


def generate_command(generator: str, data: Path, output: Path) -> list[str]:
    return [
        *CLI,
        "generate",
        "--data",
        str(data),
        "--generator",
        generator,
        "--output",
        str(output),
        "--per-doc",
        "2",
        "--batch-size",
        "200",
        "--no-progress",
    ]


def eval_command(model: Path, data: Path, output: Path) -> list[str]:
    return [*CLI, "eval", "--model", str(model), "--data", str(data), "--output", str(output)]


def train_reference(recipe: Path, work: Path, name: str, asynchronous: bool) -> Reference:
    run, cache = work / name, work / f"{name}-cache"
    child = Child(train_command(recipe, run), work / f"{name}.log", cache)
    timeline: dict[str, float] = {}
    while child.running():
        timeline.setdefault(train_phase(run, child.read(), asynchronous), child.elapsed)
        time.sleep(POLL_S)
    if child.finish() != 0:
        raise RuntimeError(f"the uninterrupted run failed:\n{child.text[-3000:]}")
    done = json.loads((run / "model" / "TRAINING_DONE").read_text())
    return Reference(child.elapsed, run / "model", steps=done["steps"], timeline=timeline)


def train_trial(
    number: int, variant: str, target: str, recipe: Path, ref: Reference, work: Path, rng
) -> Trial:
    trial = Trial("train", variant, target)
    run, cache = work / f"train-{number:02d}", work / f"train-{number:02d}-cache"
    child = Child(train_command(recipe, run), work / f"train-{number:02d}.log", cache)
    moment = rng.uniform(0.5, 0.95 * ref.seconds)
    save_steps = ASYNC_SAVE_STEPS if variant == "async-refresh" else SAVE_STEPS
    step_goal = rng.randint(save_steps + 1, max(save_steps + 1, ref.steps - 2))
    writes_goal = rng.randint(1, max(1, ref.steps // save_steps - 1))
    round_goal = rng.randint(1, 2)
    mining_delay = rng.uniform(0, 0.6)
    mining_seen: list[float] = []
    seen_writes: set[str] = set()
    seen_rounds: set[int] = set()

    asynchronous = variant == "async-refresh"

    def due(child: Child) -> str | None:
        phase = train_phase(run, child.text, asynchronous)
        if target == "random moment":
            return phase if child.elapsed >= moment else None
        if target == "mining":  # a moment in the first 0.6 s of it
            if phase.startswith("mining") and not mining_seen:
                mining_seen.append(child.elapsed)
            return phase if mining_seen and child.elapsed >= mining_seen[0] + mining_delay else None
        if target == "step":
            hit = phase.startswith("step") and last_logged_step(run) >= step_goal
            return phase if hit else None
        if target == "checkpoint write":
            if phase == "checkpoint write":
                seen_writes.update(
                    p.name
                    for p in (run / "checkpoints").glob("checkpoint-*")
                    if not (p / "trainer_state.json").is_file()
                )
                return phase if len(seen_writes) >= writes_goal else None
            return None
        if target == "refresh round":
            generation = round_running(run)
            if generation is not None:
                seen_rounds.add(generation)
                if len(seen_rounds) >= round_goal:
                    time.sleep(rng.uniform(0, 1.5))  # somewhere inside the round
                    child.read()
                    return train_phase(run, child.text, asynchronous)
            return None
        if target == "final save":
            return phase if phase == "final save" else None
        raise ValueError(target)

    killing = aim(trial, child, due)
    trial.step_at_kill = last_logged_step(run)
    if not killing:
        trial.notes.append(child.text[-500:])
        return trial
    wait_gone(child.kill())
    if (run / "model" / "TRAINING_DONE").is_file():
        trial.notes.append("the model was saved whole before the kill landed")
    checkpoints = complete_checkpoints(run)
    extra = ("--resume",) if checkpoints else ()
    trial.resumed_from = f"checkpoint-{checkpoints[-1]}" if checkpoints else "start (none saved)"
    code, _, text = run_to_end(
        train_command(recipe, run, *extra), work / f"train-{number:02d}-resumed.log", cache
    )
    if code != 0:
        trial.outcome = f"resume failed (exit {code})"
        trial.notes.append(text[-1500:])
        return trial
    if "already holds" not in text and "resuming from" not in text and checkpoints:
        trial.notes.append("the resumed run did not say it resumed")
    done = json.loads((run / "model" / "TRAINING_DONE").read_text())
    if done["steps"] != ref.steps:
        trial.outcome = f"{done['steps']} steps, not {ref.steps}"
        return trial
    largest, identical = weight_difference(ref.folder, run / "model")
    trial.max_abs_diff = largest
    if variant == "async-refresh":
        trial.outcome = f"finished {ref.steps} steps ({weights_verdict(largest, identical)})"
        trial.ok = True
    else:  # nothing here may differ on a CPU: within the tolerance is a finding too
        trial.outcome = weights_verdict(largest, identical)
        trial.ok = identical
    shutil.rmtree(run)
    shutil.rmtree(cache, ignore_errors=True)
    return trial


def generate_reference(generator: str, data: Path, work: Path) -> Reference:
    folder = work / f"generate-{generator}-reference"
    folder.mkdir()
    output = folder / "queries.jsonl"
    code, seconds, text = run_to_end(
        generate_command(generator, data, output), folder / "log.txt", work / "generate-cache"
    )
    if code != 0:
        raise RuntimeError(f"the uninterrupted generate failed:\n{text[-3000:]}")
    lines = len(task_lines(output)) + len(task_lines(folder / "queries.dropped.jsonl"))
    return Reference(seconds, folder, lines=lines, bytes=output.stat().st_size)


def generate_trial(number: int, generator: str, data: Path, ref: Reference, work: Path, rng):
    trial = Trial("generate", generator, "random moment" if number % 3 == 0 else "mid-output")
    folder = work / f"generate-{number:02d}"
    folder.mkdir()
    output = folder / "queries.jsonl"
    command = generate_command(generator, data, output)
    child = Child(command, folder / "log.txt", work / "generate-cache")
    moment = rng.uniform(0.5, 0.95 * ref.seconds)
    size_goal = rng.uniform(0.02, 0.98) * ref.bytes

    def due(child: Child) -> str | None:
        phase = generate_phase(output)
        if trial.target == "random moment":
            return phase if child.elapsed >= moment else None
        size = output.stat().st_size if output.is_file() else 0
        return phase if size >= size_goal else None

    if not aim(trial, child, due):
        return trial
    child.kill()
    written = len(task_lines_tolerant(output))
    trial.phase += f" ({written} of {ref.lines} lines)"
    trial.resumed_from = f"{written} lines"
    code, _, text = run_to_end(command, folder / "resumed.txt", work / "generate-cache")
    if code != 0:
        trial.outcome = f"resume failed (exit {code})"
        trial.notes.append(text[-1500:])
        return trial
    if "cutting off a truncated last line" in text:
        trial.notes.append("a line cut by the kill was cut off and written again")
    kept = task_lines(output)
    dropped = task_lines(folder / "queries.dropped.jsonl")
    ref_kept = task_lines(ref.folder / "queries.jsonl")
    ref_dropped = task_lines(ref.folder / "queries.dropped.jsonl")
    counts = Counter(task_key(line) for line in kept + dropped)
    twice = sum(1 for c in counts.values() if c > 1)
    expected = {task_key(line) for line in ref_kept + ref_dropped}
    lost = len(expected - set(counts))
    same = _sorted_lines(kept) == _sorted_lines(ref_kept) and _sorted_lines(
        dropped
    ) == _sorted_lines(ref_dropped)
    trial.ok = twice == 0 and lost == 0 and same
    if trial.ok:
        order = kept == ref_kept
        trial.outcome = "each task once, lines identical" + ("" if order else " (other order)")
    else:
        trial.outcome = f"{twice} tasks twice, {lost} lost, lines {'equal' if same else 'differ'}"
    shutil.rmtree(folder)
    return trial


def task_lines_tolerant(path: Path) -> list[str]:
    """Whole lines of a file a kill may have cut."""
    if not path.is_file():
        return []
    return [line for line in path.read_bytes().split(b"\n")[:-1] if line.strip()]


def _sorted_lines(lines: list[dict]) -> list[str]:
    return sorted(json.dumps(line, sort_keys=True) for line in lines)


def eval_reference(model: Path, data: Path, work: Path) -> Reference:
    folder = work / "eval-reference"
    folder.mkdir()
    output = folder / "results.json"
    command = eval_command(model, data, output)
    child = Child(command, folder / "log.txt", folder / "cache")
    timeline: dict[str, float] = {}
    while child.running():
        timeline.setdefault(eval_phase(child.read(), folder / "cache"), child.elapsed)
        time.sleep(POLL_S)
    if child.finish() != 0:
        raise RuntimeError(f"the uninterrupted eval failed:\n{child.text[-3000:]}")
    return Reference(child.elapsed, folder, metrics=eval_metrics(output), timeline=timeline)


def eval_metrics(path: Path) -> list:
    return [r.get("metrics") for r in json.loads(path.read_text())["results"]]


def eval_trial(number: int, model: Path, data: Path, ref: Reference, work: Path, rng) -> Trial:
    targets = ("corpus encoded", "cache entry written", "random moment")
    trial = Trial("eval", "dense", targets[number % len(targets)])
    folder = work / f"eval-{number:02d}"
    folder.mkdir()
    output, cache = folder / "results.json", folder / "cache"
    command = eval_command(model, data, output)
    child = Child(command, folder / "log.txt", cache)
    start = ref.timeline.get("corpus encoded (chunk 1/3)", 0.5)
    end = ref.timeline.get("queries encoded", ref.seconds)
    moment = rng.uniform(start, end) if trial.target == "corpus encoded" else 0.0
    moment = rng.uniform(0.5, 0.95 * ref.seconds) if trial.target == "random moment" else moment
    writes_goal = rng.randint(1, 3)
    seen: set[str] = set()

    def due(child: Child) -> str | None:
        phase = eval_phase(child.text, cache)
        if trial.target == "cache entry written":
            if phase == "cache entry written":
                seen.update(p.name for p in (cache / "embeddings").rglob("*.tmp"))
                return phase if len(seen) >= writes_goal else None
            return None
        return phase if child.elapsed >= moment else None

    if not aim(trial, child, due):
        return trial
    child.kill()
    parts = sorted(
        p.name for p in (cache / "embeddings").rglob("*.npy") if p.parent.name != "embeddings"
    )
    trial.resumed_from = f"{len(parts)} chunk(s) saved"
    code, _, text = run_to_end(command, folder / "resumed.txt", cache)
    if code != 0:
        trial.outcome = f"resume failed (exit {code})"
        trial.notes.append(text[-1500:])
        return trial
    if "resuming an interrupted encoding" in text:
        trial.notes.append("saved chunks reused")
    if "encoding again" in text:
        trial.notes.append("a damaged or unchecked entry was encoded again")
    trial.ok = eval_metrics(output) == ref.metrics
    trial.outcome = "same metrics" if trial.ok else "METRICS DIFFER"
    shutil.rmtree(folder)
    return trial


def train_trials(args, inputs, work: Path, rng) -> tuple[list[Trial], dict]:
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not chosen or set(chosen) - set(TRAIN_VARIANTS):
        raise SystemExit(f"--variants: choose among {', '.join(TRAIN_VARIANTS)}")
    variants = [chosen[i % len(chosen)] for i in range(args.train_trials)]
    references, moved, steps = {}, {}, {}
    for variant in dict.fromkeys(variants):
        recipe = train_recipe(work, variant, inputs["model"], inputs["train"])
        ref = train_reference(recipe, work, f"{variant}-reference", variant == "async-refresh")
        references[variant] = recipe, ref
        moved[variant] = weight_difference(inputs["model"], ref.folder)[0]
        steps[variant] = ref.steps
        print(f"uninterrupted {variant}: {ref.seconds:.1f} s, {ref.steps} steps", flush=True)
    async_floor = None
    if "async-refresh" in references:
        recipe, ref = references["async-refresh"]
        again = train_reference(recipe, work, "async-refresh-again", asynchronous=True)
        async_floor = weight_difference(ref.folder, again.folder)[0]
    trials: list[Trial] = []
    counts: Counter = Counter()
    for number, variant in enumerate(variants):
        targets = TRAIN_TARGETS[variant]
        target = targets[counts[variant] % len(targets)]
        counts[variant] += 1
        recipe, ref = references[variant]
        trials.append(
            attempt(
                Trial("train", variant, target),
                train_trial,
                *(number, variant, target, recipe, ref, work, rng),
            )
        )
        print(table(trials[-1:], len(trials))[-1], flush=True)
    return trials, {"train_steps": steps, "moved": moved, "async_floor": async_floor}


def generate_trials(count: int, inputs, work: Path, rng, first: int) -> list[Trial]:
    refs = {g: generate_reference(g, inputs["generate"], work) for g in ("ict", "crop")}
    trials = []
    for number in range(count):
        generator = ("ict", "crop")[number % 2]
        trials.append(
            attempt(
                Trial("generate", generator, ""),
                generate_trial,
                *(number, generator, inputs["generate"], refs[generator], work, rng),
            )
        )
        print(table(trials[-1:], first + len(trials))[-1], flush=True)
    return trials


def eval_trials(count: int, inputs, work: Path, rng, first: int) -> list[Trial]:
    ref = eval_reference(inputs["model"], inputs["eval"], work)
    trials = []
    for number in range(count):
        trials.append(
            attempt(
                Trial("eval", "dense", ""),
                eval_trial,
                *(number, inputs["model"], inputs["eval"], ref, work, rng),
            )
        )
        print(table(trials[-1:], first + len(trials))[-1], flush=True)
    return trials


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-trials", type=int, default=24)
    parser.add_argument("--generate-trials", type=int, default=6)
    parser.add_argument("--eval-trials", type=int, default=6)
    parser.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        help=f"training recipes, taken in turn (of {', '.join(TRAIN_VARIANTS)})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "kill_resume.json")
    parser.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kill-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    inputs = build_inputs(work)
    trials: list[Trial] = []
    found = {"train_steps": {}, "moved": {}, "async_floor": None}
    if args.train_trials:
        trials, found = train_trials(args, inputs, work, rng)
    if args.generate_trials:
        trials += generate_trials(args.generate_trials, inputs, work, rng, len(trials))
    if args.eval_trials:
        trials += eval_trials(args.eval_trials, inputs, work, rng, len(trials))
    payload = {
        "settings": {
            "seed": args.seed,
            "train_steps": found["train_steps"],
            "save_steps": {
                "mined": SAVE_STEPS,
                "sync-refresh": SAVE_STEPS,
                "async-refresh": ASYNC_SAVE_STEPS,
            },
            "tolerance": TOLERANCE,
            "threads": 1,
            "wall_s": round(time.perf_counter() - started, 1),
        },
        "async_uninterrupted_difference": found["async_floor"],
        "training_moved_weights_by": found["moved"],
        "summary": summary(trials, found["async_floor"], found["moved"]),
        "trials": [asdict(t) for t in trials],
    }
    print()
    print("\n".join(table(trials)))
    print(payload["summary"])
    args.json.write_text(json.dumps(payload, indent=1) + "\n")
    write_section(args.benchmarks, section(payload), SECTION)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
