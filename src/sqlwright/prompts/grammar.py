"""A context-free grammar of SQLite ``SELECT`` queries whose names are one database's names.

``sql_grammar(schema)`` returns the grammar text, in the Lark dialect of llguidance (the
structured-generation library vLLM's ``guidance`` backend and ``sqlwright.infer.constrain``
use); ``schema=None`` gives the syntax-only grammar. This module is text only: it imports no
grammar library, so prompts stay a leaf.

What the grammar accepts (SQLite dialect):

* ``SELECT [DISTINCT|ALL] ... FROM ... WHERE ... GROUP BY ... HAVING ... WINDOW ...
  ORDER BY ... LIMIT a [OFFSET b]`` and ``LIMIT a, b``; ``VALUES (...)``; compound queries
  (``UNION [ALL]``, ``INTERSECT``, ``EXCEPT``); ``WITH [RECURSIVE]`` CTEs with optional column
  lists and ``[NOT] MATERIALIZED``; all joins (comma, ``[NATURAL] [LEFT|RIGHT|FULL [OUTER]|
  INNER|CROSS] JOIN``, ``ON``/``USING``, parenthesised joins); subqueries in ``FROM``, ``IN``,
  ``EXISTS`` and as scalars.
* expressions: every SQLite binary operator, unary ``-``/``+``/``~``/``NOT``, ``IS [NOT]
  [DISTINCT FROM]``, ``[NOT] BETWEEN``, ``[NOT] IN``, ``[NOT] LIKE/GLOB/REGEXP/MATCH`` with
  ``ESCAPE``, ``ISNULL``/``NOTNULL``/``NOT NULL``, ``COLLATE``, ``CASE``, ``CAST(x AS type)``,
  row values, function calls from SQLite's built-in list (``FUNCTIONS``: core, date, math,
  aggregate, window and JSON functions) with ``DISTINCT``, ``*``, in-call ``ORDER BY``,
  ``FILTER (WHERE ...)`` and ``OVER (PARTITION BY ... ORDER BY ... frame)`` / ``OVER name``.
* literals: integers, decimals, exponents, hex, ``'strings'`` with ``''`` escapes, ``X'..'``
  blobs, ``NULL``, ``TRUE``/``FALSE``, ``CURRENT_DATE``/``_TIME``/``_TIMESTAMP``, and
  double-quoted tokens, which SQLite reads as a string literal when no column has that name
  (``Country = "Japan"`` is common in real gold SQL), so any ``"..."`` is allowed where a value is.
* keywords and names in any letter case; names bare, or quoted as ``"x"``, ```x``` or ``[x]``
  (a name that needs quoting: spaces, odd characters, a reserved word: quoted forms only);
  whitespace (spaces, tabs, newlines, at most ``WS_MAX`` in a row) where SQLite allows it,
  required between two words (``SELECTname`` is rejected); an optional trailing ``;``.

Names, with a schema:

* tables (in ``FROM``/``JOIN``/``IN table``) must be the database's tables; columns (bare or
  ``qualifier.column``, ``USING (...)``) must be columns of the database, plus ``rowid``.
* table and column aliases, CTE names and CTE column names, and qualifiers (``T1`` in
  ``T1.name``) may be any identifier that is not a SQLite keyword, or any quoted identifier.
* loose names (any identifier) are allowed where a CFG cannot tell whether a name is declared:
  bare column names in ``ORDER BY``/``GROUP BY``/``HAVING`` of a query whose ``SELECT`` list
  declares an alias (``count(*) AS n ... ORDER BY n``); bare column names in the select list of
  a query that selects from a subquery, and all column names after that subquery
  (``SELECT avg(n) FROM (SELECT count(*) AS n ...) AS t WHERE t.n > 1``: the derived table's
  outputs; ``strict_select=True`` keeps that select list strict); table and column names
  anywhere in a query with a ``WITH`` clause (the CTEs' names and columns).

What it does not check (a CFG cannot): which alias or table binds a qualifier: ``T2.name``
is accepted with any qualifier (a table name, or any identifier) as long as ``name`` is a
column of *some* table of the database; whether a column belongs to the tables in ``FROM``;
that an alias used in ``ORDER BY``, a qualifier or a CTE name was really declared; types,
arity of functions, aggregates in ``WHERE``; ambiguity of bare column names.

During generation the mask only knows the text so far, so a loose place lets a wrong name
through until the text rules the loose reading out: a bare unknown word may still become a
qualifier (``nickname`` -> ``nickname.Name``), and, unless ``strict_select``, a bare unknown
select-list name may still be the output of a subquery in ``FROM``; the grammar then forces
the rest of the query to match (a ``.``; a subquery in ``FROM``). A qualified wrong column
(``T2.teacher`` where ``teacher`` is a table) and a wrong table are stopped where they are
written.

Whitespace rule: the grammar is written with the whitespace inside each lexeme (a word
lexeme after another word needs at least one whitespace character, after punctuation none),
so a lexer cannot glue two words. A word right after a closing parenthesis or quote that ends
a sub-expression must also be separated (``...)AND x`` is rejected, ``...) AND x`` accepted).

The grammar is built once per database and cached (``functools.lru_cache`` keyed by db_id
and the names): calling again is a dictionary lookup.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from sqlwright.errors import UserError
from sqlwright.types import Schema

__all__ = [
    "ANSWER_FORMATS",
    "FUNCTIONS",
    "SQLITE_KEYWORDS",
    "WS_MAX",
    "grammar_names",
    "sql_grammar",
]

WS_MAX = 16  # whitespace characters allowed in a row (bounds runaway whitespace in generation)
ANSWER_FORMATS = ("sql", "fenced", "reasoning")
DIALECTS = ("sqlite",)

# fmt: off
# https://sqlite.org/lang_keywords.html (all 147)
SQLITE_KEYWORDS = frozenset("""
ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE BEGIN
BETWEEN BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE CROSS
CURRENT CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT DEFERRABLE DEFERRED
DELETE DESC DETACH DISTINCT DO DROP EACH ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE EXISTS
EXPLAIN FAIL FILTER FIRST FOLLOWING FOR FOREIGN FROM FULL GENERATED GLOB GROUP GROUPS HAVING
IF IGNORE IMMEDIATE IN INDEX INDEXED INITIALLY INNER INSERT INSTEAD INTERSECT INTO IS ISNULL
JOIN KEY LAST LEFT LIKE LIMIT MATCH MATERIALIZED NATURAL NO NOT NOTHING NOTNULL NULL NULLS OF
OFFSET ON OR ORDER OTHERS OUTER OVER PARTITION PLAN PRAGMA PRECEDING PRIMARY QUERY RAISE
RANGE RECURSIVE REFERENCES REGEXP REINDEX RELEASE RENAME REPLACE RESTRICT RETURNING RIGHT
ROLLBACK ROW ROWS SAVEPOINT SELECT SET TABLE TEMP TEMPORARY THEN TIES TO TRANSACTION TRIGGER
UNBOUNDED UNION UNIQUE UPDATE USING VACUUM VALUES VIEW VIRTUAL WHEN WHERE WINDOW WITH WITHOUT
""".split())  # noqa: SIM905
# keywords SQLite does not take as a bare column name (measured on SQLite 3.40: ``SELECT kw
# FROM t`` fails, or, for CURRENT_*, means the keyword): such names are quoted-only.
RESERVED_NAMES = frozenset("""
ADD ALL ALTER AND AS AUTOINCREMENT BETWEEN CASE CAST CHECK COLLATE COMMIT CONSTRAINT CREATE
CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DEFAULT DEFERRABLE DELETE DISTINCT DROP ELSE
ESCAPE EXCEPT EXISTS FOREIGN FROM GROUP HAVING IN INDEX INSERT INTERSECT INTO IS ISNULL JOIN
LIMIT NOT NOTHING NOTNULL NULL ON OR ORDER PRIMARY RAISE REFERENCES RETURNING SELECT SET TABLE
THEN TO TRANSACTION UNION UNIQUE UPDATE USING VALUES WHEN WHERE
""".split())  # noqa: SIM905
# SQLite's built-in scalar, date/time, math, aggregate, window and JSON functions
FUNCTIONS = tuple(sorted(set("""
abs changes char coalesce concat concat_ws format glob hex ifnull iif instr last_insert_rowid
length like likelihood likely load_extension lower ltrim max min nullif octet_length printf
quote random randomblob replace round rtrim sign soundex sqlite_compileoption_get
sqlite_compileoption_used sqlite_offset sqlite_source_id sqlite_version substr substring
total_changes trim typeof unhex unicode unlikely upper zeroblob
date time datetime julianday unixepoch strftime timediff
acos acosh asin asinh atan atan2 atanh ceil ceiling cos cosh degrees exp floor ln log log10
log2 mod pi pow power radians sin sinh sqrt tan tanh trunc
avg count group_concat max min string_agg sum total median percentile percentile_cont
percentile_disc
row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
nth_value
json json_array json_array_length json_error_position json_extract json_insert json_object
json_patch json_remove json_replace json_set json_type json_valid json_quote json_group_array
json_group_object jsonb jsonb_array jsonb_extract jsonb_insert jsonb_object jsonb_patch
jsonb_remove jsonb_replace jsonb_set jsonb_group_array jsonb_group_object
""".split())))  # noqa: SIM905
TYPE_WORDS = tuple("""
INTEGER INT REAL TEXT FLOAT DOUBLE PRECISION NUMERIC DECIMAL NUMBER BOOLEAN BOOL DATE
DATETIME TIMESTAMP TIME VARCHAR CHAR CHARACTER VARYING NCHAR NVARCHAR NATIVE CLOB BLOB
BIGINT SMALLINT TINYINT MEDIUMINT UNSIGNED SIGNED STRING
""".split())  # noqa: SIM905
COLLATIONS = ("BINARY", "NOCASE", "RTRIM")
EXTRA_COLUMNS = ("rowid",)  # always a column of an ordinary SQLite table
# fmt: on

# -- the base grammar -------------------------------------------------------------------
# A small EBNF: ``rule: alt | alt``; lowercase names are rules (``name@a`` / ``@d`` / ``@c`` switch
# to a looser name mode, see _MODES); UPPERCASE names are SQL words (case-insensitive) or the
# special terminals of _special_terminals(); "..." is punctuation; ( ) ? * + group and repeat.
_BASE = r"""
start: query
query: select_stmt | with_clause select_stmt@c
with_clause: WITH RECURSIVE? cte ("," cte)*
cte: cte_name ("(" cte_column ("," cte_column)* ")")? AS (NOT? MATERIALIZED)? "(" query@c ")"
cte_name: IDENT | QIDENT | TABLE_NAME
cte_column: IDENT | QIDENT | COLUMN_NAME
select_stmt: select_core compound* order_by? limit?
    | aliased_core compound* order_by@a? limit?
    | derived_core compound* order_by@d? limit?
compound: compound_op (select_core | aliased_core | derived_core)
compound_op: UNION ALL? | INTERSECT | EXCEPT
select_core: SELECT quantifier? plain_column ("," plain_column)* from_clause? where_clause? group_by? window_clause?
    | VALUES row ("," row)*
aliased_core: SELECT quantifier? (plain_column ",")* aliased_column ("," result_column)* from_clause? where_clause? group_by@a? window_clause?
derived_core: SELECT quantifier? result_column@a ("," result_column@a)* derived_from where_clause@d? group_by@d? window_clause@d?
quantifier: DISTINCT | ALL
result_column: plain_column | aliased_column
plain_column: "*" | qual "." "*" | expr
aliased_column: expr AS? alias
alias: IDENT | QIDENT | STRING
row: "(" expr ("," expr)* ")"
from_clause: FROM join_source
derived_from: FROM derived_source
derived_source: (join_source ("," | join_op))? "(" query ")" (AS? table_alias)? join_constraint@d? join_tail@d*
join_source: table_or_sub join_tail*
join_tail: "," table_or_sub | join_op table_or_sub join_constraint?
join_op: NATURAL? join_kind? JOIN
join_kind: LEFT OUTER? | RIGHT OUTER? | FULL OUTER? | INNER | CROSS
join_constraint: ON expr | USING "(" COLUMN_NAME ("," COLUMN_NAME)* ")"
table_or_sub: TABLE_NAME (AS? table_alias)? (INDEXED BY IDENT | NOT INDEXED)?
    | "(" query ")" (AS? table_alias)?
    | "(" join_source ")"
table_alias: IDENT | QIDENT
where_clause: WHERE expr
group_by: GROUP BY expr ("," expr)* (HAVING expr)? | HAVING expr
window_clause: WINDOW window_decl ("," window_decl)*
window_decl: IDENT AS "(" window_def ")"
order_by: ORDER BY ordering_term ("," ordering_term)*
ordering_term: expr (ASC | DESC)? (NULLS (FIRST | LAST))?
limit: LIMIT expr (OFFSET expr | "," expr)?
expr: term (punct_op term | word_op term)*
punct_op: "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | arith_op
word_op: OR | AND | IS | IS DISTINCT FROM | IS NOT DISTINCT FROM | NOT? (LIKE | GLOB | REGEXP | MATCH) | ESCAPE
arith_op: "+" | "-" | "*" | "/" | "%" | "||" | "&" | "|" | "<<" | ">>" | "->" | "->>"
term: "-" term | "+" term | "~" term | NOT term | primary postfix*
postfix: COLLATE COLLATION | NOT? IN in_rhs | NOT? BETWEEN arith AND arith | ISNULL | NOTNULL | NOT NULL
arith: term (arith_op term)*
in_rhs: "(" (query | expr ("," expr)*)? ")" | TABLE_NAME
primary: literal | column_ref | "(" expr ("," expr)* ")" | "(" query ")" | EXISTS "(" query ")"
    | CASE expr? (WHEN expr THEN expr)+ (ELSE expr)? END
    | CAST "(" expr AS type_name ")"
    | function_call
literal: NUMBER | STRING | DQSTRING | BLOB | NULL | TRUE | FALSE | CURRENT_DATE | CURRENT_TIME | CURRENT_TIMESTAMP
column_ref: COLUMN_REF | qual "." COLUMN_NAME
qual: QUALIFIER
function_call: FUNC "(" call_args? ")" (FILTER "(" WHERE expr ")")? (OVER (IDENT | "(" window_def ")"))?
call_args: "*" | DISTINCT? expr ("," expr)* (ORDER BY ordering_term ("," ordering_term)*)?
window_def: IDENT? (PARTITION BY expr ("," expr)*)? (ORDER BY ordering_term ("," ordering_term)*)? frame?
frame: (RANGE | ROWS | GROUPS) (BETWEEN frame_bound AND frame_bound | frame_bound) frame_exclude?
frame_exclude: EXCLUDE (NO OTHERS | CURRENT ROW | GROUP | TIES)
frame_bound: UNBOUNDED (PRECEDING | FOLLOWING) | CURRENT ROW | expr (PRECEDING | FOLLOWING)
type_name: TYPE_WORD+ ("(" signed_number ("," signed_number)? ")")?
signed_number: ("+" | "-")? NUMBER
"""

# Name modes, strictest first: s (schema tables and columns only); a (bare column names may
# also be any identifier: select-list aliases in ORDER BY/GROUP BY/HAVING, a derived table's
# outputs in the select list; ``q.col`` stays strict); d (after a subquery in FROM: bare and
# qualified column names may be any identifier); c (in a WITH query: table and column names
# may be any identifier). ``rule@d`` switches to at least mode d.
_MODES = ("s", "a", "d", "c")


# -- the IR -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Nt:  # a rule reference
    name: str
    mode: str | None = None  # "a"/"c": switch to at least this mode


@dataclass(frozen=True)
class _Word:  # a SQL word (keyword), case-insensitive
    word: str


@dataclass(frozen=True)
class _Punct:
    text: str


@dataclass(frozen=True)
class _Special:  # a terminal of _special_terminals() (or a mode-dependent group of them)
    name: str


@dataclass(frozen=True)
class _Group:
    alts: tuple  # tuple[tuple[item, ...], ...]
    op: str = ""  # "", "?", "*", "+"


_TOKEN_RE = re.compile(r'\s*(?:(//[^\n]*)|([a-z_][a-z0-9_]*(?:@[a-z])?)|([A-Z_][A-Z0-9_]*)|"((?:[^"\\]|\\.)*)"|([()|?*+]))')


def _parse_base(text: str) -> dict[str, tuple]:
    rules: dict[str, tuple] = {}
    chunks: list[tuple[str, str]] = []
    for line in text.strip().splitlines():
        m = re.match(r"([a-z_]+):(.*)", line)
        if m:
            chunks.append((m.group(1), m.group(2)))
        elif line.strip():
            name, body = chunks[-1]
            chunks[-1] = (name, body + " " + line)
    for name, body in chunks:
        toks: list[tuple[str, str]] = []
        pos = 0
        while pos < len(body):
            m = _TOKEN_RE.match(body, pos)
            if m is None:
                if body[pos:].strip():
                    raise ValueError(f"grammar: cannot read {body[pos:pos + 20]!r} in {name}")
                break
            pos = m.end()
            if m.group(1):
                continue
            for kind, g in zip(("nt", "up", "str", "op"), m.groups()[1:], strict=True):
                if g is not None:
                    toks.append((kind, g))
        alts, rest = _parse_alts(toks, 0)
        if rest != len(toks):
            raise ValueError(f"grammar: unbalanced ')' in {name}")
        rules[name] = alts
    return rules


def _parse_alts(toks, i):
    alts, seq = [], []
    while i < len(toks):
        kind, v = toks[i]
        if kind == "op" and v == "|":
            alts.append(tuple(seq))
            seq = []
            i += 1
            continue
        if kind == "op" and v == ")":
            break
        if kind == "op" and v == "(":
            inner, i = _parse_alts(toks, i + 1)
            if i >= len(toks) or toks[i] != ("op", ")"):
                raise ValueError("grammar: unbalanced '('")
            item = _Group(inner)
        elif kind == "nt":
            name, _, mode = v.partition("@")
            item = _Nt(name, mode or None)
        elif kind == "up":
            item = _Special(v) if v in _SPECIALS else _Word(v)
        elif kind == "str":
            item = _Punct(v.encode().decode("unicode_escape"))
        else:
            raise ValueError(f"grammar: unexpected {v!r}")
        i += 1
        if i < len(toks) and toks[i][0] == "op" and toks[i][1] in "?*+":
            item = _Group(item.alts if isinstance(item, _Group) and not item.op else ((item,),), toks[i][1])
            i += 1
        seq.append(item)
    alts.append(tuple(seq))
    return tuple(alts), i


# -- terminals --------------------------------------------------------------------------
# Lark regex bodies (Rust regex syntax); "word" terminals start and end with a word character.
_WS = r"[ \t\r\n]"
_ID_START = "A-Za-z_"
_ID_CHAR = "A-Za-z0-9_$"
_BARE_NAME_RE = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_SPECIALS = frozenset({
    "NUMBER", "STRING", "DQSTRING", "BLOB", "IDENT", "QIDENT", "FUNC", "TYPE_WORD", "COLLATION",
    "TABLE_NAME", "COLUMN_NAME", "COLUMN_REF", "QUALIFIER",
})  # fmt: skip


def _rx_escape(s: str) -> str:
    out = []
    for ch in s:
        if ch in r"\.+*?()|[]{}^$#&-~/":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append(r"\n")
        elif ch == "\t":
            out.append(r"\t")
        elif ch == "\r":
            out.append(r"\r")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return "".join(out)


def _nocase(word: str) -> str:
    """``word`` matching any ASCII letter case (SQLite folds ASCII only; a regex ``(?i)`` is
    Unicode-aware and would take ``ſelect`` for ``select``)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isascii() and c.isalpha() else _rx_escape(c) for c in word)


def _alternation(words) -> str:
    words = sorted({w.lower() for w in words}, key=lambda w: (-len(w), w))
    return "(?:" + "|".join(_nocase(w) for w in words) + ")"


@dataclass(frozen=True)
class _Term:
    name: str
    regex: str  # without the leading whitespace
    word: bool  # starts with a word character (needs whitespace after a word)
    ends_word: bool
    lark: str = ""  # a full Lark terminal body instead of /regex/ (for & and ~)


@dataclass(frozen=True)
class _Names:
    """The names a grammar allows, from a schema (``None``: syntax only)."""

    db_id: str
    tables: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def strict(self) -> bool:
        return self.db_id is not None


def grammar_names(schema: Schema | None) -> _Names:
    if schema is None:
        return _Names(None, (), ())  # type: ignore[arg-type]
    tables = tuple(sorted({t.name for t in schema.user_tables}))
    columns = tuple(sorted({c.name for t in schema.user_tables for c in t.columns} | set(EXTRA_COLUMNS)))
    if not tables:
        raise UserError(f"database {schema.db_id!r} has no tables: there is nothing to constrain SQL to")
    return _Names(schema.db_id, tables, columns)


def _bare(names) -> list[str]:
    return [n for n in names if _BARE_NAME_RE.fullmatch(n) and n.upper() not in RESERVED_NAMES]


def _quoted_rx(names, styles: str = '"`[') -> str | None:
    """``"name"``, ```name``` or ``[name]`` (the ``styles`` given) for each name, case-insensitive."""
    forms = []
    if '"' in styles:
        forms.append('"' + _alternation([n.replace('"', '""') for n in names]) + '"')
    if "`" in styles:
        forms.append("`" + _alternation([n.replace("`", "``") for n in names]) + "`")
    if "[" in styles and (br := [n for n in names if "]" not in n]):
        forms.append(r"\[" + _alternation(br) + r"\]")
    return "(?:" + "|".join(forms) + ")" if names and forms else None


def _special_terminals(names: _Names) -> dict[str, _Term]:
    ident_body = f"/[{_ID_START}][{_ID_CHAR}]*/"
    t = {
        "NUMBER": _Term("NUMBER", r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+\-]?[0-9]+)?|0[xX][0-9A-Fa-f]+", True, True),
        "STRING": _Term("STRING", r"'(?:[^']|'')*'", False, False),
        "DQSTRING": _Term("DQSTRING", r'"(?:[^"\n]|"")*"', False, False),
        "BLOB": _Term("BLOB", r"[xX]'(?:[0-9A-Fa-f]{2})*'", True, False),
        # an alias/qualifier/CTE name: any identifier that is not a keyword
        "IDENT": _Term("IDENT", "", True, True, lark=f"{ident_body} & ~/{_alternation(SQLITE_KEYWORDS)}/"),
        # a table or column name without a schema: any identifier SQLite takes bare
        "ANYNAME": _Term("ANYNAME", "", True, True, lark=f"{ident_body} & ~/{_alternation(RESERVED_NAMES)}/"),
        "QIDENT": _Term("QIDENT", r'"(?:[^"\n]|"")+"|`(?:[^`\n]|``)+`|\[[^\]\n]+\]', False, False),
        "FUNC": _Term("FUNC", _alternation(FUNCTIONS), True, True),
        "TYPE_WORD": _Term("TYPE_WORD", _alternation(TYPE_WORDS), True, True),
        "COLLATION": _Term("COLLATION", _alternation(COLLATIONS), True, True),
    }
    if names.strict:
        for prefix, group in (("TABLE", names.tables), ("COLUMN", names.columns)):
            bare = _bare(group)
            if bare:
                t[prefix + "_BARE"] = _Term(prefix + "_BARE", _alternation(bare), True, True)
            if q := _quoted_rx(group):
                t[prefix + "_Q"] = _Term(prefix + "_Q", q, False, False)
            # backtick and bracket forms only: in a value position "x" is a DQSTRING anyway
            if q := _quoted_rx(group, "`["):
                t[prefix + "_BQ"] = _Term(prefix + "_BQ", q, False, False)
    return t


def _special_group(name: str, mode: str, names: _Names) -> tuple[str, ...]:
    """The terminals a (mode-dependent) special name stands for."""
    strict = names.strict
    if name == "QUALIFIER":
        return ("TABLE_BARE", "IDENT", "QIDENT") if strict else ("ANYNAME", "QIDENT")
    if name == "TABLE_NAME":
        return ("TABLE_BARE", "TABLE_Q") + (("ANYNAME", "QIDENT") if mode == "c" else ()) if strict else ("ANYNAME", "QIDENT")
    if name in ("COLUMN_NAME", "COLUMN_REF"):
        quoted = "COLUMN_Q" if name == "COLUMN_NAME" else "COLUMN_BQ"
        if not strict:
            return ("ANYNAME", "QIDENT")
        loose = mode in ("d", "c") or (mode == "a" and name == "COLUMN_REF")
        return ("COLUMN_BARE", quoted) + (("ANYNAME", "QIDENT") if loose else ())
    return (name,)


# -- grammar analysis and emission -------------------------------------------------------
_W, _P = "w", "p"  # the previous character is a word character / anything else (or start)


class _Builder:
    """Instantiates the base rules per name mode and per left context, and emits Lark."""

    def __init__(self, rules: dict[str, tuple], names: _Names, terms: dict[str, _Term]):
        self.rules = rules
        self.names = names
        self.terms = terms
        self.out_rules: dict[str, str] = {}
        self.out_terms: dict[str, str] = {}
        self._analyse()

    # --- analysis: nullable, starts with a word, may end with a word, depends on the mode ---
    def _analyse(self) -> None:
        self.nullable: dict[str, bool] = dict.fromkeys(self.rules, False)
        self.starts: dict[str, set] = {r: set() for r in self.rules}
        self.ends: dict[str, set] = {r: set() for r in self.rules}
        changed = True
        while changed:
            changed = False
            for r, alts in self.rules.items():
                n = any(self._seq_nullable(a) for a in alts)
                s = set().union(*(self._seq_starts(a) for a in alts))
                e = set().union(*(self._seq_ends(a) for a in alts))
                if n != self.nullable[r] or s != self.starts[r] or e != self.ends[r]:
                    self.nullable[r], self.starts[r], self.ends[r] = n, s, e
                    changed = True
        self.mode_dep: dict[str, bool] = dict.fromkeys(self.rules, False)
        changed = True
        while changed:
            changed = False
            for r, alts in self.rules.items():
                if not self.mode_dep[r] and any(self._item_mode_dep(i) for a in alts for i in a):
                    self.mode_dep[r] = changed = True

    def _item_mode_dep(self, it) -> bool:
        if isinstance(it, _Nt):
            return it.mode is not None or self.mode_dep[it.name]
        if isinstance(it, _Special):
            return it.name in ("TABLE_NAME", "COLUMN_NAME", "COLUMN_REF")
        if isinstance(it, _Group):
            return any(self._item_mode_dep(i) for a in it.alts for i in a)
        return False

    def _item_nullable(self, it) -> bool:
        if isinstance(it, _Nt):
            return self.nullable[it.name]
        if isinstance(it, _Group):
            return it.op in ("?", "*") or any(self._seq_nullable(a) for a in it.alts)
        return False

    def _seq_nullable(self, seq) -> bool:
        return all(self._item_nullable(i) for i in seq)

    def _term_classes(self, it) -> tuple[set, set]:
        if isinstance(it, _Word):
            return {_W}, {_W}
        if isinstance(it, _Punct):
            return ({_W} if _is_word_char(it.text[0]) else {_P}), ({_W} if _is_word_char(it.text[-1]) else {_P})
        starts, ends = set(), set()
        for m in _MODES:
            for tname in _special_group(it.name, m, self.names):
                term = self.terms.get(tname)
                if term is not None:
                    starts.add(_W if term.word else _P)
                    ends.add(_W if term.ends_word else _P)
        return starts, ends

    def _item_starts(self, it) -> set:
        if isinstance(it, _Nt):
            return self.starts[it.name]
        if isinstance(it, _Group):
            return set().union(*(self._seq_starts(a) for a in it.alts))
        return self._term_classes(it)[0]

    def _item_ends(self, it) -> set:
        if isinstance(it, _Nt):
            return self.ends[it.name]
        if isinstance(it, _Group):
            return set().union(*(self._seq_ends(a) for a in it.alts))
        return self._term_classes(it)[1]

    def _seq_starts(self, seq) -> set:
        out: set = set()
        for it in seq:
            out |= self._item_starts(it)
            if not self._item_nullable(it):
                break
        return out

    def _seq_ends(self, seq) -> set:
        out: set = set()
        for it in reversed(seq):
            out |= self._item_ends(it)
            if not self._item_nullable(it):
                break
        return out

    def _after(self, it, ctx: str) -> str:
        """The left context after ``it`` (conservative: a word if it may end with one)."""
        if _W in self._item_ends(it) or (self._item_nullable(it) and ctx == _W):
            return _W
        return _P

    def mixed_ends(self) -> list[str]:
        """Where an item that may end with a word or punctuation is followed by a word
        (the grammar then asks for whitespace even after punctuation): for review."""
        out = []

        def walk(where, seq):
            for i, it in enumerate(seq):
                if isinstance(it, _Group):
                    for a in it.alts:
                        walk(where, a)
                rest = seq[i + 1 :]
                if rest and {_W, _P} <= self._item_ends(it) and _W in self._seq_starts(rest):
                    out.append(f"{where}: {it} before {rest[0]}")

        for r, alts in self.rules.items():
            for a in alts:
                walk(r, a)
        return out

    # --- emission ---
    def rule(self, name: str, mode: str, ctx: str) -> str:
        key_mode = mode if self.mode_dep[name] else ""
        key_ctx = ctx if _W in self.starts[name] else ""
        lname = name + (f"_{key_mode}" if key_mode else "") + (f"_{key_ctx}" if key_ctx else "")
        if lname not in self.out_rules:
            self.out_rules[lname] = ""  # reserve (recursion)
            self.out_rules[lname] = self._alts(self.rules[name], mode, ctx)
        return lname

    def _alts(self, alts, mode: str, ctx: str) -> str:
        parts = [self._seq(a, mode, ctx) for a in alts]
        return " | ".join(p or '""' for p in parts)

    def _seq(self, seq, mode: str, ctx: str) -> str:
        out: list[str] = []
        cur = ctx
        for i, it in enumerate(seq):
            rest = seq[i + 1 :]
            if (
                isinstance(it, _Group)
                and it.op in ("?", "*")
                and rest
                and _W in self._seq_starts(rest)
                and self._after(it, cur) != cur
            ):
                # the rest's context depends on whether the group is there: spell out both
                body = self._repeat(it, mode, cur, "+" if it.op == "*" else "")
                after = _W if _W in self._item_ends(it) else _P
                with_it = f"{body} {self._seq(rest, mode, after)}".strip()
                without = self._seq(rest, mode, cur) or '""'
                out.append(f"({with_it} | {without})")
                return " ".join(out)
            out.append(self._item(it, mode, cur))
            cur = self._after(it, cur)
        return " ".join(x for x in out if x)

    def _repeat(self, g: _Group, mode: str, ctx: str, op: str) -> str:
        """``g`` once (op "") or repeated (op "+"), first in context ``ctx``."""
        first = f"({self._alts(g.alts, mode, ctx)})"
        if op != "+":
            return first
        after = _W if _W in self._item_ends(g) else _P
        if after == ctx or _W not in self._item_starts(g):
            return f"({self._alts(g.alts, mode, ctx)})+"
        return f"{first} ({self._alts(g.alts, mode, after)})*"

    def _item(self, it, mode: str, ctx: str) -> str:
        if isinstance(it, _Nt):
            m = mode if it.mode is None else max(mode, it.mode, key=_MODES.index)
            return self.rule(it.name, m, ctx)
        if isinstance(it, _Group):
            if not it.op:
                return f"({self._alts(it.alts, mode, ctx)})"
            if it.op == "?":
                return f"({self._alts(it.alts, mode, ctx)})?"
            body = self._repeat(it, mode, ctx, "+")
            return body if it.op == "+" else f"({body})?"
        if isinstance(it, _Word):
            return self._terminal("KW_" + it.word, _alternation([it.word]), True, ctx)
        if isinstance(it, _Punct):
            return self._terminal("P_" + _punct_name(it.text), _rx_escape(it.text), _is_word_char(it.text[0]), ctx)
        group = [self.terms[n] for n in _special_group(it.name, mode, self.names) if n in self.terms]
        if not group:
            raise UserError(f"database {self.names.db_id!r}: no names for {it.name}")
        parts = [self._terminal(t.name, t.regex, t.word, ctx, t.lark) for t in group]
        return parts[0] if len(parts) == 1 else "(" + " | ".join(parts) + ")"

    def _terminal(self, name: str, regex: str, word: bool, ctx: str, lark: str = "") -> str:
        lead = f"{_WS}{{1,{WS_MAX}}}" if word and ctx == _W else f"{_WS}{{0,{WS_MAX}}}"
        tname = name + ("_W" if word and ctx == _W else "")
        if tname not in self.out_terms:
            if lark:
                core = name + "_CORE"
                self.out_terms[core] = lark
                self.out_terms[tname] = f"/{lead}/ {core}"
            else:
                self.out_terms[tname] = f"/{lead}(?:{regex})/"
        return tname


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


_PUNCT_NAMES = {
    "(": "LPAR", ")": "RPAR", ",": "COMMA", ".": "DOT", "*": "STAR", "=": "EQ", "!": "BANG", "<": "LT",
    ">": "GT", "+": "PLUS", "-": "MINUS", "/": "SLASH", "%": "PCT", "|": "BAR", "&": "AMP", "~": "TILDE",
    ";": "SEMI",
}  # fmt: skip


def _punct_name(text: str) -> str:
    return "_".join(_PUNCT_NAMES.get(c, f"X{ord(c):X}") for c in text)


_NAME_TERMS = ("TABLE_BARE", "TABLE_Q", "COLUMN_BARE", "COLUMN_Q", "COLUMN_BQ")


_DERIVED_SELECT = 'result_column@a ("," result_column@a)* derived_from'


@functools.lru_cache(maxsize=256)
def _grammar_cached(names: _Names, answer: str, strict_select: bool = False) -> str:
    terms = _special_terminals(names)
    text = _skeleton(names.strict, frozenset(terms), answer, strict_select)
    for name in _NAME_TERMS:  # the database's names into the shared skeleton
        if name in terms:
            text = text.replace(f"@{name}@", terms[name].regex)
    head = f"// SQLite SELECT grammar for {names.db_id!r}" if names.strict else "// SQLite SELECT grammar (syntax only)"
    return text.replace("\n", f"\n{head}\n", 1)


@functools.lru_cache(maxsize=16)
def _parsed_base(strict_select: bool = False) -> dict[str, tuple]:
    base = _BASE.replace(_DERIVED_SELECT, _DERIVED_SELECT.replace("@a", "")) if strict_select else _BASE
    return _parse_base(base)


@functools.lru_cache(maxsize=64)
def _skeleton(strict: bool, present: frozenset, answer: str, strict_select: bool = False) -> str:
    """The grammar with ``@TABLE_BARE@``-style placeholders for the database's names: the
    rules depend only on which kinds of names exist, so databases share it."""
    names = _Names("db" if strict else None, (), ())  # type: ignore[arg-type]
    terms = {n: t for n, t in _special_terminals(_Names(None, (), ())).items()}  # type: ignore[arg-type]
    for n in present & set(_NAME_TERMS):
        word = n.endswith("_BARE")
        terms[n] = _Term(n, f"@{n}@", word, word)
    b = _Builder(_parsed_base(strict_select), names, terms)
    top = b.rule("query", "s", _P)
    ws0, ws1 = f"{_WS}{{0,{WS_MAX}}}", f"{_WS}{{1,{WS_MAX}}}"
    fence_end = f"/{ws0}(?:;{ws0})?```/"
    lines = ["%llguidance {}", "// generated by sqlwright.prompts.grammar; format: llguidance Lark"]
    if answer == "sql":
        # the SQL alone (the cookbook formats' answer), then the end of the sequence
        lines += [f"start: {top} sql_end?", f"sql_end: /{ws0};{ws0}/ | /{ws1}/"]
    elif answer == "fenced":  # one ```sql block
        lines += [f"start: FENCE_OPEN {top} FENCE_END", f"FENCE_OPEN: /{ws0}```{_alternation(['sql', 'sqlite'])}?[ \\t]*\\n/"]
        lines += [f"FENCE_END: {fence_end}"]
    else:  # free text (reasoning) up to the first ```sql line, then the SQL and the closing fence
        lines += [f"start: think {top} FENCE_END", f"think[lazy]: /(?s:.*)```{_alternation(['sql', 'sqlite'])}[ \\t]*\\n/"]
        lines += [f"FENCE_END: {fence_end}"]
    lines += [f"{name}: {body}" for name, body in b.out_rules.items()]
    lines += [f"{name}: {body}" for name, body in b.out_terms.items()]
    return "\n".join(lines) + "\n"


def sql_grammar(schema: Schema | None, dialect: str = "sqlite", answer: str = "sql", strict_select: bool = False) -> str:
    """The Lark grammar (llguidance dialect) of SQLite queries on ``schema``'s names.

    ``schema=None``: syntax only (any identifier as a table or column). ``answer``: the shape
    of the whole model answer: ``"sql"`` (the SQL alone, the cookbook formats' answer; the
    default), ``"fenced"`` (one ```sql block), ``"reasoning"`` (any text up to a ```sql line,
    then the SQL and the closing fence: constrain only the final SQL block).

    ``strict_select``: keep the select list to schema names even in a query that selects
    from a subquery (``SELECT avg(n) FROM (SELECT count(*) AS n ...)`` is then rejected).
    By default such a select list may name any bare identifier (the subquery's outputs come
    after it, which a CFG cannot look ahead to), so while generating, a bare select-list name
    is only held to the schema once the FROM clause turns out to have no subquery.

    Cached per database (db_id and names), dialect, answer shape and ``strict_select``.
    """
    if dialect.lower() not in DIALECTS:
        raise UserError(f"constrained decoding supports the dialects {', '.join(DIALECTS)}, not {dialect!r}")
    if answer not in ANSWER_FORMATS:
        raise UserError(f"unknown answer format {answer!r}: use one of {', '.join(ANSWER_FORMATS)}")
    return _grammar_cached(grammar_names(schema), answer, strict_select)
