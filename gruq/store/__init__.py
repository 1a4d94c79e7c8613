"""The run store: runs, generations and scored genomes in one SQLite file.

The store is the only thing a background run and the app share. The run
writes through `RunStore`; the app and the command line read through the
functions of `gruq.store.reader`, re-exported here.
"""

from gruq.store.reader import (
    checkpoint_sha256,
    fronts,
    hypervolume_curve,
    individuals,
    list_runs,
    model_record,
    population,
    result,
    run_detail,
)
from gruq.store.writer import RunRow, RunStore, Scored, genome_text, parse_genome

__all__ = [
    "RunRow",
    "RunStore",
    "Scored",
    "checkpoint_sha256",
    "fronts",
    "genome_text",
    "hypervolume_curve",
    "individuals",
    "list_runs",
    "model_record",
    "parse_genome",
    "population",
    "result",
    "run_detail",
]
