#!/usr/bin/env bash
# README command 1: install, index the shipped sample corpus, search it, run one
# replay in dry-run mode, then one real replay with the embedded local model
# (SmolLM2-135M through llama.cpp: no gateway or model server needed), show its
# evidence row and check its tape with `lakevec verify`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh local
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
show_row() {
  tail -n 1 data/_kb/replay_runs.jsonl | .venv/bin/python -c \
    'import json,sys; r=json.loads(sys.stdin.read()); print(json.dumps({k: r.get(k) for k in ("schema","recorded_run_id","task_hash","retrieved_artifacts","model_used","escalation_path","validation_result","duration_ms","lakevec")}, indent=2))'
}
echo "== last evidence row (data/_kb/replay_runs.jsonl)"
show_row
echo
echo "== lakevec replay --api local --task \"$task\""
echo "   (SmolLM2-135M-Instruct in this process via llama.cpp; no gateway)"
lv replay --api local --task "$task"
echo
echo "== its evidence row: lakevec.tape names the tape of its model call (data/_kb/tapes/)"
show_row
run_id=$(tail -n 1 data/_kb/replay_runs.jsonl | .venv/bin/python -c \
  'import json,sys; print(json.loads(sys.stdin.read())["recorded_run_id"])')
echo
echo "== lakevec verify $run_id   (replays the run from its tape, offline)"
lv verify "$run_id"
