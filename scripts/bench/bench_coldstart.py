"""Cold start: wall time of fresh ``lakevec search`` / ``lakevec replay --dry-run`` processes.

Runs each command as a new process against the 53k index built by
bench_index.py (``.bench/index-53k``), with hyperfine when it is installed
(``apt-get install -y hyperfine``), else a plain subprocess loop; reports the
median, and hyperfine's mean user/system CPU time (useful on a shared
machine, where wall time includes waiting for a core).

Compared: the ONNX query path (default), the sentence-transformers fallback
(``LAKEVEC_NO_ONNX=1``, imports torch), and the Python + import floor
(``lakevec --help``). Replay writes its evidence under .bench/replay-root/.

    python scripts/bench/bench_coldstart.py [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from _common import bench_dir, machine, median, save_result

QUERY = "rotate the TLS certificate without downtime"


def commands(index: str, root: str) -> dict[str, tuple[str, dict[str, str]]]:
    exe = shutil.which("lakevec") or f"{sys.executable} -m lakevec.cli"
    q = shlex.quote(QUERY)
    return {
        "lakevec --help (import floor)": (f"{exe} --help", {}),
        "lakevec search (ONNX query model)": (f"{exe} search {q} --index {index}", {}),
        "lakevec replay --dry-run (ONNX)": (
            f"{exe} --root {root} replay --task {q} --dry-run --index {index}", {}
        ),
        "lakevec search (sentence-transformers fallback)": (
            f"{exe} search {q} --index {index}", {"LAKEVEC_NO_ONNX": "1"}
        ),
    }


def run_hyperfine(cmd: str, env: dict[str, str], runs: int) -> dict[str, float]:
    out = bench_dir() / "hyperfine.json"
    subprocess.run(
        ["hyperfine", "--warmup", "1", "--runs", str(runs), "--export-json", str(out),
         "--style", "none", cmd],
        check=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
    )
    r = json.loads(out.read_text())["results"][0]
    return {
        "median_s": round(r["median"], 3),
        "min_s": round(r["min"], 3),
        "max_s": round(r["max"], 3),
        "user_s": round(r["user"], 3),
        "system_s": round(r["system"], 3),
        "runs": len(r["times"]),
    }


def run_loop(cmd: str, env: dict[str, str], runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs + 1):  # the first run warms the page cache
        t = time.perf_counter()
        subprocess.run(cmd, shell=True, check=True, env={**os.environ, **env},
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return {"median_s": round(median(times[1:]), 3), "min_s": round(min(times[1:]), 3),
            "max_s": round(max(times[1:]), 3), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--fallback-runs", type=int, default=5)
    ap.add_argument("--index", default=str(bench_dir() / "index-53k"))
    args = ap.parse_args()
    root = bench_dir() / "replay-root"
    root.mkdir(exist_ok=True)
    runner = run_hyperfine if shutil.which("hyperfine") else run_loop
    result: dict[str, object] = {
        "machine": machine(),
        "tool": runner.__name__.removeprefix("run_"),
        "index": args.index,
        "query": QUERY,
    }
    for name, (cmd, env) in commands(args.index, str(root)).items():
        runs = args.fallback_runs if env else args.runs
        result[name] = {"command": cmd, **env, **runner(cmd, env, runs)}
        print(f"{name}: {result[name]}", file=sys.stderr)
    out = save_result("bench_coldstart", result)
    print(json.dumps(result, indent=2))
    print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
