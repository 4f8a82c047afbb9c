#!/usr/bin/env bash
# README command 1: install, index the shipped sample corpus, search it, and
# run one replay in dry-run mode (no model server needed); show the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 LH_DISTILL_ROOT="$PWD"
lv() { .venv/bin/lakevec "$@"; }

echo "== lakevec build-index (exports/rag/playbooks.jsonl → index/)"
lv build-index
echo
echo "== lakevec search \"stop sending traffic to a failing provider\""
lv search "stop sending traffic to a failing provider" -k 5
echo
task="Audit the gateway's provider circuit breaker and verify it trips after repeated failures"
echo "== lakevec replay --dry-run --task \"$task\""
lv replay --dry-run --task "$task"
echo
echo "== last evidence row (data/_kb/replay_runs.jsonl)"
tail -n 1 data/_kb/replay_runs.jsonl | .venv/bin/python -c \
  'import json,sys; r=json.loads(sys.stdin.read()); print(json.dumps({k: r[k] for k in ("schema","recorded_run_id","task_hash","retrieved_artifacts","model_used","escalation_path","validation_result","duration_ms")}, indent=2))'
