"""A run from resolved config to finished record: resolving (run id, folder) and the lifecycle.

* :mod:`.resolve` — :func:`prepare_run`: the config resolved, its run id computed and its ``config.yaml`` written,
  once; :func:`read_resolved` for the run's own processes.
* :mod:`.lifecycle` — :func:`execute_run`: train, then evaluate in a fresh process, then mark done.
* ``python -m lgrpo_bench.runs <run folder>`` — the worker process every executor starts.
"""
