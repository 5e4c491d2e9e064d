"""Schema serializers: how a database's schema is written into a prompt, chosen by name.

``ddl``        the CREATE TABLE statements exactly as the database stores them, in
               ``sqlite_master`` order, joined by a blank line: the llama-cookbook's
               ``generate_schema_prompt`` (which, like it, also lists ``sqlite_sequence``).
               ``rows=N`` appends its ``/* N example rows: ... */`` block per table.
``sentences``  DB-GPT-Hub's text: "<db> contains tables such as a, b. Table a has columns
               such as x, y. x is the primary key.\\n" then "The x of a is the foreign key
               of y of b.\\n" lines.
``compact``    one line per table, ``t(a INTEGER PK; b TEXT -> u.c -- description e.g. 1, 2)``,
               with keys, column descriptions (BIRD's CSVs) and ``examples=N`` values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from sqlwright.types import Schema, Table


@dataclass(frozen=True)
class SchemaOptions:
    examples: int = 0  # example values per column (compact)
    rows: int = 0  # example rows per table (ddl, cookbook style)
    descriptions: bool = True  # column descriptions (compact)

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_OPTIONS = SchemaOptions()
SERIALIZERS: dict[str, Callable[[Schema, SchemaOptions], str]] = {}


def register(name: str):
    def deco(fn):
        SERIALIZERS[name] = fn
        return fn

    return deco


def serialize_schema(schema: Schema, name: str = "ddl", options: SchemaOptions = DEFAULT_OPTIONS) -> str:
    if name not in SERIALIZERS:
        raise KeyError(f"unknown schema serializer {name!r}; choose one of: {', '.join(SERIALIZERS)}")
    return SERIALIZERS[name](schema, options)


# -- ddl --------------------------------------------------------------------------------
@register("ddl")
def ddl(schema: Schema, options: SchemaOptions) -> str:
    if schema.ddl_text is not None:  # given as text by the source (sql-create-context)
        return schema.ddl_text
    parts = []
    for t in schema.tables:
        text = t.ddl or _synth_ddl(t)
        if options.rows and t.rows and not t.internal:
            name = f"`{t.name}`" if t.name in ("order", "by", "group") else t.name
            text = (f"{text} \n /* \n {options.rows} example rows: \n SELECT * FROM {name} LIMIT {options.rows}; \n "
                    f"{_nice_table([c.name for c in t.columns], t.rows)} \n */")  # fmt: skip
        parts.append(text)
    return "\n\n".join(parts)


def _synth_ddl(t: Table) -> str:
    cols = [f"  {c.name} {c.type}".rstrip() for c in t.columns]
    pks = [c.name for c in t.columns if c.primary_key]
    if pks:
        cols.append(f"  PRIMARY KEY ({', '.join(pks)})")
    cols += [f"  FOREIGN KEY ({fk.column}) REFERENCES {fk.ref_table}({fk.ref_column})" for fk in t.foreign_keys]
    return f"CREATE TABLE {t.name} (\n" + ",\n".join(cols) + "\n)"


def _nice_table(names: list[str], rows: list[tuple]) -> str:
    """The cookbook's ``nice_look_table``: right-aligned columns."""
    widths = [max(len(str(v[i])) for v in [*rows, names]) for i in range(len(names))]
    header = "".join(f"{n.rjust(w)} " for n, w in zip(names, widths, strict=False))
    body = "\n".join("".join(f"{str(v).rjust(w)} " for v, w in zip(row, widths, strict=False)) for row in rows)
    return header + "\n" + body


# -- sentences --------------------------------------------------------------------------
@register("sentences")
def sentences(schema: Schema, options: SchemaOptions) -> str:
    tables = schema.user_tables
    text = f"{schema.db_id} contains tables such as {', '.join(t.name for t in tables)}. "
    for t in tables:
        text += f"Table {t.name} has columns such as {', '.join(c.name for c in t.columns)}. "
        for c in t.columns:
            if c.primary_key:
                text += f"{c.name} is the primary key.\n"
    for table, fk in schema.foreign_keys:
        text += f"The {fk.column} of {table} is the foreign key of {fk.ref_column} of {fk.ref_table}.\n"
    return text


# -- compact ----------------------------------------------------------------------------
@register("compact")
def compact(schema: Schema, options: SchemaOptions) -> str:
    lines = []
    for t in schema.user_tables:
        fk_by_col = {fk.column.lower(): fk for fk in t.foreign_keys}
        parts = []
        for c in t.columns:
            s = f"{c.name} {c.type}".rstrip()
            if c.primary_key:
                s += " PK"
            if fk := fk_by_col.get(c.name.lower()):
                s += f" -> {fk.ref_table}.{fk.ref_column}"
            if options.descriptions and c.description:
                s += f" -- {c.description}"
            if options.examples and c.examples:
                s += " e.g. " + ", ".join(_value(v) for v in c.examples[: options.examples])
            parts.append(s)
        lines.append(f"{t.name}({'; '.join(parts)})")
    return "\n".join(lines)


def _value(v) -> str:
    if isinstance(v, str):
        return repr(v if len(v) <= 40 else v[:40] + "…")
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    return str(v)
