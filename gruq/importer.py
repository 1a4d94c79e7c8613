"""Bring your own GRU: a user's trained PyTorch state_dict -> a gruq checkpoint.

What is accepted is exactly what gruq quantizes: a unidirectional torch.nn.GRU
of 1 to 4 layers (any key prefix: `gru.`, `rnn.`, `model.encoder.` ...), with
biases and without proj_size, and one torch.nn.Linear head (weight (C, H),
bias (C,)) that reads the last layer's hidden state at the last step. Anything
else in the dict (a second GRU, a bidirectional one, an embedding, a head
on another width) is refused with one line naming what was found: gruq would
otherwise answer questions about a model that is not the user's.

The data are a gruq .npz task (`gruq.tasks.npz`): 60/20/20 stratified seeded
splits, channels z-scored with training statistics. gruq feeds its models the
z-scored inputs; the user's model was trained on raw ones. The import folds the
z-score into layer 0's input weights and biases (W' = W diag(std), b' = b + W
mean), so that the imported model on z-scored inputs computes the user's model
on raw inputs (up to float32 rounding). The user's own model is run on the
raw sequences of the same test split, and both accuracies are reported.
Calibration runs on the training split, as for gruq's own models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gruq import tasks
from gruq.errors import GruqError
from gruq.model import Checkpoint, GRUClassifier, calibrate, writable
from gruq.ops import MAX_LAYERS
from gruq.tasks.base import Task

GRU_KEY = re.compile(
    r"^(?P<prefix>.*?)(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(?P<k>\d+)(?P<rev>_reverse)?$"
)


@dataclass(frozen=True)
class Found:
    """The parts of a state_dict that make a gruq model, by their keys."""

    gru_prefix: str
    head_prefix: str
    layers: int
    features: int
    hidden: int
    classes: int


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True (no code runs); a mapping of names to tensors."""
    path = Path(path)
    if not path.is_file():
        raise GruqError(f"{path}: no such file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure means not a plain state_dict
        raise GruqError(_unreadable(path)) from None
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        raise GruqError(f"{path} holds a {type(raw).__name__}, not a state_dict; save model.state_dict()")
    bad = [k for k, v in raw.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise GruqError(f"{path}: {bad[0]!r} is not a tensor; save model.state_dict() (a dict of tensors)")
    return dict(raw)


def _unreadable(path: Path) -> str:
    """Why torch.load(weights_only=True) refused a file, in the user's terms (not the
    exception's class): torch.save writes a zip archive, so anything else is not its file."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return f"{path} is not a file torch.save wrote; save torch.save(model.state_dict(), path)"
    return (
        f"{path} holds more than tensors (a whole model?), which a weights-only load refuses; "
        "save torch.save(model.state_dict(), path)"
    )


def _norm_prefix(prefix: str | None) -> str | None:
    if prefix is None or prefix == "":
        return prefix
    return prefix if prefix.endswith(".") else prefix + "."


def find(state: Mapping[str, torch.Tensor], key_prefix: str | None = None) -> Found:
    """Locate one GRU and one Linear head; refuse anything else (see the module)."""
    prefix = _norm_prefix(key_prefix)
    keys = [k for k in state if prefix is None or k.startswith(prefix)]
    if prefix is not None and not keys:
        raise GruqError(f"no key starts with --key-prefix {prefix!r}")
    grus: dict[str, list[re.Match]] = {}
    for k in keys:
        m = GRU_KEY.match(k)
        if m:
            grus.setdefault(m["prefix"], []).append(m)
    if not grus:
        raise GruqError(f"no torch.nn.GRU weights (weight_ih_l0 ...) among {len(keys)} keys, e.g. {keys[:3]}")
    if len(grus) > 1:
        shown = ", ".join(repr(p) for p in sorted(grus))
        raise GruqError(f"found GRU weights under several prefixes ({shown}); choose one with --key-prefix")
    gru_prefix, matches = next(iter(grus.items()))
    layers = _check_gru(state, gru_prefix, matches)
    features = int(state[f"{gru_prefix}weight_ih_l0"].shape[1])
    hidden = int(state[f"{gru_prefix}weight_hh_l0"].shape[1])
    gru_keys = {m.string for m in matches}
    rest = [k for k in keys if k not in gru_keys]
    head_prefix, classes = _find_head(state, rest, hidden)
    return Found(gru_prefix, head_prefix, layers, features, hidden, classes)


def _check_gru(state: Mapping[str, torch.Tensor], p: str, matches: list[re.Match]) -> int:
    """The GRU's layer count, once it is known to be one gruq can quantize."""
    if any(m["rev"] for m in matches):
        raise GruqError(
            f"{p or 'the'} GRU is bidirectional ({p}weight_ih_l0_reverse ...); gruq quantizes unidirectional GRUs"
        )
    if any(m["kind"] == "weight_hr" for m in matches):
        raise GruqError(f"{p or 'the'} GRU has proj_size ({p}weight_hr_l0); gruq quantizes GRUs without projections")
    layers = 1 + max(int(m["k"]) for m in matches)
    if layers > MAX_LAYERS:
        raise GruqError(f"the GRU has {layers} layers; gruq takes 1 to {MAX_LAYERS}")
    for k in range(layers):
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if f"{p}{kind}_l{k}" not in state:
                what = "bias (nn.GRU(bias=False)?)" if kind.startswith("bias") else "weight"
                raise GruqError(f"missing {p}{kind}_l{k}: the GRU has no {what}; gruq needs every weight and bias")
    H = int(state[f"{p}weight_hh_l0"].shape[-1])
    for k in range(layers):
        inputs = int(state[f"{p}weight_ih_l0"].shape[-1]) if k == 0 else H
        want = {"weight_ih": (3 * H, inputs), "weight_hh": (3 * H, H), "bias_ih": (3 * H,), "bias_hh": (3 * H,)}
        for kind, shape in want.items():
            got = tuple(state[f"{p}{kind}_l{k}"].shape)
            if got != shape:
                raise GruqError(f"{p}{kind}_l{k} has shape {got}; a GRU of hidden size {H} needs {shape}")
    return layers


def _find_head(state: Mapping[str, torch.Tensor], keys: list[str], hidden: int) -> tuple[str, int]:
    """The one Linear (weight (C, H), bias (C,)) besides the GRU; nothing else may be left."""
    weights = [k for k in keys if k.endswith("weight")]
    if not weights:
        left = f"; other keys: {keys[:4]}" if keys else ""
        raise GruqError(f"no Linear head (weight (C, H) and bias (C,)) besides the GRU{left}")
    if len(keys) != 2 or len(weights) != 1:
        raise GruqError(
            f"besides the GRU, gruq takes one Linear head (a weight and a bias); found {len(keys)} other tensors "
            f"({', '.join(keys[:5])}); use --key-prefix to pick one model"
        )
    w = weights[0]
    p = w[: -len("weight")]
    b = p + "bias"
    if b not in state or b not in keys:
        raise GruqError(f"the head {w} has no bias {b!r}; gruq needs a Linear head with bias")
    W, B = state[w], state[b]
    if W.dim() != 2 or B.dim() != 1 or W.shape[0] != B.shape[0]:
        raise GruqError(f"{w} {tuple(W.shape)} and {b} {tuple(B.shape)} are not a Linear layer's weight and bias")
    if W.shape[1] != hidden:
        raise GruqError(
            f"the head {w} takes {W.shape[1]} inputs but the GRU's hidden state has {hidden}: "
            "a head on another output (bidirectional, concatenated, pooled) is not supported"
        )
    return p, int(W.shape[0])


def _check_data(found: Found, data: Task) -> None:
    if found.features != data.features:
        raise GruqError(f"the GRU takes {found.features} features; the data's X has {data.features}")
    if found.classes != data.classes:
        raise GruqError(f"the head has {found.classes} outputs; the data's y has {data.classes} classes")
    labels = tuple(data.extra.get("labels", range(data.classes)))
    if labels != tuple(range(data.classes)):
        raise GruqError(
            f"the data's labels are {labels[:6]}{' ...' if len(labels) > 6 else ''}; the model's outputs are "
            f"classes 0..{data.classes - 1}: save y as those output indices"
        )


def user_model(state: Mapping[str, torch.Tensor], found: Found) -> GRUClassifier:
    """The user's model as a GRUClassifier, weights as given (for raw inputs)."""
    model = GRUClassifier(found.features, found.hidden, found.classes, found.layers)
    ours = {}
    for k in range(found.layers):
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            ours[f"gru.{kind}_l{k}"] = state[f"{found.gru_prefix}{kind}_l{k}"]
    ours["head.weight"] = state[f"{found.head_prefix}weight"]
    ours["head.bias"] = state[f"{found.head_prefix}bias"]
    model.load_state_dict({k: v.detach().float().clone() for k, v in ours.items()})
    return model.eval()


@torch.no_grad()
def fold_normaliser(model: GRUClassifier, mean: np.ndarray, std: np.ndarray) -> GRUClassifier:
    """Layer 0 for z-scored inputs: W x_raw + b = (W diag(std)) x_norm + (W mean + b). In float64, then float32."""
    W = model.gru.weight_ih_l0.double()
    m, s = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(std, dtype=torch.float64)
    model.gru.bias_ih_l0.copy_((model.gru.bias_ih_l0.double() + W @ m).float())
    model.gru.weight_ih_l0.copy_((W * s).float())
    return model


@torch.no_grad()
def _accuracy(model: GRUClassifier, X: np.ndarray, y: np.ndarray) -> float:
    return float((model(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy() == y).mean())


def raw_split(data: Task, split: str) -> np.ndarray:
    """The user's own (not z-scored) sequences of one split, read again from the .npz."""
    with np.load(data.extra["path"], allow_pickle=False) as f:
        X = np.asarray(f["X"], dtype=np.float32)
    return X[list(data.extra["index"][split])]


def import_state_dict(state_dict: Path, task: str, out: Path, key_prefix: str | None = None) -> dict:
    """Check, convert, calibrate and save; the `gruq import` record."""
    out = writable(Path(out))
    if not str(task).endswith(".npz"):
        raise GruqError(f"--task for an import is the user's data, a .npz with X (N, T, F) and y (N); got {task!r}")
    state = read_state_dict(Path(state_dict))
    found = find(state, key_prefix)
    data = tasks.load(task)
    _check_data(found, data)
    theirs = user_model(state, found)
    source_acc = _accuracy(theirs, raw_split(data, "test"), data.test.y)
    model = fold_normaliser(user_model(state, found), np.asarray(data.extra["mean"]), np.asarray(data.extra["std"]))
    meta = {
        "task": data.name,
        "imported": str(Path(state_dict).resolve()),
        "gru_prefix": found.gru_prefix,
        "head_prefix": found.head_prefix,
        "layers": found.layers,
        "val_accuracy": _accuracy(model, data.val.X, data.val.y),
        "test_accuracy": _accuracy(model, data.test.X, data.test.y),
        "source_test_accuracy": source_acc,
    }
    ckpt = Checkpoint(model=model, calibration=calibrate(model, data.train.X), meta=meta)
    ckpt.save(out)  # atomic: an existing file is replaced whole or not at all
    return {
        "checkpoint": str(out),
        "layers": found.layers,
        "hidden": found.hidden,
        "features": found.features,
        "classes": found.classes,
        "float_test_accuracy": meta["test_accuracy"],
        "source_test_accuracy": source_acc,
        "test_sequences": len(data.test),
    }
