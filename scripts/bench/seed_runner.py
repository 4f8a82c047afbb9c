"""A runnable copy of the TypeScript seed's replay, made at run time outside the repo.

The seed (``../shared/seeds/000_df03aae9e5c02cb2.txt``) is a commit view of
``scripts/distillation/replay.ts``. It imports ``canonicalSha256`` from a file
that is not shipped, and its CLI has no ``--dry-run`` flag (``dry_run`` is an
option of its ``replay()`` function). This module writes, into a temporary
directory and never into the repository:

* ``replay.ts``: the seed's TypeScript, copied from the seed file when this runs,
  with that one import pointed at a stand-in;
* ``canonical.ts``: the stand-in, ``sha256`` (hex) of the string;
* ``run.ts``: a driver that calls the seed's ``replay({task, dry_run: true}, root)``
  and prints the same summary lines as the seed's own ``cli()``.

Runtimes, whichever are found: ``bun`` (runs TypeScript directly), and
``node`` on a JavaScript bundle made once by ``esbuild`` (no transpiling in the
timed run). Install them outside the repo, e.g.::

    mkdir -p /tmp/seedrt && cd /tmp/seedrt && npm init -y && npm install bun esbuild

and pass ``--seed-tools /tmp/seedrt/node_modules/.bin`` to the benchmark.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SEED_FILE = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "000_df03aae9e5c02cb2.txt"
# First line of the TypeScript inside the commit view, and the import to replace.
TS_START = "// replay.ts"
MISSING_IMPORT = 'from "../../auditor/schemas/distillation/types";'

STAND_IN = """import { createHash } from "node:crypto";
// Stand-in for the seed's unshipped canonicalSha256: sha256 (hex) of the string.
export async function canonicalSha256(value: unknown): Promise<string> {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return createHash("sha256").update(text).digest("hex");
}
"""

DRIVER = """import { replay } from "./replay";
// The seed's cli() without a --dry-run flag: call replay() with dry_run instead.
const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
};
const task = arg("--task");
const root = arg("--root");
if (!task || !root) { console.error("usage: run --root DIR --task TEXT"); process.exit(2); }
const r = await replay({ task, dry_run: true }, root);
console.log(`[replay] run_id=${r.recorded_run_id}`);
const b = r.context_bundle;
console.log(`[replay] retrieval: ${b ? b.retrieved_playbooks.length + " playbooks" : "DISABLED"}`);
console.log(`[replay] escalation_path: ${r.escalation_path.join(" → ")}`);
console.log(`[replay] model_used: ${r.model_used} · ${r.duration_ms}ms`);
console.log(`[replay] validation: ${r.validation_result.passed ? "PASS" : "FAIL"}`);
console.log("");
console.log("─── response ───");
console.log(r.model_response.slice(0, 1500));
"""


@dataclass(frozen=True)
class SeedRunner:
    """Commands that run the seed's dry-run replay; ``name -> argv prefix``."""

    workdir: Path
    commands: dict[str, list[str]]

    def argv(self, name: str, root: Path, task: str) -> list[str]:
        return [*self.commands[name], "--root", str(root), "--task", task]


def seed_typescript(seed_file: Path = SEED_FILE) -> str:
    """The seed's replay.ts, with its one unshipped import pointed at the stand-in."""
    text = seed_file.read_text(encoding="utf-8")
    start = text.find(TS_START)
    if start < 0 or MISSING_IMPORT not in text:
        raise SystemExit(f"{seed_file} does not look like the replay.ts seed")
    return text[start:].replace(MISSING_IMPORT, 'from "./canonical";')


def _tool(tools: Path | None, name: str) -> str | None:
    if tools is not None and (tools / name).exists():
        return str(tools / name)
    return shutil.which(name)


def make_seed_runner(tools: Path | None = None, seed_file: Path = SEED_FILE) -> SeedRunner:
    """Write the runnable seed into a fresh temporary directory; the commands found."""
    work = Path(tempfile.mkdtemp(prefix="lakevec-seed-"))
    (work / "replay.ts").write_text(seed_typescript(seed_file), encoding="utf-8")
    (work / "canonical.ts").write_text(STAND_IN, encoding="utf-8")
    (work / "run.ts").write_text(DRIVER, encoding="utf-8")
    (work / "package.json").write_text('{"type": "module"}\n', encoding="utf-8")
    commands: dict[str, list[str]] = {}
    if bun := _tool(tools, "bun"):
        commands["seed (bun, TypeScript)"] = [bun, str(work / "run.ts")]
    esbuild, node = _tool(tools, "esbuild"), shutil.which("node")
    if esbuild and node:
        subprocess.run(
            [esbuild, str(work / "run.ts"), "--bundle", "--platform=node", "--format=esm",
             f"--outfile={work / 'run.mjs'}", "--log-level=warning"],
            check=True,
        )
        commands["seed (node, esbuild bundle)"] = [node, str(work / "run.mjs")]
    if not commands:
        raise SystemExit("no seed runtime: install bun and/or esbuild (see --seed-tools)")
    return SeedRunner(work, commands)
