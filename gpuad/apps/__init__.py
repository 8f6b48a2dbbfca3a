"""Applications built on gpuad: ``python -m gpuad train`` and its tasks, and
``python -m gpuad demo``. They live apart from the library they use.

Layout::

    gpuad/apps/train.py     the ``train`` subcommand: its arguments, TASKS, dispatch
    gpuad/apps/digits.py    task ``digits``: an MLP on the bundled 8x8 digits
    gpuad/apps/addition.py  task ``addition``: a small causal transformer learns addition
    gpuad/apps/demo.py      the ``demo`` subcommand: fit a quadratic by gradient descent
    gpuad/apps/common.py    what several applications share (choosing the device)

The conventions:

* **Entry point.** Every application module exposes ``run(args) -> int``: it
  takes the parsed command-line arguments (an ``argparse.Namespace``; a flag
  left out or ``None`` means the application's default), prints its progress
  and returns the process exit status (0 on success, 2 for bad arguments).
  Nothing else is called ``run``.
* **Subcommands** (``train``, ``demo``) also expose ``add_arguments(parser)``;
  ``gpuad/__main__.py`` only wires them up (``parser.set_defaults(run=module.run)``),
  as it does for ``gpuad.bench``.
* **Tasks.** A ``train`` task is a module ``gpuad.apps.<task>`` with that
  ``run(args)``; :data:`gpuad.apps.train.TASKS` maps each ``--task`` name to
  its module, and ``python -m gpuad train --task NAME`` calls
  ``TASKS[NAME].run(args)``. A new task is a new module plus one entry there.
* **Results.** A function that returns results rather than an exit status (for
  tests, benchmarks and scripts) is named for what it does, e.g.
  :func:`gpuad.apps.addition.train_addition` ``(...) -> dict`` or
  :func:`gpuad.apps.addition.train_from_args` ``(args) -> dict``.
* **Public API only.** Applications use gpuad as any user would: ``import gpuad
  as ad`` and its public submodules (``gpuad.nn``, ``gpuad.optimizers``,
  ``gpuad.data``, ...), never ``gpuad``'s private modules or attributes (``_data``,
  ``gpuad.tensor``, ``gpuad.ops``, ...). The library does not import applications,
  except ``gpuad.bench``, whose ``digits`` and ``transformer`` workloads take their
  data from the tasks so they time what ``train`` runs.
"""
