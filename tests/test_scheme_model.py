"""One model per scheme: whatever produced a scheme's reported accuracy is the model
every consumer gets (gruq.scheme_model), checked by hash or by the run's own numbers.

Real processes on the real vowels task (its 1-epoch fine-tuning takes about a second
per genome): `search --json` front members carry a `check` command that re-derives
their accuracy exactly; `export --db --run --pick --check` exports that same model
and its test accuracy equals the check command's with `--split test`.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gruq.errors import GruqError
from gruq.scheme_model import FineTuning, SchemeModel, from_options, load_from_run, weights_sha256
from gruq.store import RunStore, model_record, result, schema

ROOT = Path(__file__).resolve().parent.parent


def gruq(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gruq", *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def run_check(command: str, split: str | None = None) -> dict:
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "gruq"]
    if split is not None:
        argv[argv.index("--split") + 1] = split
    done = gruq(*argv[3:])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def front_run(tmp_path_factory):
    """A vowels run that fine-tunes every candidate and then the final front."""
    db = tmp_path_factory.mktemp("scheme") / "runs.db"
    done = gruq(
        "search", "--task", "vowels", "--pop", "4", "--gens", "1", "--seed", "3",
        "--finetune-epochs", "1", "--front-finetune-epochs", "2", "--db", str(db), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return db, json.loads(done.stdout)


def test_labels_and_commands_name_the_model():
    g = (4,) * 17
    assert SchemeModel("vowels", g).label == "post-training"
    ft = SchemeModel("vowels", g, finetuning=FineTuning(1, 5, 96, "val", where="front"))
    assert ft.label == "fine-tuned 1 epoch (final front)"
    cmd = ft.command("holdout")
    assert cmd.startswith("python -m gruq evaluate --task vowels --bits 4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4")
    assert "--split holdout --finetune-epochs 1 --seed 5 --finetune-samples 96 --finetune-select val --json" in cmd
    assert SchemeModel.from_dict(ft.to_dict()) == ft
    with pytest.raises(GruqError):
        FineTuning(1, where="somewhere")


def test_building_is_deterministic_and_checked_by_hash():
    recipe = from_options("vowels", (5,) * 17, finetune_epochs=1, seed=2)
    sha = weights_sha256(recipe.build())
    assert recipe.pinned(sha).build() is not None
    with pytest.raises(GruqError, match="different weights"):
        recipe.pinned("0" * 64).build()
    with pytest.raises(GruqError, match="checkpoint of vowels .* changed"):
        SchemeModel("vowels", (5,) * 17, checkpoint_sha256="f" * 64).build()


def test_every_front_member_carries_a_check_that_rederives_its_accuracy(front_run):
    db, res = front_run
    assert res["front"]
    for m in res["front"]:
        assert m["model"] == "fine-tuned 2 epochs (final front)"
        assert "--split val --finetune-epochs 2 --seed 3" in m["check"]
    for m in res["front"][:2]:
        rec = run_check(m["check"])
        assert rec["bits"] == m["bits"] and rec["accuracy"] == m["finetuned_accuracy"]
        assert rec["sequences"] == 100 and rec["ci95"][0] <= rec["accuracy"] <= rec["ci95"][1]


def test_front_fine_tuning_records_the_weights_and_export_uses_them(front_run, tmp_path):
    db, res = front_run
    member = res["front"][0]
    rec = model_record(db, res["run_id"], tuple(member["bits"]))
    assert rec is not None and rec["weights"] and len(rec["weights_sha256"]) == 64
    out = tmp_path / "export"
    done = gruq(
        "export", "--db", str(db), "--run", str(res["run_id"]), "--pick", "0", "--out", str(out), "--check", "--json"
    )
    assert done.returncode == 0, done.stderr
    exported = json.loads(done.stdout)
    assert exported["model"] == member["model"] and exported["weights_sha256"] == rec["weights_sha256"]
    assert exported["check"]["ok"] and exported["check"]["accuracy"] == exported["test_accuracy"]
    assert exported["test_accuracy"] == run_check(member["check"], split="test")["accuracy"]


def test_a_per_candidate_model_is_checked_against_the_run_then_pinned(tmp_path):
    db = tmp_path / "runs.db"
    done = gruq(
        "search", "--task", "vowels", "--pop", "4", "--gens", "1", "--finetune-epochs", "1", "--db", str(db), "--json"
    )
    assert done.returncode == 0, done.stderr
    res = json.loads(done.stdout)
    member = res["front"][-1]
    assert member["model"] == "fine-tuned 1 epoch" and "finetuned_accuracy" not in member
    assert run_check(member["check"])["accuracy"] == member["accuracy"]
    g = tuple(member["bits"])
    assert model_record(db, res["run_id"], g) is None
    recipe, ckpt = load_from_run(db, res["run_id"], g)  # rebuilt, checked by its val accuracy, recorded
    rec = model_record(db, res["run_id"], g)
    assert rec is not None and rec["weights_sha256"] == weights_sha256(ckpt)
    with sqlite3.connect(db) as conn:  # someone swaps the recorded weights: the export refuses them
        conn.execute("UPDATE models SET weights_sha256 = ? WHERE genome = ?", ("0" * 64, ",".join(map(str, g))))
    pick = len(result(db, res["run_id"])["front"]) - 1
    done = gruq(
        "export", "--db", str(db), "--run", str(res["run_id"]), "--pick", str(pick), "--out", str(tmp_path / "x")
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "different weights" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_model_that_is_not_the_one_the_run_scored_is_refused(tmp_path):
    db = tmp_path / "runs.db"
    g = (3,) * 17
    from gruq.store import Scored

    with RunStore(db) as s:
        run_id = s.create_run("vowels", {"task": "vowels", "objective": "size", "seed": 0}, 0, 1)
        s.commit_generation(
            run_id, 0, hypervolume=0.1, seconds=0.1, evaluations=1,
            scored=[Scored(g, 0.123, 1.0, 1, 0, True)], front=[g], checkpoint={},
        )  # fmt: skip
    with pytest.raises(GruqError, match="not the model the run scored"):
        load_from_run(db, run_id, g)


V1_DDL = """
CREATE TABLE gruq_schema (version INTEGER NOT NULL);
INSERT INTO gruq_schema VALUES (1);
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, task TEXT NOT NULL, config TEXT NOT NULL,
    seed INTEGER NOT NULL, generations INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'queued', error TEXT,
    pid INTEGER, created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT);
CREATE TABLE generations (run_id INTEGER NOT NULL, gen INTEGER NOT NULL, hypervolume REAL NOT NULL,
    seconds REAL NOT NULL, evaluations INTEGER NOT NULL, finished_at TEXT NOT NULL, PRIMARY KEY (run_id, gen));
CREATE TABLE checkpoints (run_id INTEGER NOT NULL, gen INTEGER NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (run_id, gen));
CREATE TABLE individuals (run_id INTEGER NOT NULL, genome TEXT NOT NULL, accuracy REAL NOT NULL,
    size_bytes REAL NOT NULL, bops INTEGER NOT NULL, generation INTEGER NOT NULL, feasible INTEGER NOT NULL,
    on_front INTEGER NOT NULL DEFAULT 0, finetuned_accuracy REAL, PRIMARY KEY (run_id, genome));
CREATE TABLE fronts (run_id INTEGER NOT NULL, gen INTEGER NOT NULL, genome TEXT NOT NULL,
    PRIMARY KEY (run_id, gen, genome));
INSERT INTO runs (task, config, seed, generations, status, created_at)
    VALUES ('vowels', '{"objective": "size", "seed": 0}', 0, 1, 'finished', '2026-01-01T00:00:00+00:00');
INSERT INTO generations VALUES (1, 0, 0.5, 1.0, 1, '2026-01-01T00:00:01+00:00');
INSERT INTO individuals VALUES (1, '8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8', 0.97, 5316.0, 1, 0, 1, 1, NULL);
INSERT INTO fronts VALUES (1, 0, '8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8');
"""


def test_a_version_1_store_is_read_as_is_and_migrated_explicitly_on_write(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(V1_DDL)
    before = db.read_bytes()
    front = result(db, 1)["front"]  # a reader never changes the file
    assert front[0]["model"] == "post-training" and "--split val" in front[0]["check"]
    assert model_record(db, 1, (8,) * 17) is None and db.read_bytes() == before
    with RunStore(db) as s:  # a writer migrates it, keeping every row
        assert s.run(1).task == "vowels"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM gruq_schema").fetchall() == [(schema.VERSION,)]
        assert conn.execute("SELECT count(*) FROM models").fetchone() == (0,)
        assert conn.execute("SELECT checkpoint_sha256 FROM runs").fetchall() == [(None,)]
    assert result(db, 1)["front"] == front
