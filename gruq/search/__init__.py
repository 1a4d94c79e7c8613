"""NSGA-II search for per-operator bit widths.

- `config`: what a user asks for (`SearchConfig`), checked before anything runs.
- `constraints`: the config resolved against a model shape; feasibility.
- `nsga2`: the DEAP toolbox, population, variation and selection.
- `scoring`: score new genomes in chunks through the toolbox's `map`.
- `dask_map`: that `map` on a Dask cluster (`--scheduler tcp://HOST:PORT` or `local:N`).
- `hypervolume`: exact 2-D hypervolume, normalised to [0, 1].
- `checkpoint`: the JSON state a resumed run continues from.
- `run`: one run, start to finish, recorded in the store; resumable.
- `launch`: start, cancel and resume runs as detached processes (for the app).
- `runner`: the app's warm process that forks queued runs at once.
- `backend`: which evaluator scores genomes.

Importing this package is cheap; DEAP is imported by the modules that need it.
"""
