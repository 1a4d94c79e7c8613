"""A search config resolved against a model's shape: bounds, limits, feasibility.

Bit ranges and pins bound each gene, so every genome the search builds
respects them by construction. The size limit is known before scoring (a
genome over it is never scored) and the accuracy floor after. Infeasible
genomes are ranked below every feasible one (see `gruq.search.nsga2`), and
the reported front holds feasible genomes only.
"""

from __future__ import annotations

from dataclasses import dataclass

from gruq.errors import GruqError, SettingError
from gruq.genome import MAX_BITS, MIN_BITS, Genome, ModelShape, bops, homogeneous, size_bytes
from gruq.ops import INDEX, LINEAR, N_OPS, layer_names, parse_gene
from gruq.search.config import SearchConfig

EPS = 1e-9  # sizes are multiples of 1/8 byte; compare limits with a hair of slack


@dataclass(frozen=True)
class Constraints:
    shape: ModelShape
    objective: str  # "size" or "bops": the cost NSGA-II minimises
    low: Genome  # per-gene lowest allowed width (pins: low == high)
    high: Genome
    max_size: float | None  # bytes
    min_accuracy: float | None

    @property
    def free_genes(self) -> int:
        return sum(lo < hi for lo, hi in zip(self.low, self.high))

    @property
    def ref_cost(self) -> float:
        """Cost of the all-8-bit genome: the hypervolume's reference point."""
        return self.cost(homogeneous(MAX_BITS, self.shape.layers))

    def cost(self, genome: Genome) -> float:
        return float(bops(genome, self.shape)) if self.objective == "bops" else size_bytes(genome, self.shape)

    def clip(self, genome: Genome) -> Genome:
        return tuple(min(hi, max(lo, b)) for b, lo, hi in zip(genome, self.low, self.high))

    def in_bounds(self, genome: Genome) -> bool:
        return all(lo <= b <= hi for b, lo, hi in zip(genome, self.low, self.high))

    def size_ok(self, genome: Genome) -> bool:
        return self.max_size is None or size_bytes(genome, self.shape) <= self.max_size + EPS

    def accuracy_ok(self, accuracy: float) -> bool:
        return self.min_accuracy is None or accuracy >= self.min_accuracy - EPS

    def feasible(self, genome: Genome, accuracy: float) -> bool:
        return self.in_bounds(genome) and self.size_ok(genome) and self.accuracy_ok(accuracy)

    def violation(self, genome: Genome, accuracy: float | None) -> float:
        """How far from feasible, 0 if feasible: size excess (as a fraction of all-8-bit)
        plus accuracy shortfall. `accuracy` is None for genomes not scored (over the size limit)."""
        v = 0.0
        if not self.size_ok(genome):
            assert self.max_size is not None
            v += (size_bytes(genome, self.shape) - self.max_size) / size_bytes(
                homogeneous(MAX_BITS, self.shape.layers), self.shape
            )
        if accuracy is not None and not self.accuracy_ok(accuracy):
            assert self.min_accuracy is not None
            v += self.min_accuracy - accuracy
        return v


def resolve(cfg: SearchConfig, shape: ModelShape) -> Constraints:
    """Constraints for `cfg` on a model of `shape`; refuse limits no genome can meet.

    A stacked model has 17 genes per layer: a range or pin of `lin_xr` applies to
    that operator in every layer, one of `l1.lin_xr` to layer 1 only, and wins
    over the unprefixed one (ranges first, then pins, which must lie inside the
    range of their gene)."""
    low, high = [MIN_BITS] * (N_OPS * shape.layers), [MAX_BITS] * (N_OPS * shape.layers)
    ranged: dict[int, tuple[str, int, int]] = {}
    for name, (lo, hi) in _general_first(cfg.bits_ranges):
        for i in _genes(name, shape, f"--bits-range {name}={lo}-{hi}"):
            low[i], high[i] = lo, hi
            ranged[i] = (name, lo, hi)
    for name, b in _general_first(cfg.pins):
        for i in _genes(name, shape, f"--pin {name}={b}"):
            if i in ranged and not ranged[i][1] <= b <= ranged[i][2]:
                r, lo, hi = ranged[i]
                raise GruqError(f"--pin {name}={b} is outside --bits-range {r}={lo}-{hi}")
            low[i] = high[i] = b
    cons = Constraints(shape, cfg.objective, tuple(low), tuple(high), _max_size(cfg, shape), cfg.min_accuracy)
    _check_reachable(cfg, cons)
    return cons


def _general_first(settings: dict) -> list[tuple[str, object]]:
    """Every-layer settings (`lin_xr`) before one-layer ones (`l1.lin_xr`), which then override them."""
    return sorted(settings.items(), key=lambda item: parse_gene(item[0])[0] is not None)


def _genes(name: str, shape: ModelShape, given: str) -> list[int]:
    """The genome positions a setting's operator name covers; a layer the model lacks is refused."""
    layer, op = parse_gene(name)
    if layer is None:
        return [k * N_OPS + INDEX[op] for k in range(shape.layers)]
    if layer >= shape.layers:
        allowed = ", ".join(f"l{k}.{op}" for k in range(shape.layers))
        raise GruqError(
            f"{given} names layer {layer}, but this model has {shape.layers} GRU layer"
            f"{'s' if shape.layers > 1 else ''}: allowed {allowed}, or {op} for every layer"
        )
    return [layer * N_OPS + INDEX[op]]


def _max_size(cfg: SearchConfig, shape: ModelShape) -> float | None:
    if cfg.max_size_bytes is not None:
        return float(cfg.max_size_bytes)
    if cfg.max_size_kb is not None:
        return cfg.max_size_kb * 1000.0
    if cfg.max_size_pct is not None:
        return cfg.max_size_pct / 100.0 * size_bytes(homogeneous(MAX_BITS, shape.layers), shape)
    return None


def _check_reachable(cfg: SearchConfig, cons: Constraints) -> None:
    if cons.free_genes == 0:
        raise SettingError(
            "every operator is pinned to one width (--pin, --bits-range): there is one scheme and nothing to "
            "search; score it with gruq evaluate --bits",
            "pins",
            genome=tuple(cons.low),
        )
    smallest = size_bytes(cons.low, cons.shape)
    if cons.max_size is not None and smallest > cons.max_size + EPS:
        setting, asked = _asked_size(cfg, cons.max_size)
        # only the weights' widths set the size: name the ranges and pins that raised them
        names = layer_names(cons.shape.layers)
        linear = [k + i for k in range(0, len(names), N_OPS) for i in LINEAR]
        narrowed = {names[i]: (cons.low[i], cons.high[i]) for i in linear if cons.low[i] > MIN_BITS}
        why = "every operator at its lowest allowed width"
        if narrowed:
            why += "; raised by " + ", ".join(
                f"{op} pinned at {lo}" if lo == hi else f"{op} at least {lo}" for op, (lo, hi) in narrowed.items()
            )
        raise SettingError(
            f"{asked} is below the smallest size any allowed genome reaches, {smallest:g} bytes ({why})",
            setting,
            max_size_bytes=cons.max_size,
            smallest_bytes=smallest,
            narrowed=narrowed,
        )


def _asked_size(cfg: SearchConfig, max_size: float) -> tuple[str, str]:
    """The size setting that was given, and how the command line names it."""
    if cfg.max_size_kb is not None:
        return "max_size_kb", f"--max-size-kb {cfg.max_size_kb:g} ({max_size:g} bytes)"
    if cfg.max_size_pct is not None:
        return "max_size_pct", f"--max-size-pct {cfg.max_size_pct:g} ({max_size:g} bytes)"
    return "max_size_bytes", f"--max-size-bytes {max_size:g}"
