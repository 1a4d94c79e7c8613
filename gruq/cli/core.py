"""Commands on one model: tasks, train, evaluate, verify."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from gruq.cli import emit
from gruq.cli.args import add_json, add_task, bits, bounded, layers, path, positive, seed
from gruq.limits import MAX_EPOCHS

if TYPE_CHECKING:
    from tqdm import tqdm

SPLITS = ("train", "val", "test", "select", "holdout")  # as gruq.tasks.base.SPLITS (not imported: no numpy here)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the tasks and their splits")
    add_json(p)
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("train", help="train the float model into assets/")
    p.add_argument("--task", required=True)
    p.add_argument("--epochs", type=bounded("--epochs", 1, MAX_EPOCHS))
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--out",
        type=path("output_file"),
        help="checkpoint path (default: assets/<task>.pt, assets/<task>_<L>layer.pt with --layers L > 1; a .npz task gets assets/<stem>-<hash of its path>.pt)",
    )
    p.add_argument("--layers", type=layers, default=1, help="stacked GRU layers, 1 to 4 (default 1)")
    add_json(p)
    p.set_defaults(func=cmd_train)

    for name, func, text in (
        ("evaluate", cmd_evaluate, "accuracy, size and BOPs of a genome"),
        ("verify", cmd_verify, "integer engine against the simulation"),
    ):
        p = sub.add_parser(name, help=text)
        add_task(p)
        p.add_argument(
            "--bits",
            type=bits,
            required=True,
            help="one width for all, 17 comma-separated (every layer), or 17 per layer",
        )
        p.add_argument(
            "--split",
            choices=SPLITS,
            default="test",
            help="select and holdout are the test split's two fixed halves (reproduce picks on one, reports the other)",
        )
        # evaluate and verify name the same model (gruq.scheme_model)
        p.add_argument("--finetune-epochs", type=bounded("--finetune-epochs", 0, MAX_EPOCHS), default=0)
        p.add_argument("--seed", type=seed, default=0)
        p.add_argument(
            "--finetune-samples",
            type=positive,
            metavar="N",
            help="training sequences per fine-tuning epoch, a seeded subset (default: all)",
        )
        p.add_argument(
            "--finetune-select",
            choices=("val",),
            help="keep the fine-tuning epoch (0 included) with the best validation accuracy",
        )
        add_json(p)
        p.set_defaults(func=func)


def _bar(desc: str, total: int) -> tqdm:
    from tqdm import tqdm  # imported here so that `gruq --help` needs no third-party package

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)


def cmd_tasks(args: argparse.Namespace) -> int:
    from gruq import tasks

    rows = tasks.summaries()
    if args.json:
        emit({"tasks": rows})
    else:
        print(f"{'task':8} {'steps':>5} {'feat':>4} {'cls':>3} {'train':>6} {'val':>5} {'test':>5}")
        for r in rows:
            print(
                f"{r['name']:8} {r['steps']:5} {r['features']:4} {r['classes']:3} "
                f"{r['train']:6} {r['val']:5} {r['test']:5}"
            )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from gruq import tasks
    from gruq.model import checkpoint_path, writable
    from gruq.train import train_float

    data = tasks.load(args.task)
    path = writable(args.out or checkpoint_path(args.task, args.layers))  # checked before training: nothing is lost
    epochs = args.epochs or data.epochs
    with _bar(f"train {data.name}", epochs) as bar:

        def progress(epoch: int, total: int, metrics: dict) -> None:
            bar.update(1)
            bar.set_postfix(val=f"{metrics['val']:.3f}")

        ckpt = train_float(data, epochs, args.seed, progress=progress, layers=args.layers)
    ckpt.save_or_keep(path)
    record = {**ckpt.meta, "checkpoint": str(path)}
    if args.json:
        emit(record)
    else:
        print(
            f"{data.name}: float val {record['val_accuracy']:.4f}, test {record['test_accuracy']:.4f}, "
            f"{record['seconds']} s -> {path}"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gruq.evaluate import evaluate

    record = evaluate(
        args.task,
        args.bits,
        args.split,
        args.finetune_epochs,
        args.seed,
        args.checkpoint,
        args.finetune_samples,
        args.finetune_select,
    )
    if args.json:
        emit(record)
    else:
        lo, hi = record["ci95"]
        print(
            f"{record['task']} {args.split} ({record['model']}): accuracy {record['accuracy']:.4f} "
            f"(95% CI {lo:.4f}-{hi:.4f}, n={record['sequences']}), "
            f"size {record['size_bytes']:.0f} B, {record['bops']} BOPs"
        )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from gruq.evaluate import load, verify
    from gruq.genome import expand
    from gruq.scheme_model import from_options

    data, _ = load(args.task, args.checkpoint)
    model = from_options(
        args.task,
        expand(args.bits, data.layers),
        args.checkpoint,
        args.finetune_epochs,
        args.seed,
        args.finetune_samples,
        args.finetune_select,
    )
    with _bar("verify", len(data.split(args.split))) as bar:
        record = verify(
            args.task,
            args.bits,
            args.split,
            args.checkpoint,
            progress=lambda done, total: bar.update(done - bar.n),
            model=model,
        )
    if args.json:
        emit(record)
    else:
        state = "identical" if record["identical"] else "MISMATCH"
        print(
            f"{state}: {record['sequences']} sequences, {record['mismatched_codes']} codes and "
            f"{record['mismatched_logits']} logits differ"
        )
    return 0 if record["identical"] else 1
