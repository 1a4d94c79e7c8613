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
    """GRU of `layers` stacked layers (torch.nn.GRU's num_layers), classifier on the
    last layer's last hidden state. Its state_dict is torch's: `gru.weight_ih_l{k}` ..."""

    def __init__(self, features: int, hidden: int, classes: int, layers: int = 1) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])

    @property
    def hidden(self) -> int:
        return self.gru.hidden_size

    @property
    def layers(self) -> int:
        return self.gru.num_layers

    def shape(self) -> list[int]:
        """[features, hidden, classes] (and layers when more than one): the checkpoint's record."""
        shape = [self.gru.input_size, self.hidden, self.head.out_features]
        return shape + [self.layers] if self.layers > 1 else shape

    def cell(self, layer: int) -> Cell:
        """One layer's weights, seen as the one GRU cell every path computes."""
        return Cell(self.gru, layer)

    def linear_weight(self, op: int, layer: int = 0) -> torch.Tensor:
        """Weight matrix of linear operator `op` (a slice of nn.GRU's stacked weights)."""
        return self.cell(layer).linear_weight(op)

    def linear_bias(self, op: int, layer: int = 0) -> torch.Tensor:
        return self.cell(layer).linear_bias(op)


class Cell:
    """Layer `layer` of an nn.GRU as one 17-operator cell: its weights (views, so
    gradients reach the GRU's parameters) and its input width."""

    def __init__(self, gru: nn.GRU, layer: int) -> None:
        self.gru, self.layer = gru, layer
        self.hidden = gru.hidden_size
        self.input_size = gru.input_size if layer == 0 else gru.hidden_size

    def linear_weight(self, op: int) -> torch.Tensor:
        H, gate = self.hidden, GATE_OF_LINEAR[op]
        w = getattr(self.gru, f"weight_{'ih' if op in INPUT_LINEAR else 'hh'}_l{self.layer}")
        return w[gate * H : (gate + 1) * H]

    def linear_bias(self, op: int) -> torch.Tensor:
        H, gate = self.hidden, GATE_OF_LINEAR[op]
        b = getattr(self.gru, f"bias_{'ih' if op in INPUT_LINEAR else 'hh'}_l{self.layer}")
        return b[gate * H : (gate + 1) * H]


def cell_step(cell: Cell, xt: torch.Tensor, h: torch.Tensor) -> dict[str, torch.Tensor]:
    """One float step of one cell, operator by operator (DESIGN.md's table)."""
    v: dict[str, torch.Tensor] = {}
    for op in LINEAR:
        v[OPS[op]] = (xt if op in INPUT_LINEAR else h) @ cell.linear_weight(op).T + cell.linear_bias(op)
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
    return v


def float_trace(model: GRUClassifier, x: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Unrolled float forward, one tensor per operator; returns logits and, per
    layer, the per-operator max |value| over all steps (what calibration needs).
    Each step runs the one cell once per layer, layer k + 1 on layer k's new h."""
    N, T, _ = x.shape
    cells = [model.cell(k) for k in range(model.layers)]
    hs = [x.new_zeros(N, model.hidden) for _ in cells]
    peaks = [{name: x.new_zeros(()) for name in OPS} for _ in cells]
    for t in range(T):
        inp = x[:, t]
        for k, cell in enumerate(cells):
            v = cell_step(cell, inp, hs[k])
            hs[k] = inp = v["add_h"]
            for name, value in v.items():
                peaks[k][name] = torch.maximum(peaks[k][name], value.abs().max())
    return model.head(hs[-1]), peaks


@dataclass(frozen=True)
class Calibration:
    """Exponents e = ceil(log2 max|v|) of the tensors whose range is not fixed.

    Activation exponents come from the float model on training data and are
    kept through fine-tuning; weight exponents follow the weights. `layers`
    holds the CALIBRATED operators' exponents of each layer; the input of layer
    k > 0 is layer k - 1's add_h, so only the model's input x has its own.
    """

    x: int
    layers: tuple[dict[str, int], ...]

    @property
    def ops(self) -> dict[str, int]:
        """Layer 0's exponents (a one-layer model's only ones)."""
        return self.layers[0]

    def to_dict(self) -> dict:
        if len(self.layers) == 1:  # the one-layer record, as before stacking
            return {"x": self.x, **self.ops}
        return {"x": self.x, "layers": [dict(e) for e in self.layers]}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        layers = d["layers"] if "layers" in d else [d]
        return cls(x=int(d["x"]), layers=tuple({name: int(e[name]) for name in CALIBRATED} for e in layers))


@torch.no_grad()
def calibrate(model: GRUClassifier, X: np.ndarray, max_sequences: int = 1000) -> Calibration:
    """Measure activation ranges of the float model on (a prefix of) training data."""
    x = torch.as_tensor(X[:max_sequences], dtype=torch.float32)
    _, peaks = float_trace(model.float(), x)
    return Calibration(
        x=ceil_log2(float(np.abs(X).max())),
        layers=tuple({name: ceil_log2(float(peak[name])) for name in CALIBRATED} for peak in peaks),
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
                        "shape": m.shape(),
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


def checkpoint_path(task: str, layers: int = 1) -> Path:
    """Where `gruq train` puts a task's checkpoint: assets/<name>.pt for a built-in task,
    assets/<name>_<L>layer.pt for a stacked model of it (so both can be shipped).

    A user's .npz gets assets/<stem>-<hash>.pt, the hash of its absolute path, so
    that it can never replace a shipped checkpoint (a user file named vowels.npz)
    nor another user's file of the same name in another folder."""
    from gruq.tasks import NAMES

    name = str(task).strip()
    stacked = "" if layers == 1 else f"_{layers}layer"
    if name.lower() in NAMES:
        return assets_dir() / f"{name.lower()}{stacked}.pt"
    resolved = os.path.abspath(os.path.expanduser(name))
    digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:12]
    return assets_dir() / f"{Path(resolved).stem[:80]}-{digest}{stacked}.pt"


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
