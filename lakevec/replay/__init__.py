"""The replay pipeline: task → retrieve → context bundle → chat gateway → gate → escalate → log.

Modules: :mod:`~lakevec.replay.jsstr` (JavaScript string semantics),
:mod:`~lakevec.replay.bundle`, :mod:`~lakevec.replay.prompt`,
:mod:`~lakevec.replay.gate`, :mod:`~lakevec.replay.gateway`,
:mod:`~lakevec.replay.evidence` (the ``replay_run.v1`` row),
:mod:`~lakevec.replay.engine` (one run) and :mod:`~lakevec.replay.runner`
(opens the retriever and gateway the options name). Import from the submodules.
"""
