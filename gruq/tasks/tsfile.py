"""A small, strict reader of labelled .ts files (the UEA/UCR archive's format,
as shipped in sktime's datasets folder), so that reading one never imports sktime.

    @problemName JapaneseVowels      header: one tag a line, tags case-insensitive,
    @timeStamps false                '#' comment lines and blank lines allowed
    @univariate false
    @dimensions 12                   (optional)
    @equalLength false               (optional; with true, @seriesLength is checked)
    @classLabel true 1 2 3 ...
    @data
    1.2,0.9,...:-0.2,-0.1,...:...:3  one case a line: dimensions separated by ':',
                                     values by ',', the class label last

Read: classification files without time stamps or missing values ('?'), every
case with the same number of dimensions, all of one case's dimensions of equal
length (cases may differ in length). Values are parsed with Python's float(),
as sktime does; class labels are kept as written (sktime lowercases them).
Anything else is a one-line GruqError naming the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from gruq.errors import GruqError

_NUMBER = r"[ \t]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*"  # ASCII only
_VALUES = re.compile(rf"{_NUMBER}(?:,{_NUMBER})*")
_COUNT = re.compile(r"[0-9]+")
_BOOLEAN = {"true": True, "false": False}
_REQUIRED = ("@problemname", "@timestamps", "@univariate", "@classlabel")
_KNOWN = (
    "@problemname",
    "@timestamps",
    "@missing",
    "@univariate",
    "@dimensions",
    "@equallength",
    "@serieslength",
    "@classlabel",
    "@targetlabel",
    "@data",
)


@dataclass(frozen=True)
class TsFile:
    """The cases of a .ts file: sequences[i] is (length, dimensions) float64, labels[i] its class (str)."""

    problem: str
    class_labels: tuple[str, ...]
    sequences: list[np.ndarray]
    labels: np.ndarray


def _error(where: str, number: int, what: str) -> GruqError:
    return GruqError(f"{where}, line {number}: {what}")


def _show(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def read_ts(path: str | Path) -> TsFile:
    """The labelled cases of the .ts file at `path` (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise GruqError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise GruqError(f"{path}: not a text .ts file (byte {exc.start} is not UTF-8)") from None
    return parse_ts(text, str(path))


def parse_ts(text: str, where: str = "<.ts text>") -> TsFile:
    """The labelled cases of .ts content `text`; errors name `where` and the line."""
    header: dict[str, list[str]] = {}
    lines = text.splitlines()
    start = None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fail = partial(_error, where, number)
        if not line.startswith("@"):
            raise fail(f"expected a header tag or @data before the data, got {_show(line)}")
        tag, *values = line.split()
        tag = tag.lower()
        if tag not in _KNOWN:
            raise fail(f"unknown header tag {_show(tag)}")
        if tag in header:
            raise fail(f"{tag} appears twice")
        header[tag] = values
        if tag == "@data":
            if values:
                raise fail("@data must be alone on its line")
            start = number
            break
        if tag == "@targetlabel":
            raise fail("regression files (@targetLabel) are not supported; gruq needs class labels")
        if tag == "@problemname":
            if not values:
                raise fail("@problemName needs a name")
        elif tag in ("@dimensions", "@serieslength"):
            if len(values) != 1 or not _COUNT.fullmatch(values[0]) or int(values[0]) < 1:
                raise fail(f"{tag} needs one positive integer, got {_show(' '.join(values))}")
        elif tag == "@classlabel":
            if not values or values[0].lower() not in _BOOLEAN:
                raise fail("@classLabel needs true or false")
            if not _BOOLEAN[values[0].lower()]:
                raise fail("the file has no class labels (@classLabel false); gruq needs labelled cases")
            if len(values) < 2:
                raise fail("@classLabel true needs the list of class labels")
            if len(set(values[1:])) != len(values) - 1:
                raise fail("@classLabel lists a label twice")
        elif len(values) != 1 or values[0].lower() not in _BOOLEAN:  # the true/false tags
            raise fail(f"{tag} needs true or false, got {_show(' '.join(values))}")
    if start is None:
        raise GruqError(f"{where}: no @data line (a .ts file is a header, then @data, then one case a line)")
    missing = [tag for tag in _REQUIRED if tag not in header]
    if missing:
        raise GruqError(f"{where}: header lacks {', '.join(missing)} before @data (line {start})")

    def flag(tag: str) -> bool | None:
        return _BOOLEAN[header[tag][0].lower()] if tag in header else None

    if flag("@timestamps"):
        raise GruqError(f"{where}: files with time stamps (@timeStamps true) are not supported")
    dimensions = int(header["@dimensions"][0]) if "@dimensions" in header else None
    if flag("@univariate"):
        if dimensions not in (None, 1):
            raise GruqError(f"{where}: @univariate true contradicts @dimensions {dimensions}")
        dimensions = 1
    length = int(header["@serieslength"][0]) if flag("@equallength") and "@serieslength" in header else None
    class_labels = tuple(header["@classlabel"][1:])
    known_labels = set(class_labels)

    sequences: list[np.ndarray] = []
    labels: list[str] = []
    for number in range(start + 1, len(lines) + 1):
        line = lines[number - 1].strip()
        if not line:
            continue
        fail = partial(_error, where, number)
        if line.startswith("@"):
            raise fail(f"header tag {_show(line.split()[0])} after @data")
        *fields, label = line.split(":")
        label = label.strip()
        if not fields:
            raise fail(f"a case is dimensions separated by ':' then its class label, got {_show(line)}")
        if label not in known_labels:
            raise fail(f"class label {_show(label)} is not one of @classLabel's {' '.join(class_labels)}")
        if dimensions is None:
            dimensions = len(fields)  # the first case fixes it
        if len(fields) != dimensions:
            raise fail(f"{len(fields)} dimensions where the file has {dimensions}")
        series = []
        for d, field in enumerate(fields, 1):
            if "?" in field:
                raise fail(f"dimension {d} has missing values ('?'), which are not supported")
            if not _VALUES.fullmatch(field):
                raise fail(f"dimension {d} is not comma-separated numbers: {_show(field.strip())}")
            series.append([float(v) for v in field.split(",")])
        if any(len(s) != len(series[0]) for s in series):
            raise fail(f"dimensions of unequal lengths {sorted({len(s) for s in series})}")
        if length is not None and len(series[0]) != length:
            raise fail(f"{len(series[0])} values per dimension where @seriesLength is {length}")
        values = np.array(series, dtype=np.float64).T.copy()  # (length, dimensions)
        if not np.isfinite(values).all():
            raise fail("a value overflows to infinity")
        sequences.append(values)
        labels.append(label)
    if not sequences:
        raise GruqError(f"{where}: no cases after @data (line {start})")
    if flag("@equallength") and len({len(s) for s in sequences}) > 1:
        raise GruqError(f"{where}: @equalLength true, but the cases have {len({len(s) for s in sequences})} lengths")
    return TsFile(
        problem=" ".join(header["@problemname"]),
        class_labels=class_labels,
        sequences=sequences,
        labels=np.array(labels, dtype=str),
    )
