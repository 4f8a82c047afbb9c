"""``lakevec report``: what the evidence log says, for every runtime.

:mod:`~lakevec.report.rows` reads ``replay_run.v1`` rows written by lakevec,
the TypeScript seed and the Go port (bad lines are counted, never fatal);
:mod:`~lakevec.report.aggregate` turns them into one JSON-ready aggregate
(runs per day, gate pass and escalation rates with Wilson intervals, splits,
A/B experiments, failure reasons); :mod:`~lakevec.report.drilldown` packs
each run for the HTML page's lazy drill-down and defines the tape and
verification seams; :mod:`~lakevec.report.html` (with
:mod:`~lakevec.report.charts` and the inline ``assets/``) and
:mod:`~lakevec.report.terminal` render the aggregate, formatted by
:mod:`~lakevec.report.fmt`; :mod:`~lakevec.report.build` ties them together.
:mod:`~lakevec.report.synthetic` writes logs in every runtime's shape for
tests and benchmarks.
"""
