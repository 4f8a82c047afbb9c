"""Cold start, paired with the TypeScript seed: fresh processes, interleaved rounds.

Each round runs every command once as a new process (order rotated per
round), so lakevec and the seed see the same machine state; the table gives
medians over rounds and the median of the per-round ratios lakevec / seed.
Commands:

* ``lakevec --version`` and ``lakevec --help`` (the import floor), and two
  floors below lakevec: ``python -c pass`` and ``python -c 'import numpy'``;
* ``lakevec replay --dry-run`` (default retriever, hybrid: query model + HNSW +
  BM25), the same with ``LAKEVEC_NO_NUMPY_QUERY=1`` (query model on ONNX
  Runtime instead of the numpy pack) and ``--retriever jaccard`` (the seed's
  retrieval) on each corpus;
* the seed's dry run on the same corpus and task (``seed_runner.py`` makes a
  runnable copy from ../shared/seeds at run time, outside the repo): bun, and
  node on an esbuild bundle — with the environment's ``NODE_EXTRA_CA_CERTS``
  (as the issue measured it) and without it (node then starts ~0.8 s faster
  here: loading the CA bundle dominates its start).

Corpora (``--corpora``): ``60`` — the repo's sample (exports/rag/playbooks.jsonl)
with an index built by ``lakevec build-index`` (real model); ``53k`` —
../shared/data/scale/corpus-53k.jsonl converted to playbook records under
``.bench/root-53k`` (see standin_index.py for its index). The query model is
the real model's export (numpy pack, or ONNX) in both. lakevec's own modules are
byte-compiled first, as ``scripts/setup.sh`` does (an editable install is not).

    python scripts/bench/bench_coldstart.py --rounds 7 --seed-tools /tmp/seedrt/node_modules/.bin
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    REPO,
    bench_dir,
    cpu_line,
    lakevec_cmd,
    load_average,
    median,
    playbook_root,
    save_result,
)
from seed_runner import make_seed_runner

TASK = "rotate the TLS certificate without downtime"


def lakevec_exe() -> list[str]:
    exe = shutil.which("lakevec", path=str(Path(sys.executable).parent))
    return [exe] if exe else lakevec_cmd()


def root_60() -> tuple[Path, Path]:
    """The sample corpus under .bench/cold-60 and its index (built once, real model)."""
    root = bench_dir() / "cold-60"
    corpus = root / "exports" / "rag" / "playbooks.jsonl"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "exports" / "rag" / "playbooks.jsonl", corpus)
    index = root / "index"
    subprocess.run([*lakevec_exe(), "--root", str(root), "build-index", "-q"], check=True,
                   stdout=subprocess.DEVNULL)
    return root, index


def commands(args: argparse.Namespace) -> dict[str, tuple[list[str], dict[str, str | None]]]:
    exe = lakevec_exe()
    cmds: dict[str, tuple[list[str], dict[str, str | None]]] = {
        "lakevec --version": ([*exe, "--version"], {}),
        "lakevec --help": ([*exe, "--help"], {}),
        # Floors: the interpreter alone, and numpy (any dense or BM25 query needs it).
        "floor: python -c pass": ([sys.executable, "-c", "pass"], {}),
        "floor: python -c 'import numpy'": ([sys.executable, "-c", "import numpy"], {}),
    }
    seed = make_seed_runner(args.seed_tools)
    print(f"seed copy in {seed.workdir}", file=sys.stderr)
    for corpus in args.corpora.split(","):
        if corpus == "60":
            root, index = root_60()
        else:
            root = playbook_root(bench_dir() / "root-53k")
            index = args.index_53k or root / "index"
            if not (index / "CURRENT").exists():
                sys.exit(f"no index at {index}: run standin_index.py or bench_index.py first")
        replay = [*exe, "--root", str(root), "replay", "--dry-run", "--task", TASK,
                  "--index", str(index)]
        cmds[f"{corpus}: lakevec replay --dry-run (hybrid)"] = (replay, {})
        if corpus in args.onnx.split(","):
            cmds[f"{corpus}: lakevec replay --dry-run (hybrid, ONNX Runtime query model)"] = (
                replay, {"LAKEVEC_NO_NUMPY_QUERY": "1"})
        if corpus in args.jaccard.split(","):
            cmds[f"{corpus}: lakevec replay --dry-run --retriever jaccard"] = (
                [*replay, "--retriever", "jaccard"], {})
        for name in seed.commands:
            argv = seed.argv(name, root, TASK)
            if "node" in name and os.environ.get("NODE_EXTRA_CA_CERTS"):
                cmds[f"{corpus}: {name}, NODE_EXTRA_CA_CERTS set"] = (argv, {})
            cmds[f"{corpus}: {name}"] = (argv, {"NODE_EXTRA_CA_CERTS": None})
    return cmds


def query_backend() -> str:
    """The backend a fresh process embeds queries with (an unreadable pack means ONNX)."""
    code = ("from lakevec.embed.loader import load_query_embedder\n"
            "print(load_query_embedder(None).backend)")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def run_once(argv: list[str], env_changes: dict[str, str | None]) -> float:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed: {proc.stderr.decode()[-500:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--corpora", default="60,53k")
    ap.add_argument("--index-53k", type=Path, default=None)
    ap.add_argument("--jaccard", default="60",
                    help="corpora to also time --retriever jaccard on (53k: ~10x the seed's time)")
    ap.add_argument("--onnx", default="60,53k",
                    help="corpora to also time with LAKEVEC_NO_NUMPY_QUERY=1 (the query model "
                    "on ONNX Runtime instead of the numpy pack)")
    ap.add_argument("--seed-tools", type=Path, default=None,
                    help="directory holding bun and esbuild (e.g. node_modules/.bin)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "lakevec")], check=True,
                   stdout=subprocess.DEVNULL)
    cmds = commands(args)
    for argv, env in cmds.values():  # warm-up: page cache, ONNX export, bytecode
        run_once(argv, env)
    # Recorded, since an unusable pack silently falls back to ONNX (the rows would
    # then time the same backend twice).
    backend = query_backend()
    print(f"default query backend: {backend}", file=sys.stderr)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    loads = []
    names = list(cmds)
    for rnd in range(args.rounds):
        loads.append(load_average())
        shift = rnd % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(run_once(*cmds[name]))
        print(f"round {rnd + 1}: load {loads[-1]} "
              + json.dumps({k: round(v[-1], 3) for k, v in times.items()}), file=sys.stderr)

    rows: dict[str, dict[str, object]] = {}
    for name, ts in times.items():
        rows[name] = {"median_s": round(median(ts), 3), "min_s": round(min(ts), 3),
                      "max_s": round(max(ts), 3)}
    smallest = args.corpora.split(",")[0]
    for name in times:
        corpus, _, what = name.partition(": ")
        if corpus == "floor":  # compared with the seed on the first (smallest) corpus
            corpus = smallest
        elif not what.startswith("lakevec"):
            continue
        for seed_name in times:
            if seed_name.startswith(f"{corpus}: seed"):
                ratios = [a / b for a, b in zip(times[name], times[seed_name], strict=True)]
                ratio_key = f"ratio_vs[{seed_name.partition(': ')[2]}]"
                rows[name][ratio_key] = round(median(ratios), 3)
    result = {"machine": cpu_line(), "rounds": args.rounds, "task": TASK,
              "query_backend": backend,
              "load_average_per_round": loads, "commands": {k: " ".join(v[0]) for k, v in
                                                            cmds.items()}, "results": rows}
    out = save_result("bench_coldstart", result)
    print(json.dumps(result["results"], indent=2))
    print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
