"""How much real gold SQL the schema grammar accepts: every Spider train/dev and BIRD mini-dev gold.

    python bench/grammar_acceptance.py --data ../shared/data [--variant default,strict_select,syntax]

Each gold query is checked against its own database's grammar (``sql_grammar``), byte by byte
with llguidance (``sqlwright.infer.constrain.check_sql``), no model. Schemas: Spider from the
SQLite file (``tables.json`` where the file is missing), BIRD mini-dev from its
``dev_tables.json`` (the databases are not shipped). Variants: ``default``; ``strict_select``
(``sql_grammar(..., strict_select=True)``); ``syntax`` (``schema=None``, syntax only).

Prints, per variant and set, the acceptance rate, every rejected query with the byte where it
was stopped, and the time spent building + compiling grammars and checking queries; then JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sqlwright.infer.constrain import check_sql
from sqlwright.prompts.grammar import sql_grammar


def load(data: Path):
    """The gold sets and schema loader the acceptance test uses (tests/test_grammar.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_grammar import gold_sets

    return gold_sets(data / "spider", data / "bird-minidev")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--variant", default="default,strict_select,syntax")
    args = ap.parse_args(argv)
    sets, schema_of = load(Path(args.data))
    out: dict = {}
    for variant in args.variant.split(","):
        out[variant] = {}
        for name, items in sets.items():
            which = name.split("-")[0]
            grammars: dict[str, str] = {}
            t_build = t_check = 0.0
            rejects = []
            for db, sql in items:
                if db not in grammars:
                    t0 = time.perf_counter()
                    schema = None if variant == "syntax" else schema_of(which, db)
                    grammars[db] = sql_grammar(schema, strict_select=variant == "strict_select")
                    check_sql(grammars[db], "SELECT 1")  # compile
                    t_build += time.perf_counter() - t0
                t0 = time.perf_counter()
                reason = check_sql(grammars[db], sql)
                t_check += time.perf_counter() - t0
                if reason is not None:
                    rejects.append({"db": db, "sql": sql, "reason": reason})
            ok = len(items) - len(rejects)
            out[variant][name] = {"accepted": ok, "total": len(items), "rate": ok / len(items), "databases": len(grammars),
                                  "build_compile_s": t_build, "check_s": t_check, "rejects": rejects}  # fmt: skip
            print(f"{variant:14s} {name:13s} {ok}/{len(items)} = {100 * ok / len(items):.2f}%  "
                  f"({len(grammars)} grammars built+compiled in {t_build:.1f} s, queries checked in {t_check:.1f} s)")  # fmt: skip
            for r in rejects:
                print(f"    {r['db']}: {r['reason']}\n        {r['sql']}")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
