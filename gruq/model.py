"""The float GRU classifier, its 17-operator unrolled form, calibration, checkpoints.

`GRUClassifier` is torch.nn.GRU plus a linear head on the last hidden state.
`float_trace` recomputes it operator by operator (DESIGN.md's table) so that
calibration sees exactly the values the quantized cell will round.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gruq.errors import GruqError
from gruq.fixedpoint import ceil_log2
from gruq.ops import CALIBRATED, GATE_OF_LINEAR, INPUT_LINEAR, LINEAR, OPS
from gruq.paths import checked, input_file, output_file, shown

ASSETS = Path(__file__).resolve().parent.parent / "assets"


class GRUClassifier(nn.Module):
    """One-layer GRU, classifier on the last hidden state."""

    def __init__(self, features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])

    @property
    def hidden(self) -> int:
        return self.gru.hidden_size

    def linear_weight(self, op: int) -> torch.Tensor:
        """Weight matrix of linear operator `op` (a slice of nn.GRU's stacked weights)."""
        H = self.hidden
        gate = GATE_OF_LINEAR[op]
        w = self.gru.weight_ih_l0 if op in INPUT_LINEAR else self.gru.weight_hh_l0
        return w[gate * H : (gate + 1) * H]

    def linear_bias(self, op: int) -> torch.Tensor:
        H = self.hidden
        gate = GATE_OF_LINEAR[op]
        b = self.gru.bias_ih_l0 if op in INPUT_LINEAR else self.gru.bias_hh_l0
        return b[gate * H : (gate + 1) * H]


def float_trace(model: GRUClassifier, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Unrolled float forward, one tensor per operator; returns logits and the
    per-operator max |value| over all steps (what calibration needs)."""
    N, T, _ = x.shape
    w = {op: model.linear_weight(op) for op in LINEAR}
    b = {op: model.linear_bias(op) for op in LINEAR}
    h = x.new_zeros(N, model.hidden)
    peak = {name: x.new_zeros(()) for name in OPS}
    for t in range(T):
        xt = x[:, t]
        v: dict[str, torch.Tensor] = {}
        for op in LINEAR:
            v[OPS[op]] = (xt if op in INPUT_LINEAR else h) @ w[op].T + b[op]
        v["add_r"] = v["lin_xr"] + v["lin_hr"]
        v["sig_r"] = torch.sigmoid(v["add_r"])
        v["add_z"] = v["lin_xz"] + v["lin_hz"]
        v["sig_z"] = torch.sigmoid(v["add_z"])
        v["mul_rn"] = v["sig_r"] * v["lin_hn"]
        v["add_n"] = v["lin_xn"] + v["mul_rn"]
        v["tanh_n"] = torch.tanh(v["add_n"])
        v["sub_z"] = 1 - v["sig_z"]
        v["mul_zn"] = v["sub_z"] * v["tanh_n"]
        v["mul_zh"] = v["sig_z"] * h
        v["add_h"] = v["mul_zn"] + v["mul_zh"]
        h = v["add_h"]
        for name, value in v.items():
            peak[name] = torch.maximum(peak[name], value.abs().max())
    return model.head(h), peak


@dataclass(frozen=True)
class Calibration:
    """Exponents e = ceil(log2 max|v|) of the tensors whose range is not fixed.

    Activation exponents come from the float model on training data and are
    kept through fine-tuning; weight exponents follow the weights.
    """

    x: int
    ops: dict[str, int]  # the CALIBRATED operators

    def to_dict(self) -> dict:
        return {"x": self.x, **self.ops}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(x=int(d["x"]), ops={name: int(d[name]) for name in CALIBRATED})


@torch.no_grad()
def calibrate(model: GRUClassifier, X: np.ndarray, max_sequences: int = 1000) -> Calibration:
    """Measure activation ranges of the float model on (a prefix of) training data."""
    x = torch.as_tensor(X[:max_sequences], dtype=torch.float32)
    _, peak = float_trace(model.float(), x)
    return Calibration(
        x=ceil_log2(float(np.abs(X).max())),
        ops={name: ceil_log2(float(peak[name])) for name in CALIBRATED},
    )


@dataclass
class Checkpoint:
    """A trained float model with what is needed to quantize it."""

    model: GRUClassifier
    calibration: Calibration
    meta: dict  # task, epochs, seconds, float accuracies, seed

    def save(self, path: Path) -> None:
        """Write the checkpoint atomically: into a temporary file beside `path`, then
        renamed over it, so a failure (disk full, read-only) never leaves a
        half-written checkpoint or destroys the one that was there."""
        m = self.model
        path = writable(path)
        try:
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name[:40]}.", delete=False) as f:
                tmp = Path(f.name)
                torch.save(
                    {
                        "state": m.state_dict(),
                        "shape": [m.gru.input_size, m.hidden, m.head.out_features],
                        "calibration": self.calibration.to_dict(),
                        "meta": self.meta,
                    },
                    f,
                )
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:  # torch reports a failed write as RuntimeError
            if "tmp" in locals():
                tmp.unlink(missing_ok=True)
            raise GruqError(f"cannot write checkpoint {shown(path)}: {_reason(exc)}") from None

    def save_or_keep(self, path: Path) -> None:
        """`save`, and if that fails, save into the system's temporary folder instead and
        say where in the error: long training is never lost to a full or read-only disk."""
        try:
            self.save(path)
        except GruqError as exc:
            fd, spare = tempfile.mkstemp(prefix=f"gruq-{Path(path).stem[:40]}-", suffix=".pt")
            os.close(fd)
            try:
                self.save(Path(spare))
            except GruqError:
                Path(spare).unlink(missing_ok=True)
                raise exc from None
            raise GruqError(f"{exc}; the trained model was saved to {spare} instead") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def writable(path: Path) -> Path:
    """`path`, once its folder exists; a GruqError if it cannot be written (checked
    before long work such as training, so that nothing is lost at the end)."""
    path = output_file(path, "")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GruqError(f"cannot write {shown(path)}: its folder cannot be made ({exc.strerror or exc})") from None
    return path


def assets_dir() -> Path:
    """Where checkpoints live: $GRUQ_ASSETS, else assets/ beside the gruq package (a
    checkout or an editable install), else ~/.local/share/gruq/assets (an installed wheel)."""
    if os.environ.get("GRUQ_ASSETS"):
        return Path(os.environ["GRUQ_ASSETS"]).expanduser()
    if ASSETS.is_dir():
        return ASSETS
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "gruq" / "assets"


def checkpoint_path(task: str) -> Path:
    """Where `gruq train` puts a task's checkpoint: assets/<name>.pt for a built-in task.

    A user's .npz gets assets/<stem>-<hash>.pt, the hash of its absolute path, so
    that it can never replace a shipped checkpoint (a user file named vowels.npz)
    nor another user's file of the same name in another folder."""
    from gruq.tasks import NAMES

    name = str(task).strip()
    if name.lower() in NAMES:
        return assets_dir() / f"{name.lower()}.pt"
    resolved = os.path.abspath(os.path.expanduser(name))
    digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:12]
    return assets_dir() / f"{Path(resolved).stem[:80]}-{digest}.pt"


def load_checkpoint(task: str, path: Path | None = None) -> Checkpoint:
    """Load a task's checkpoint (weights only: no code is unpickled)."""
    path = checked(path, "checkpoint") if path else checkpoint_path(task)
    if not path.exists():
        raise GruqError(f"no checkpoint for task {task!r} at {path}; run: gruq train --task {task}")
    input_file(path, "checkpoint")  # never open a folder, a pipe or a device
    try:
        with warnings.catch_warnings():  # torch warns about what weights_only refuses; the refusal says it all
            warnings.simplefilter("ignore")
            raw = torch.load(path, map_location="cpu", weights_only=True)
        model = GRUClassifier(*raw["shape"])
        model.load_state_dict(raw["state"])
        calibration = Calibration.from_dict(raw["calibration"])
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        raise GruqError(f"checkpoint {path} is not a gruq checkpoint ({type(exc).__name__})") from None
    model.eval()
    return Checkpoint(model=model, calibration=calibration, meta=dict(raw.get("meta", {})))
