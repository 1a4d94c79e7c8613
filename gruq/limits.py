"""Every bound gruq puts on what a user may ask, in one place.

Why bounds at all: a population of 10^9, a thousand worker processes or a
sequence of 10^5 steps are accepted by the arithmetic but never finish (or
exhaust memory) on the machines gruq runs on. Each limit is generous, far above
what the built-in tasks and the published protocol need (population 40,
30 generations, at most 128 x 6 per sequence for har), and a value beyond one is
refused up front with a one-line `GruqError` naming the limit. README.md
("Limits") lists them; the command line, the app and the Python API all check
through this module, so they can never disagree.
"""

from __future__ import annotations

import operator

from gruq.errors import GruqError

# Seeds: numpy, torch and random all accept 0 .. 2^32-1 (numpy's legacy
# np.random.seed refuses more), so every command takes exactly this range.
SEED_MAX = 2**32 - 1

# Search.
MAX_POP = 10_000  # genomes per generation (the paper: 40)
MAX_GENS = 10_000  # generations (the paper: 30)
MAX_BUDGET = 1_000_000  # distinct genomes scored (--budget; the paper: about 1,200)
MAX_WORKERS = 64  # scoring processes; each one holds the task and a torch runtime (~0.3 GB)
MAX_CHUNK = 4096  # genomes per scoring call
MAX_EPOCHS = 10_000  # training or fine-tuning epochs

# A user's task (.npz): checked from the array headers, before any data is read.
MAX_SEQUENCES = 1_000_000  # N
MAX_STEPS = 4096  # T: training memory grows with batch x T x hidden (T = 10^5 took 3.4 GB)
MAX_FEATURES = 4096  # F
MAX_VALUES = 50_000_000  # N x T x F, about 200 MB as float32
# Training cost: GRU cell steps per epoch over the whole file (N x T). har, the
# largest built-in task, has 10,411 x 128 = 1.3 M; one epoch of its 5,952
# training sequences took about 21 s on the first round's machine (hidden 64, 2 cores).
MAX_CELL_STEPS = 8_000_000


def check_int(value: object, name: str, low: int, high: int) -> int:
    """`value` as a plain int in [low, high], or a GruqError naming `name` and the range."""
    if isinstance(value, bool):
        raise GruqError(f"{name} must be a whole number from {low:,} to {high:,}; got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise GruqError(f"{name} must be a whole number from {low:,} to {high:,}; got {value!r}") from None
    if not low <= number <= high:
        shown = f"{number:,}" if abs(number) < 10**30 else f"a {len(str(abs(number)))}-digit number"
        raise GruqError(f"{name} must be from {low:,} to {high:,}; got {shown}")
    return int(number)


def check_seed(value: object, name: str = "seed") -> int:
    """A seed every command accepts: a whole number from 0 to 2^32-1."""
    return check_int(value, name, 0, SEED_MAX)


def check_task_shape(n: int, steps: int, features: int, where: str) -> None:
    """Refuse a user task too large to train or score in reasonable time and memory."""
    problems = []
    if n > MAX_SEQUENCES:
        problems.append(f"{n:,} sequences (limit {MAX_SEQUENCES:,})")
    if steps > MAX_STEPS:
        problems.append(f"{steps:,} steps per sequence (limit {MAX_STEPS:,})")
    if features > MAX_FEATURES:
        problems.append(f"{features:,} features (limit {MAX_FEATURES:,})")
    if not problems and n * steps * features > MAX_VALUES:
        problems.append(f"{n * steps * features:,} values N x T x F (limit {MAX_VALUES:,})")
    if not problems and n * steps > MAX_CELL_STEPS:
        problems.append(
            f"{n * steps:,} GRU steps per pass over the data N x T (limit {MAX_CELL_STEPS:,}: "
            "training would take too long)"
        )
    if problems:
        raise GruqError(f"{where}: X of shape ({n}, {steps}, {features}) is too large for gruq: {'; '.join(problems)}")
