"""Leadstream's benchmark harness (issue 7): ``python -m benchmarks`` or ``make bench``.

One run measures, against the real local broker (Apache Kafka; Tansu only as the fallback) and
the Events API sandbox:

1. the raw loop: confluent-kafka consume + fastavro decode of the input records;
2. two Faust baselines as subprocesses: a no-op agent and a naive agent;
3. Leadstream end to end at saturation (``python -m streams worker`` on a pre-loaded backlog);
4. latency, status change produced -> request received by the sandbox, at a fixed rate;
5. state memory per lead in the lead-context table;
6. Events API requests per 1,000 events at saturation;
7. two workers on 4 partitions against one (:mod:`benchmarks.scale`);
8. Leadstream's own CPU per lead with no Faust and no Kafka (:mod:`benchmarks.own_work`), and the
   e2e ratio's ceiling it sets: the no-op agent's CPU per record over it;

and prints a table of medians with the ratios of 3 to each baseline, written to
``bench-results/bench.json`` with the machine's facts. Modules:

* :mod:`benchmarks.common` -- progress lines, unique names, small helpers;
* :mod:`benchmarks.data` -- input records, Avro pre-encoding and fast backlog producing;
* :mod:`benchmarks.raw_loop` -- measurement 1;
* :mod:`benchmarks.faust_baseline` -- measurement 2 (the standalone Faust app and its runner);
* :mod:`benchmarks.e2e` -- measurements 3, 4 and 6;
* :mod:`benchmarks.state_memory` -- measurement 5;
* :mod:`benchmarks.profile` -- optional py-spy profile of the worker during a saturation run;
* :mod:`benchmarks.own_work` -- measurement 8, in a subprocess (``make bench-own`` runs it alone);
* :mod:`benchmarks.report` -- medians, ratios, targets, the table and the JSON;
* :mod:`benchmarks.runner` -- the command line and the order of the runs.
"""
