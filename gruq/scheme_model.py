"""The model of a scheme: the one set of weights every number about a scheme belongs to.

A scheme (a genome) is not a model by itself: post-training quantization of
the float checkpoint, per-candidate fine-tuning inside the search, and the
final front's fine-tuning give different weights and different accuracies.
`SchemeModel` is the small recipe that names exactly one of them:

    task, base checkpoint (path + sha256), genome,
    fine-tuning: None | FineTuning(epochs, seed, samples, select, where)

`build()` turns it into a `Checkpoint`, deterministically (through
`gruq.evaluate.tuned`, the one fine-tuning entry point), and the sha256 of
the resulting weights can be recorded (the run store does) and is checked
whenever the model is rebuilt: a mismatch is a `GruqError`, never a silently
different model. Built models are cached in-process, and a store may hold
the weights themselves (`to_blob` / `from_blob`) so the app need not re-train.

Every consumer resolves a scheme's model here: `gruq evaluate` and `verify`
(from their flags), `export` (flags, or a run's front member), the app's
Explorer and download, `search --json`'s "check" commands and `reproduce`.
"""

from __future__ import annotations

import hashlib
import io
import shlex
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from gruq.errors import GruqError
from gruq.genome import Genome, layers_of, validate

WHERE = ("per-candidate", "front")
CACHE_MODELS = 32  # built fine-tuned models kept per process (a few hundred kB each)


@dataclass(frozen=True)
class FineTuning:
    """Quantization-aware fine-tuning of the float checkpoint for one genome.

    `seed` is the run's seed: the genome's own seed is `gruq.train.seed_for(genome, seed)`.
    `where` says only which stage of a run produced it (the weights do not depend on it).
    """

    epochs: int
    seed: int = 0
    samples: int | None = None  # training sequences per epoch (None: all)
    select: str | None = None  # "val": keep the epoch best on validation
    where: str = "per-candidate"

    def __post_init__(self) -> None:
        if self.where not in WHERE:
            raise GruqError(f"fine-tuning happens {' or '.join(WHERE)}, not {self.where!r}")
        if self.epochs < 1:
            raise GruqError("a fine-tuning recipe needs at least 1 epoch (no fine-tuning: finetuning=None)")

    @property
    def key(self) -> tuple:
        """What the weights depend on."""
        return (self.epochs, self.seed, self.samples, self.select)


@dataclass(frozen=True)
class SchemeModel:
    """The recipe of one scheme's model; see the module docstring."""

    task: str
    genome: Genome
    checkpoint: str | None = None  # None: the task's default, assets/<task>.pt
    checkpoint_sha256: str | None = None  # identity of the base checkpoint when recorded
    finetuning: FineTuning | None = None
    weights_sha256: str | None = field(default=None, compare=False)  # of the built weights, when recorded

    def __post_init__(self) -> None:
        genome = tuple(self.genome)
        object.__setattr__(self, "genome", validate(genome, max(1, len(genome) // 17)))  # 17 genes per layer

    # -- words and commands ----------------------------------------------------

    @property
    def label(self) -> str:
        """Which model a number belongs to, in words."""
        ft = self.finetuning
        if ft is None:
            return "post-training"
        epochs = f"{ft.epochs} epoch{'s' if ft.epochs != 1 else ''}"
        stage = " (final front)" if ft.where == "front" else ""
        return f"fine-tuned {epochs}{stage}"

    def options(self) -> list[str]:
        """The command-line flags that select this model (after --task/--bits)."""
        opts: list[str] = []
        if self.checkpoint:
            opts += ["--checkpoint", self.checkpoint]
        ft = self.finetuning
        if ft is not None:
            opts += ["--finetune-epochs", str(ft.epochs), "--seed", str(ft.seed)]
            if ft.samples is not None:
                opts += ["--finetune-samples", str(ft.samples)]
            if ft.select is not None:
                opts += ["--finetune-select", ft.select]
        return opts

    def command(self, split: str = "test", verb: str = "evaluate") -> str:
        """`python -m gruq evaluate ...`: the command that re-derives this model's accuracy on `split`."""
        argv = ["python", "-m", "gruq", verb, "--task", self.task, "--bits", ",".join(map(str, self.genome))]
        argv += ["--split", split, *self.options(), "--json"]
        return shlex.join(argv)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["genome"] = list(self.genome)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SchemeModel:
        ft = d.get("finetuning")
        return cls(
            task=d["task"],
            genome=tuple(d["genome"]),
            checkpoint=d.get("checkpoint"),
            checkpoint_sha256=d.get("checkpoint_sha256"),
            finetuning=FineTuning(**ft) if ft else None,
            weights_sha256=d.get("weights_sha256"),
        )

    def pinned(self, weights_sha256: str) -> SchemeModel:
        return replace(self, weights_sha256=weights_sha256)

    # -- building -----------------------------------------------------------------

    def build(self, blob: bytes | None = None):
        """The model's `Checkpoint`: from `blob` (stored weights) if given, else rebuilt.

        Checks the base checkpoint's sha256 and the weights' sha256 when the
        recipe records them; a mismatch is a GruqError saying what changed.
        """
        from gruq.evaluate import load

        data, base = load(self.task, self.checkpoint)
        if self.checkpoint_sha256 is not None:
            actual = base_sha256(self.task, self.checkpoint)
            if actual != self.checkpoint_sha256:
                raise GruqError(
                    f"the float checkpoint of {self.task} ({_ckpt_name(self.task, self.checkpoint)}) changed since "
                    f"this model was recorded (sha256 {actual[:12]} != {self.checkpoint_sha256[:12]}); "
                    "restore it or run the search again"
                )
        if self.finetuning is None:
            ckpt = base
        elif blob is not None:
            ckpt = from_blob(base, blob)
        else:
            ckpt = _built(self, data, base)
        if self.weights_sha256 is not None:
            actual = weights_sha256(ckpt)
            if actual != self.weights_sha256:
                raise GruqError(
                    f"rebuilding the {self.label} model of {','.join(map(str, self.genome))} on {self.task} gave "
                    f"different weights (sha256 {actual[:12]} != recorded {self.weights_sha256[:12]}); "
                    "the recorded accuracies do not belong to this model"
                )
        return ckpt

    def accuracy(self, split: str = "test", ckpt=None) -> float:
        """This model's accuracy on a split (the exact simulation = the integer engine)."""
        from gruq.evaluate import accuracies, load

        data, _ = load(self.task, self.checkpoint)
        return accuracies(ckpt if ckpt is not None else self.build(), [self.genome], data.split(split))[0]

    def correct(self, split: str = "test", ckpt=None):
        """Per-sequence right (True) / wrong of this model on a split, for paired intervals."""
        from gruq.evaluate import load, logits

        data, _ = load(self.task, self.checkpoint)
        part = data.split(split)
        pred = logits(ckpt if ckpt is not None else self.build(), [self.genome], part.X)[0].argmax(axis=1)
        return pred == part.y


# ---------------------------------------------------------------- hashes, blobs, cache


def weights_sha256(ckpt) -> str:
    """sha256 of a checkpoint's weights (names, dtypes, shapes, bytes) and calibration exponents."""
    h = hashlib.sha256()
    for name, tensor in sorted(ckpt.model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    h.update(repr(sorted(ckpt.calibration.to_dict().items())).encode())
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_BASE_SHA: dict[tuple[str, int, int], str] = {}


def base_sha256(task: str, checkpoint: str | None = None) -> str:
    """sha256 of a task's float checkpoint file (cached per path, modification time and size)."""
    from gruq.model import checkpoint_path

    path = Path(checkpoint) if checkpoint else checkpoint_path(task)
    try:
        st = path.stat()
    except OSError:
        raise GruqError(f"no checkpoint for task {task!r} at {path}") from None
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _BASE_SHA:
        _BASE_SHA[key] = file_sha256(path)
    return _BASE_SHA[key]


def base_identity(task: str, checkpoint: str | None = None) -> str | None:
    """The base checkpoint's sha256, or None when there is no such file (a synthetic test evaluator)."""
    try:
        return base_sha256(task, checkpoint)
    except GruqError:
        return None


def to_blob(ckpt) -> bytes:
    """A fine-tuned model's weights as bytes (numpy .npz: no code is ever unpickled)."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **{k: v.detach().cpu().numpy() for k, v in ckpt.model.state_dict().items()})
    return buf.getvalue()


def from_blob(base, blob: bytes):
    """The base checkpoint with the weights of `blob` (its calibration is kept, as fine-tuning keeps it)."""
    import copy

    import numpy as np
    import torch

    from gruq.model import Checkpoint

    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            state = {k: torch.as_tensor(z[k]) for k in z.files}
        model = copy.deepcopy(base.model)
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - any failure means unusable stored weights
        raise GruqError(f"stored model weights are unreadable ({type(exc).__name__})") from None
    model.eval()
    return Checkpoint(model=model, calibration=base.calibration, meta=dict(base.meta))


_CACHE: OrderedDict[tuple, Any] = OrderedDict()


def _built(recipe: SchemeModel, data, base):
    """Fine-tune (once per process per recipe): gruq.evaluate.tuned, the one fine-tuning entry point."""
    from gruq.evaluate import tuned

    ft = recipe.finetuning
    assert ft is not None
    key = (recipe.task, recipe.checkpoint, base_identity(recipe.task, recipe.checkpoint), recipe.genome, ft.key)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    ckpt = tuned(base, recipe.genome, data, ft.epochs, ft.seed, ft.samples, ft.select)
    _CACHE[key] = ckpt
    while len(_CACHE) > CACHE_MODELS:
        _CACHE.popitem(last=False)
    return ckpt


def remember(recipe: SchemeModel, ckpt) -> None:
    """Put a model built elsewhere (e.g. by a batch) into the in-process cache."""
    if recipe.finetuning is None:
        return
    key = (
        recipe.task,
        recipe.checkpoint,
        base_identity(recipe.task, recipe.checkpoint),
        recipe.genome,
        recipe.finetuning.key,
    )
    _CACHE[key] = ckpt
    while len(_CACHE) > CACHE_MODELS:
        _CACHE.popitem(last=False)


def _ckpt_name(task: str, checkpoint: str | None) -> str:
    from gruq.model import checkpoint_path

    return str(checkpoint or checkpoint_path(task))


# ---------------------------------------------------------------- from flags and from runs


def from_options(
    task: str,
    genome: Genome,
    checkpoint: str | None = None,
    finetune_epochs: int = 0,
    seed: int = 0,
    samples: int | None = None,
    select: str | None = None,
) -> SchemeModel:
    """The model the command-line flags name (evaluate, verify, export --task)."""
    ft = FineTuning(finetune_epochs, seed, samples, select) if finetune_epochs > 0 else None
    return SchemeModel(task, tuple(genome), checkpoint, None, ft)


def for_run(
    config: dict[str, Any], task: str, genome: Genome, front_finetuned: bool, checkpoint_sha256: str | None = None
) -> SchemeModel:
    """The model a run's reported accuracy of `genome` belongs to.

    The final front's fine-tuning when the run fine-tuned the front and this
    genome has a fine-tuned accuracy; else the per-candidate fine-tuning the
    search scored it with; else post-training quantization.
    """
    seed = int(config.get("seed", 0))
    ckpt = config.get("checkpoint")
    samples = config.get("finetune_samples")  # both fine-tunings of a run use it (gruq.search.backend)
    if front_finetuned and int(config.get("front_finetune_epochs") or 0) > 0:
        ft = FineTuning(int(config["front_finetune_epochs"]), seed, samples, where="front")
    elif int(config.get("finetune_epochs") or 0) > 0:
        ft = FineTuning(int(config["finetune_epochs"]), seed, samples, where="per-candidate")
    else:
        ft = None
    return SchemeModel(task, tuple(genome), ckpt, checkpoint_sha256, ft)


def from_run(
    db: str | Path, run_id: int, genome: Genome, checkpoint: str | None = None
) -> tuple[SchemeModel, bytes | None, float | None]:
    """The model behind run `run_id`'s accuracy of `genome`: (recipe, stored weights or None,
    the validation accuracy the run reported for it, or None if the run never scored it).
    `checkpoint`: the run's float checkpoint when its config does not name it (the
    default: the task's); the checksum the run recorded still applies.

    A recorded model (front fine-tuning records its weights) is taken as recorded,
    its hash pinned; otherwise the recipe follows the run's settings (`for_run`).
    """
    from gruq import store

    genome = validate(genome, layers_of(tuple(genome)))  # 17 genes per layer
    run = store.run_detail(db, run_id)
    scored = {tuple(m["bits"]): m for m in store.individuals(db, run_id)}
    member = scored.get(genome)
    rec = store.model_record(db, run_id, genome)
    if rec is not None:
        recipe = SchemeModel.from_dict(rec["recipe"]).pinned(rec["weights_sha256"])
        reported = (
            member["finetuned_accuracy"]
            if member and recipe.finetuning and recipe.finetuning.where == "front"
            else None
        )
        return recipe, rec["weights"], reported if reported is not None else (member or {}).get("accuracy")
    front_ft = member is not None and member.get("finetuned_accuracy") is not None
    config = {**run["config"], **({"checkpoint": checkpoint} if checkpoint else {})}
    recipe = for_run(config, run["task"], genome, front_ft, store.checkpoint_sha256(db, run_id))
    if member is None:
        return recipe, None, None
    return recipe, None, member["finetuned_accuracy"] if front_ft else member["accuracy"]


def load_from_run(db: str | Path, run_id: int, genome: Genome, record: bool = True, checkpoint: str | None = None):
    """(recipe, Checkpoint) of `genome`'s model in a run, checked against what the run reported.

    A model the run did not record is rebuilt from its recipe, and its
    validation accuracy must equal the run's exactly (else GruqError: it is
    not the model the run scored); then, with `record`, its weights hash (and
    fine-tuned weights) are recorded so that later rebuilds are checked by hash
    and the app need not fine-tune again. Recording is best-effort: a store
    locked by a running search is simply not written this time.
    """
    recipe, blob, reported = from_run(db, run_id, genome, checkpoint)
    ckpt = recipe.build(blob)
    if recipe.weights_sha256 is None:
        if reported is not None:
            got = recipe.accuracy("val", ckpt)
            if got != reported:
                raise GruqError(
                    f"rebuilding the {recipe.label} model of {','.join(map(str, recipe.genome))} gave "
                    f"{100 * got:.2f}% on validation where run {run_id} reported {100 * reported:.2f}%: "
                    "not the model the run scored"
                )
        if record and reported is not None:
            _record(db, run_id, recipe, ckpt)
    remember(recipe, ckpt)
    return recipe, ckpt


def _record(db: str | Path, run_id: int, recipe: SchemeModel, ckpt) -> None:
    from gruq.store import RunStore

    sha = weights_sha256(ckpt)
    try:
        with RunStore(db) as s:
            s.record_model(
                run_id, recipe.genome, recipe.pinned(sha).to_dict(), sha, to_blob(ckpt) if recipe.finetuning else None
            )
    except GruqError:
        pass  # locked or read-only: the model is simply checked by accuracy again next time
