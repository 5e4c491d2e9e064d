#!/usr/bin/env bash
# Execution-guided inference on the quickstart's 100 embedded Spider dev questions (issue 14):
# EX and failed-to-run for greedy, --constrain schema, --n 8 --select vote-valid, --refine 2 and
# a combination, for one model (default: zero-shot SmolLM2-135M; pass a fine-tuned folder).
#   bash bench/guided_table.sh [MODEL] [OUT] [QUESTIONS] [RUNS]
# RUNS: a space-separated subset of: greedy constrain-schema refine-2 vote-valid-8 constrain+refine-2
set -euo pipefail
MODEL=${1:-smollm2-135m}
OUT=${2:-bench/out/guided}
Q=${3:-100}
RUNS=${4:-greedy constrain-schema refine-2 vote-valid-8 constrain+refine-2}
MINI=src/sqlwright/quickstart/spider_mini
mkdir -p "$OUT"
[ -f "$OUT/data/prompt.json" ] || sqlwright data build spider "$MINI" --split dev --serializer compact -o "$OUT/data" --overwrite --no-progress
run() {  # name, predict flags...
  local name=$1; shift
  case " $RUNS " in *" $name "*) ;; *) return 0 ;; esac
  local t0=$(date +%s.%N)
  sqlwright predict -m "$MODEL" --data "$OUT/data" --limit "$Q" --max-new-tokens 128 --batch-size 16 -o "$OUT/$name.jsonl" --no-progress "$@" > "$OUT/$name.predict.txt"
  local t1=$(date +%s.%N)
  sqlwright eval "$OUT/$name.jsonl" --benchmark "$MINI" --only-predicted -o "$OUT/$name-eval" --no-progress > /dev/null
  python - "$OUT" "$name" "$(echo "$t1 - $t0" | bc)" <<'PY'
import json, sys
out, name, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = json.load(open(f"{out}/{name}-eval/summary.json"))
recs = [json.loads(x) for x in open(f"{out}/{name}-eval/examples.jsonl")]
failed = sum(r["verdict"] in ("error", "timeout", "too_many_rows") for r in recs)
tok = sum(json.loads(x).get("completion_tokens", 0) for x in open(f"{out}/{name}.jsonl"))
print(f"| {name} | {s['ex']} | {s['correct']}/{s['scored']} | {failed} | {tok} | {secs:.0f} |")
PY
}
echo "| run | EX % | correct | failed to run | completion tokens | predict seconds |"
echo "|---|---|---|---|---|---|"
run greedy
run constrain-schema --constrain schema
run refine-2 --refine 2
run vote-valid-8 --n 8 --temperature 0.7 --select vote-valid
run constrain+refine-2 --constrain schema --refine 2
run constrain+vote-valid-8 --constrain schema --n 8 --temperature 0.7 --select vote-valid
