"""The web UIs lgrpo-bench serves (``lgrpo-bench ui``: MLflow's; ``lgrpo-bench sweep dashboard``: optuna-dashboard).

* :mod:`.views` — the ``mlflow ui`` command (:func:`~lgrpo_bench.ui.views.start_ui`), its base URL and the routes
  of the pages worth printing (a grid's saved view, an experiment's runs table).
* :mod:`.serve` — a server run under a supervisor of ours so that stopping us stops it and every process it started
  (``python -m lgrpo_bench.ui.serve``), held in the foreground by the CLI.

Above ``dispatch/`` and ``reports/`` in the layers: nothing below imports it. What the UI reads is in the store
(:mod:`lgrpo_bench.tracking`, including the saved grid views the orchestrator writes); the process utilities it rests
on are :mod:`lgrpo_bench.procs`.
"""
