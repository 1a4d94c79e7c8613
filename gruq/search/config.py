"""What a user asks of a search, checked before anything runs.

`SearchConfig` is stored with the run as JSON, so a resumed run (or the app)
sees exactly what was asked. Checks that need the model's shape (sizes) live
in `gruq.search.constraints`.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from gruq import limits
from gruq.errors import GruqError
from gruq.genome import MAX_BITS, MIN_BITS
from gruq.ops import parse_gene

OBJECTIVES = ("size", "bops")


@dataclass(frozen=True)
class SearchConfig:
    """One search. Sizes: give at most one of max_size_bytes, max_size_kb (1 kB = 1000
    bytes) and max_size_pct (percent of the all-8-bit model).

    Length: `gens` generations, or `budget` distinct scored genomes (the
    homogeneous ones and the sensitivity probes included), or both, in which
    case the run stops at whichever comes first. A budget run stops after
    exactly `budget` scorings: the last generation scores only the most
    promising offspring that fit. With a budget and gens None the run goes on
    until the budget is spent (or the search finds nothing new to score)."""

    task: str
    pop: int = 32
    gens: int | None = 15  # generations, the first included (as in DEAP's nsga2 example); None: no limit
    budget: int | None = None  # distinct genomes scored, at most; the run stops when it is reached
    seed: int = 0
    objective: str = "size"
    max_size_bytes: float | None = None
    max_size_kb: float | None = None
    max_size_pct: float | None = None
    min_accuracy: float | None = None
    # by operator: `lin_xr` means every layer's, `l1.lin_xr` one layer's (it wins over the unprefixed one)
    bits_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    pins: dict[str, int] = field(default_factory=dict)
    finetune_epochs: int = 0  # per candidate, inside the evaluator
    front_finetune_epochs: int = 0  # once, on the final front
    finetune_samples: int | None = None  # training sequences per fine-tuning epoch (None: the whole split)
    workers: int = 1
    scheduler: str | None = None  # a Dask scheduler, tcp://HOST:PORT or local:N; results never depend on it
    chunk_size: int = 16  # genomes per scoring call; fixed, so results never depend on workers
    cxpb: float = 0.9
    checkpoint: str | None = None  # the float model (an imported one, say); None: the task's own

    def __post_init__(self) -> None:
        check(self)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bits_ranges"] = {op: list(r) for op, r in self.bits_ranges.items()}
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        """Build from JSON-like data (the app's form, a stored run); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GruqError(f"unknown search setting(s): {', '.join(unknown)}")
        if "task" not in data:
            raise GruqError("a search needs a task")
        d = dict(data)
        d["bits_ranges"] = {op: _pair(op, r) for op, r in (d.get("bits_ranges") or {}).items()}
        d["pins"] = dict(d.get("pins") or {})
        return cls(**d)

    @property
    def planned_generations(self) -> int:
        """The generation limit, or (budget only) how many generations the budget is expected to take."""
        if self.gens is not None:
            return self.gens
        assert self.budget is not None
        return max(1, math.ceil(self.budget / self.pop))

    def with_workers(self, workers: int) -> SearchConfig:
        return SearchConfig.from_dict({**self.to_dict(), "workers": workers})

    def with_compute(self, workers: int | None = None, scheduler: str | None = None) -> SearchConfig:
        """The same search computed elsewhere (a resume may change where, never what)."""
        changes: dict[str, Any] = {"workers": workers} if workers is not None else {}
        if scheduler is not None:
            changes["scheduler"] = scheduler or None  # "" goes back to this machine
        return SearchConfig.from_dict({**self.to_dict(), **changes})


def check(cfg: SearchConfig) -> None:
    """Refuse a config that cannot run, saying why (shape-independent checks)."""
    _require(isinstance(cfg.task, str) and cfg.task != "", "a search needs a task")
    _require(_is_int(cfg.pop) and cfg.pop >= 4, f"--pop must be an integer of at least 4; got {cfg.pop!r}")
    _require(
        cfg.gens is None or (_is_int(cfg.gens) and cfg.gens >= 1),
        f"--gens must be an integer of at least 1; got {cfg.gens!r}",
    )
    _require(
        cfg.budget is None or (_is_int(cfg.budget) and cfg.budget >= 1),
        f"--budget must be an integer of at least 1; got {cfg.budget!r}",
    )
    _require(cfg.gens is not None or cfg.budget is not None, "a search needs --gens, --budget or both")
    _require(_is_int(cfg.seed), f"--seed must be an integer from 0 to 2^32-1; got {cfg.seed!r}")
    _require(_is_int(cfg.workers) and cfg.workers >= 1, f"--workers must be at least 1; got {cfg.workers!r}")
    if cfg.scheduler is not None:
        from gruq.search.dask_map import parse

        parse(cfg.scheduler)
    _require(
        _is_int(cfg.chunk_size) and cfg.chunk_size >= 1, f"--chunk-size must be at least 1; got {cfg.chunk_size!r}"
    )
    _require(_is_int(cfg.finetune_epochs) and cfg.finetune_epochs >= 0, "--finetune-epochs must be 0 or more")
    _require(
        _is_int(cfg.front_finetune_epochs) and cfg.front_finetune_epochs >= 0,
        "--front-finetune-epochs must be 0 or more",
    )
    _require(
        cfg.finetune_samples is None or (_is_int(cfg.finetune_samples) and cfg.finetune_samples >= 1),
        f"--finetune-samples must be at least 1; got {cfg.finetune_samples!r}",
    )
    _check_limits(cfg)
    _require(cfg.objective in OBJECTIVES, f"--objective must be one of {', '.join(OBJECTIVES)}; got {cfg.objective!r}")
    _require(_is_number(cfg.cxpb) and 0 <= cfg.cxpb <= 1, f"cxpb must be from 0 to 1; got {cfg.cxpb!r}")
    _check_sizes(cfg)
    if cfg.min_accuracy is not None:
        _require(
            _is_number(cfg.min_accuracy) and 0 <= cfg.min_accuracy <= 1,
            f"--min-accuracy is a fraction from 0 to 1; got {cfg.min_accuracy!r}",
        )
    for op, (lo, hi) in cfg.bits_ranges.items():
        _check_range(op, lo, hi)
    for op, b in cfg.pins.items():
        _check_pin(op, b, cfg.bits_ranges.get(op) or cfg.bits_ranges.get(parse_gene(op)[1]))


def parse_range(text: str) -> tuple[str, tuple[int, int]]:
    """`--bits-range OP=LO-HI` -> (op, (lo, hi)); checked by `check`. OP may name one layer: l1.lin_hn."""
    m = re.fullmatch(r"\s*([\w.]+)\s*=\s*(-?\d+)\s*-\s*(-?\d+)\s*", text)
    if not m:
        raise GruqError(f"--bits-range takes OP=LO-HI, for example lin_hn=4-8; got {text!r}")
    return m[1], (int(m[2]), int(m[3]))


def parse_pin(text: str) -> tuple[str, int]:
    """`--pin OP=B` -> (op, b); checked by `check`. OP may name one layer: l1.add_h."""
    m = re.fullmatch(r"\s*([\w.]+)\s*=\s*(-?\d+)\s*", text)
    if not m:
        raise GruqError(f"--pin takes OP=B, for example add_h=8; got {text!r}")
    return m[1], int(m[2])


def collect(pairs: list[tuple[str, Any]], flag: str) -> dict[str, Any]:
    """Repeated flags -> a dict, refusing an operator given twice with different values."""
    out: dict[str, Any] = {}
    for op, value in pairs:
        if op in out and out[op] != value:
            raise GruqError(f"{flag} gives {op} twice ({_show(out[op])} and {_show(value)})")
        out[op] = value
    return out


def _check_limits(cfg: SearchConfig) -> None:
    """The generous bounds of gruq.limits, shared with every command and the app."""
    limits.check_seed(cfg.seed, "--seed")
    for name, value, low, high in (
        ("--pop", cfg.pop, 4, limits.MAX_POP),
        ("--gens", 1 if cfg.gens is None else cfg.gens, 1, limits.MAX_GENS),
        ("--budget", 1 if cfg.budget is None else cfg.budget, 1, limits.MAX_BUDGET),
        ("--workers", cfg.workers, 1, limits.MAX_WORKERS),
        ("--chunk-size", cfg.chunk_size, 1, limits.MAX_CHUNK),
        ("--finetune-epochs", cfg.finetune_epochs, 0, limits.MAX_EPOCHS),
        ("--front-finetune-epochs", cfg.front_finetune_epochs, 0, limits.MAX_EPOCHS),
    ):
        limits.check_int(value, name, low, high)


def _check_sizes(cfg: SearchConfig) -> None:
    given = [
        (n, v)
        for n, v in (
            ("--max-size-bytes", cfg.max_size_bytes),
            ("--max-size-kb", cfg.max_size_kb),
            ("--max-size-pct", cfg.max_size_pct),
        )
        if v is not None
    ]
    _require(len(given) <= 1, f"give one maximum size, not {' and '.join(n for n, _ in given)}")
    for name, value in given:
        _require(_is_number(value) and value > 0, f"{name} must be a positive number; got {value!r}")


def _check_range(op: str, lo: Any, hi: Any) -> None:
    parse_gene(op)
    text = f"--bits-range {op}={lo}-{hi}"
    _require(_is_int(lo) and _is_int(hi), f"{text}: widths must be integers")
    _require(lo <= hi, f"{text} is reversed: the low width must not exceed the high one")
    _require(MIN_BITS <= lo and hi <= MAX_BITS, f"{text} is outside the widths gruq supports, {MIN_BITS}-{MAX_BITS}")


def _check_pin(op: str, b: Any, allowed: tuple[int, int] | None) -> None:
    parse_gene(op)
    _require(_is_int(b), f"--pin {op}={b!r}: the width must be an integer")
    lo, hi = allowed or (MIN_BITS, MAX_BITS)
    where = f"its --bits-range {lo}-{hi}" if allowed else f"the widths gruq supports, {lo}-{hi}"
    _require(lo <= b <= hi, f"--pin {op}={b} is outside {where}")


def _pair(op: str, value: Any) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise GruqError(f"bits range of {op} must be [low, high]; got {value!r}")
    return (value[0], value[1])


def _show(value: Any) -> str:
    return f"{value[0]}-{value[1]}" if isinstance(value, tuple) else str(value)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise GruqError(message)
