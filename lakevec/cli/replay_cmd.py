"""``lakevec replay``: retrieve, prompt, validate, maybe escalate, and log the run."""

from __future__ import annotations

from pathlib import Path

import click

from lakevec import settings
from lakevec.cli.common import (
    INDEX_OPTION,
    JACCARD_CORPUS_OPTION,
    MODEL_OPTION,
    RETRIEVER_HELP,
    SERVER_OPTION,
    api_option,
    domain_errors,
    emit_json,
    escalation_model_option,
    evidence_option,
    gateway_option,
    given_on_command_line,
    local_gguf_option,
    local_model_error,
    local_model_option,
    max_tokens_option,
    root_from,
    threads_option,
    timeout_option,
)

#: Options that name local resources; with --server the service's own apply.
LOCAL_OPTIONS = ("index", "corpus_path", "model", "gateway_url", "api", "local_model",
                 "escalation_model", "evidence_path", "local_gguf", "threads")


@click.command("replay")
@click.option("--task", required=True, help="The task text to replay.")
@click.option("--local-only", is_flag=True, help="Never escalate; just record the gate's verdict.")
@click.option("--allow-escalation", is_flag=True,
              help="When the gate fails, retry once with the escalation model.")
@click.option("--no-retrieval", is_flag=True,
              help="Baseline run without a context bundle (no index or corpus needed).")
@click.option("--dry-run", is_flag=True,
              help="Use the deterministic synthetic response instead of calling a model.")
@click.option("--retriever", "retriever_kind", type=click.Choice(settings.RETRIEVERS),
              default=settings.DEFAULT_RETRIEVER, show_default=True, help=RETRIEVER_HELP)
@INDEX_OPTION
@JACCARD_CORPUS_OPTION
@MODEL_OPTION
@gateway_option("Chat gateway base URL (checked before anything runs unless --dry-run).")
@api_option("lakehouse: POST /v1/chat with a provider; openai: POST /v1/chat/completions "
            f"(bearer key from ${settings.API_KEY_ENV} if set); local: a GGUF model run in "
            f"this process by llama.cpp, no gateway ({settings.LOCAL_EXTRA_HINT}).")
@local_gguf_option()
@threads_option()
@local_model_option("Model tried first (with --api local: the --local-gguf model's name, "
                    "which is the default).")
@escalation_model_option("Model tried when the gate fails and --allow-escalation is set.")
@timeout_option("Seconds one model call may take in all (connect, send, wait, and a body "
                "however slowly it arrives); then it is recorded as timed out.")
@max_tokens_option()
@click.option("--temperature", type=click.FloatRange(0.0, settings.MAX_TEMPERATURE),
              default=settings.TEMPERATURE, show_default=True,
              help="Sampling temperature sent with every model call.")
@evidence_option("Evidence log to append to.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the full ReplayResult (untruncated response) as one JSON object.")
@SERVER_OPTION
@click.pass_context
@domain_errors
def replay_cmd(
    ctx: click.Context,
    task: str,
    local_only: bool,
    allow_escalation: bool,
    no_retrieval: bool,
    dry_run: bool,
    retriever_kind: str,
    index: Path | None,
    corpus_path: Path | None,
    model: str | None,
    gateway_url: str,
    api: str,
    local_gguf: str | None,
    threads: int | None,
    local_model: str | None,
    escalation_model: str,
    timeout: float,
    max_tokens: int | None,
    temperature: float,
    evidence_path: Path | None,
    as_json: bool,
    server: str | None,
) -> None:
    """Replay TASK: retrieve, prompt the local model, validate, maybe escalate, log.

    Every model call is recorded on a tape beside the evidence log
    (data/_kb/tapes/); `lakevec verify` re-checks the run offline.

    With --api local no gateway is needed: the model (SmolLM2-135M by
    default) is loaded in this process before the run starts.

    Exit 0 when the run was recorded (even if validation failed), 1 on
    infrastructure failure (index, corpus, evidence log), 2 on usage errors
    (a malformed --gateway URL included: nothing runs and nothing is logged).
    """
    if server:
        from lakevec.service.client import ServiceClient, check_served, reject_local_options

        check_served(retriever_kind)
        reject_local_options(ctx, LOCAL_OPTIONS)
    elif not dry_run and api != settings.LOCAL_API:
        from lakevec.replay.gateway import check_gateway_url

        # First: a malformed URL must not cost an index load or an evidence row.
        gateway_url = check_gateway_url(gateway_url)
    from lakevec.replay.engine import ReplayRequest, format_report

    request = ReplayRequest(task=task, local_only=local_only, allow_escalation=allow_escalation,
                            no_retrieval=no_retrieval, dry_run=dry_run,
                            max_tokens=max_tokens or settings.default_max_tokens(api),
                            temperature=temperature)
    if server:
        with ServiceClient(server) as client:
            # Two model calls at most, each bounded by the service's own timeout.
            result = client.replay(request, retriever=retriever_kind, timeout=2 * timeout + 30)
    else:
        from lakevec.errors import LocalModelError
        from lakevec.replay.runner import run_replay

        if api == settings.LOCAL_API and not given_on_command_line(ctx, "local_model"):
            local_model = None  # the GGUF's name; $LH_REPLAY_LOCAL_MODEL names a gateway model
        try:
            result = run_replay(
                request, root=root_from(ctx), retriever_kind=retriever_kind, index_dir=index,
                corpus_path=corpus_path, model=model, gateway_url=gateway_url, api=api,
                timeout=timeout, local_model=local_model, escalation_model=escalation_model,
                evidence_path=evidence_path, local_gguf=local_gguf, threads=threads,
            )
        except LocalModelError as exc:
            raise local_model_error(exc) from exc
    if as_json:
        emit_json(result.model_dump(mode="json"))
    else:
        click.echo(format_report(result))
