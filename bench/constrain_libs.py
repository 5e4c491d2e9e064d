"""Constrained decoding: llguidance vs xgrammar on one per-database SQL grammar.

    python bench/constrain_libs.py --spider ../shared/data/spider --db baseball_1 --tokenizer smollm2-135m

Builds ``sqlwright.prompts.grammar.sql_grammar`` for one Spider database (the schema from its
SQLite file, or ``tables.json`` when the file is absent), in llguidance's Lark and, by a
mechanical translation of the same grammar, in xgrammar's EBNF (GBNF-style: every terminal
regex becomes character-level rules; the two "identifier that is not a keyword" terminals,
which Lark writes with llguidance's ``&``/``~``, become a trie of rules). Then, with the
model's tokenizer (``smollm2-135m``: SmolLM2-135M-Instruct, vocabulary 49,152):

* compile time of the grammar for the tokenizer (cold; xgrammar without its cache, both with
  default and dynamic compilation), and the one-time tokenizer set-up;
* the per-token mask time, teacher-forced on the database's gold queries (Spider train +
  dev): before each gold token the next-token bitmask is computed, then the token consumed;
  mean, median, p95, p99 and max over all tokens, in microseconds; the second figure is the
  same walk again with the grammar's warm caches;
* agreement: how many gold queries each library accepts (the translations should agree).

xgrammar walks only the first ``--xgrammar-queries`` queries (default 3): on this grammar its
masks take up to seconds per token, so the whole set would take half an hour.

Prints a markdown table and JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

from sqlwright.prompts import grammar as G

# -- Lark (as sql_grammar writes it) -> xgrammar EBNF ------------------------------------


def _ebnf_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _class_char(c: str) -> str:
    if c in "]\\-^":
        return "\\" + c
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(c, c)


def _regex_to_ebnf(rx: str) -> str:
    """A regex of the subset sql_grammar writes, as an xgrammar EBNF expression."""
    try:
        import re._constants as C  # type: ignore[import-not-found]
        import re._parser as sre  # type: ignore[import-not-found]
    except ImportError:  # Python 3.10
        import sre_constants as C
        import sre_parse as sre
    ANY, BRANCH, IN, LITERAL, MAX_REPEAT, MAXREPEAT = C.ANY, C.BRANCH, C.IN, C.LITERAL, C.MAX_REPEAT, C.MAXREPEAT
    NEGATE, NOT_LITERAL, RANGE, SUBPATTERN = C.NEGATE, C.NOT_LITERAL, C.RANGE, C.SUBPATTERN

    def seq(items) -> str:
        parts, lit = [], []
        for op, av in items:
            if op is LITERAL:
                lit.append(chr(av))
                continue
            if lit:
                parts.append(_ebnf_str("".join(lit)))
                lit = []
            if op is NOT_LITERAL:
                parts.append(f"[^{_class_char(chr(av))}]")
            elif op is ANY:
                parts.append("[^\\n]")
            elif op is IN:
                neg = "^" if av and av[0][0] is NEGATE else ""
                body = ""
                for iop, iav in av:
                    if iop is LITERAL:
                        body += _class_char(chr(iav))
                    elif iop is RANGE:
                        body += f"{_class_char(chr(iav[0]))}-{_class_char(chr(iav[1]))}"
                    elif iop is not NEGATE:
                        raise ValueError(f"class item {iop}")
                parts.append(f"[{neg}{body}]")
            elif op is MAX_REPEAT:
                lo, hi, sub = av
                inner = f"({seq(sub)})"
                if (lo, hi) == (0, MAXREPEAT):
                    parts.append(inner + "*")
                elif (lo, hi) == (1, MAXREPEAT):
                    parts.append(inner + "+")
                elif (lo, hi) == (0, 1):
                    parts.append(inner + "?")
                else:
                    parts.append(inner + "{" + f"{lo}," + ("" if hi == MAXREPEAT else str(hi)) + "}")
            elif op is SUBPATTERN:
                parts.append(f"({seq(av[3])})")
            elif op is BRANCH:
                parts.append("(" + " | ".join(seq(b) or '""' for b in av[1]) + ")")
            else:
                raise ValueError(f"regex op {op}")
        if lit:
            parts.append(_ebnf_str("".join(lit)))
        return " ".join(parts)

    return seq(sre.parse(rx)) or '""'


def _not_keyword_rules(name: str, words, start: str, chars: str) -> list[str]:
    """EBNF rules ``name`` for identifiers (first char in ``start``, then ``chars``) that are
    not one of ``words`` (ASCII case-insensitive), as a trie: what llguidance writes as
    ``/ident/ & ~/(kw1|kw2...)/``."""
    words = sorted({w.lower() for w in words})
    trie: dict[str, set] = {"": set()}
    for w in words:
        for i in range(1, len(w) + 1):
            trie.setdefault(w[:i], set())
            trie[w[: i - 1]].add(w[i - 1])
    ids = {p: f"{name}_{i}" for i, p in enumerate(sorted(trie))}
    free = f"{name}_free"
    rules = [f"{free} ::= [{chars}]*", f"{name} ::= {ids['']}"]

    def cls(cs: str, exclude: set) -> str:
        # cs: a class body of single chars and ranges like A-Za-z0-9_$ -> explicit set minus exclude
        allowed = set()
        for a, b in re.findall(r"(.)-(.)", cs):
            allowed |= {chr(c) for c in range(ord(a), ord(b) + 1)}
        allowed |= set(re.sub(r".-.", "", cs))
        ex = {c for e in exclude for c in (e.lower(), e.upper())}
        left = sorted(allowed - ex)
        return "[" + "".join(_class_char(c) for c in left) + "]" if left else ""

    for p, children in trie.items():
        alts = []
        if p and p not in words:
            alts.append('""')
        for c in sorted(children):
            alts.append(f"[{c.lower()}{c.upper()}] {ids[p + c]}" if c.isalpha() else f"{_ebnf_str(c)} {ids[p + c]}")
        other = cls(start if not p else chars, children)
        if other:
            alts.append(f"{other} {free}")
        rules.append(f"{ids[p]} ::= " + " | ".join(alts))
    return rules


def lark_to_ebnf(lark: str) -> str:
    """The xgrammar EBNF of a grammar written by ``sql_grammar`` (answer format ``sql``)."""
    out: list[str] = []
    for line in lark.splitlines():
        if not line or line.startswith(("//", "%")):
            continue
        name, body = line.split(": ", 1)
        if name in ("IDENT_CORE", "ANYNAME_CORE"):
            words = G.SQLITE_KEYWORDS if name == "IDENT_CORE" else G.RESERVED_NAMES
            out += _not_keyword_rules(name.lower(), words, "A-Za-z_", "A-Za-z0-9_$")
            continue
        body = _convert_body(body)
        out.append(f"{'root' if name == 'start' else name.lower()} ::= {body}")
    return "\n".join(out) + "\n"


def _convert_body(body: str) -> str:
    """Inline ``/regex/`` -> EBNF; everything else (names, | ( ) ? * + "") is the same."""
    res, i = [], 0
    while i < len(body):
        if body[i] == "/":
            j = i + 1
            while body[j] != "/":
                j += 2 if body[j] == "\\" else 1
            res.append("(" + _regex_to_ebnf(body[i + 1 : j].replace("\\/", "/")) + ")")
            i = j + 1
        elif body[i] == '"':
            j = body.index('"', i + 1)
            res.append(body[i : j + 1])
            i = j + 1
        else:
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|.").match(body, i)
            res.append(m.group().lower())
            i = m.end()
    return "".join(res)


# -- measurement ---------------------------------------------------------------------------


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    q = lambda f: xs[min(len(xs) - 1, int(f * len(xs)))]  # noqa: E731
    return {"mean_us": 1e6 * statistics.fmean(xs), "p50_us": 1e6 * q(0.5), "p95_us": 1e6 * q(0.95),
            "p99_us": 1e6 * q(0.99), "max_us": 1e6 * xs[-1], "tokens": len(xs)}  # fmt: skip


def bench_llguidance(tok, lark: str, queries: list[list[int]]) -> dict:
    import llguidance
    import llguidance.hf
    import llguidance.torch
    import torch

    t0 = time.perf_counter()
    llt = llguidance.hf.from_tokenizer(tok)
    setup = time.perf_counter() - t0
    compiles = []
    for _ in range(3):
        t0 = time.perf_counter()
        m = llguidance.LLMatcher(llt, lark, log_level=0)
        compiles.append(time.perf_counter() - t0)
    assert not m.is_error(), m.get_error()
    mask = torch.empty((1, (llt.vocab_size + 31) // 32), dtype=torch.int32)
    res = {"tokenizer_setup_s": setup, "compile_s": compiles[0], "compile_again_s": min(compiles[1:])}
    for label in ("cold", "warm"):
        times, accepted = [], 0
        for ids in queries:
            mm = m.deep_copy()
            ok = True
            for t in ids:
                t0 = time.perf_counter()
                llguidance.torch.fill_next_token_bitmask(mm, mask)
                times.append(time.perf_counter() - t0)
                if not mm.consume_token(t):
                    ok = False
                    break
            accepted += ok and mm.consume_token(llt.eos_token)
        res[label] = _stats(times)
        res["accepted"] = accepted
    return res


def bench_xgrammar(tok, ebnf: str, queries: list[list[int]], vocab: int) -> dict:
    import xgrammar as xgr

    t0 = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab, stop_token_ids=[tok.eos_token_id])
    setup = time.perf_counter() - t0
    res: dict = {"tokenizer_setup_s": setup}
    for dyn in (False, True):
        comp = xgr.GrammarCompiler(info, cache_enabled=False, enable_dynamic_compilation=dyn)
        t0 = time.perf_counter()
        compiled = comp.compile_grammar(ebnf)
        res["compile_dynamic_s" if dyn else "compile_s"] = time.perf_counter() - t0
    compiled = xgr.GrammarCompiler(info, cache_enabled=False).compile_grammar(ebnf)
    mask = xgr.allocate_token_bitmask(1, vocab)
    for label in ("cold", "warm") if len(queries) <= 3 else ("cold",):
        times, accepted = [], 0
        for ids in queries:
            m = xgr.GrammarMatcher(compiled)
            ok = True
            for t in ids:
                t0 = time.perf_counter()
                m.fill_next_token_bitmask(mask)
                times.append(time.perf_counter() - t0)
                if not m.accept_token(t):
                    ok = False
                    break
            accepted += ok and m.accept_token(tok.eos_token_id)
        res[label] = _stats(times)
        res["accepted"] = accepted
    return res


def load_schema(spider: Path, db: str):
    from sqlwright.db.introspect import introspect_sqlite, schema_from_spider_entry

    path = spider / "database" / db / f"{db}.sqlite"
    if path.is_file():
        return introspect_sqlite(path, db)
    entry = next(e for e in json.loads((spider / "tables.json").read_text()) if e["db_id"] == db)
    return schema_from_spider_entry(entry)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spider", default="../shared/data/spider")
    ap.add_argument("--db", default="baseball_1")
    ap.add_argument("--tokenizer", default="smollm2-135m", help="a model alias, directory or hub id")
    ap.add_argument("--limit", type=int, default=0, help="gold queries to walk (0: all)")
    ap.add_argument("--xgrammar-queries", type=int, default=3,
                    help="gold queries xgrammar walks (its masks take seconds per token on this grammar)")
    args = ap.parse_args(argv)
    from sqlwright.infer.hf import load_tokenizer
    from sqlwright.infer.models import resolve_model

    spider = Path(args.spider)
    tok = load_tokenizer(resolve_model(args.tokenizer), args.tokenizer)
    schema = load_schema(spider, args.db)
    golds = [x["query"] for f in ("train_spider.json", "dev.json") for x in json.loads((spider / f).read_text()) if x["db_id"] == args.db]
    golds = golds[: args.limit or None]
    t0 = time.perf_counter()
    lark = G._grammar_cached.__wrapped__(G.grammar_names(schema), "sql")
    build = time.perf_counter() - t0
    ebnf = lark_to_ebnf(lark)
    queries = [tok.encode(q, add_special_tokens=False) for q in golds]
    vocab = len(tok)
    out = {
        "db": args.db, "tables": len(schema.tables), "columns": sum(len(t.columns) for t in schema.tables),
        "queries": len(golds), "tokens": sum(map(len, queries)), "vocab": vocab,
        "grammar_build_s": build, "lark_chars": len(lark), "ebnf_chars": len(ebnf),
        "lark_lines": lark.count("\n"), "ebnf_rules": ebnf.count("\n"),
    }  # fmt: skip
    from importlib.metadata import version

    out["llguidance"] = {"version": version("llguidance"), **bench_llguidance(tok, lark, queries)}
    xq = queries[: args.xgrammar_queries]
    out["xgrammar"] = {"version": version("xgrammar"), "queries": len(xq), **bench_xgrammar(tok, ebnf, xq, vocab)}
    lg, xg = out["llguidance"], out["xgrammar"]
    print(f"{args.db}: {out['tables']} tables, {out['columns']} columns; {out['queries']} gold queries, {out['tokens']} tokens; vocab {vocab}")
    print(f"grammar text: Lark {out['lark_chars']:,} chars ({out['lark_lines']} lines), EBNF {out['ebnf_chars']:,} chars ({out['ebnf_rules']} rules); built in {build * 1000:.0f} ms\n")
    print("| | llguidance | xgrammar |\n|---|---|---|")
    print(f"| tokenizer set-up (once per tokenizer) | {lg['tokenizer_setup_s']:.2f} s | {xg['tokenizer_setup_s']:.2f} s |")
    print(f"| grammar compile (per database) | {lg['compile_s'] * 1000:.0f} ms (again: {lg['compile_again_s'] * 1000:.0f} ms) | "
          f"{xg['compile_s'] * 1000:.0f} ms (dynamic: {xg['compile_dynamic_s'] * 1000:.0f} ms) |")  # fmt: skip
    for label in ("cold", "warm"):
        a, b = lg[label], xg.get(label, xg["cold"])
        print(f"| mask per token, {label}: mean / p50 / p99 / max (µs) | {a['mean_us']:.0f} / {a['p50_us']:.0f} / {a['p99_us']:.0f} / {a['max_us']:.0f} | "
              f"{b['mean_us']:.0f} / {b['p50_us']:.0f} / {b['p99_us']:.0f} / {b['max_us']:.0f} |")  # fmt: skip
    print(f"| gold queries accepted | {lg['accepted']}/{len(golds)} | {xg['accepted']}/{len(xq)} (of the first {len(xq)}) |")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
