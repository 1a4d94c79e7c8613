"""`import`: a user's trained torch.nn.GRU state_dict and its data -> a gruq checkpoint.

    python -m gruq import --state-dict model.pt --task data.npz --out my.ckpt [--key-prefix P] [--json]

The checkpoint then goes everywhere a trained one does:
`--task data.npz --checkpoint my.ckpt` (evaluate, verify, search, export).
"""

from __future__ import annotations

import argparse

from gruq.cli import emit
from gruq.cli.args import add_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="import a trained torch.nn.GRU (+ Linear head) state_dict with its .npz data",
        description="Read a PyTorch state_dict (torch.load weights_only=True) holding one unidirectional "
        "torch.nn.GRU (1 to 4 layers, any key prefix) and one Linear head on the last hidden state; check it "
        "against the data, calibrate it on the data's training split and write a gruq checkpoint.",
    )
    p.add_argument("--state-dict", required=True, metavar="MODEL.pt", help="torch.save(model.state_dict(), path)")
    p.add_argument("--task", required=True, metavar="DATA.npz", help="the model's data: X (N, T, F), y (N)")
    p.add_argument("--out", required=True, metavar="CKPT", help="the gruq checkpoint to write")
    p.add_argument("--key-prefix", metavar="P", help="only keys starting with P (when the dict holds several models)")
    add_json(p)
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from gruq.importer import import_state_dict

    record = import_state_dict(args.state_dict, args.task, args.out, args.key_prefix)
    if args.json:
        emit(record)
    else:
        print(
            f"{record['layers']}-layer GRU, hidden {record['hidden']}, {record['features']} features, "
            f"{record['classes']} classes: float test accuracy {record['float_test_accuracy']:.4f} "
            f"(your model on the same {record['test_sequences']} raw test sequences: "
            f"{record['source_test_accuracy']:.4f}) -> {record['checkpoint']}"
        )
    return 0
