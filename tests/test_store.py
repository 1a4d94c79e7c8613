"""The run store: SQLite in WAL mode, safe with files that are not ours.

Specification: a store is created on first write, in WAL mode, with a schema
version; a file that is not a gruq store (not SQLite, another application's
database, corrupt, newer, locked) is refused with one line and left
byte-identical; a generation is written atomically; readers see what the
writer committed and only through the read functions.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

import gruq.store.connection as connection
from gruq.errors import GruqError
from gruq.store import (
    RunStore,
    Scored,
    fronts,
    genome_text,
    hypervolume_curve,
    individuals,
    list_runs,
    parse_genome,
    population,
    result,
    run_detail,
    schema,
)

G8, G4, G2 = (8,) * 17, (4,) * 17, (2,) * 17


def scored(genome, accuracy, gen=0, feasible=True) -> Scored:
    return Scored(
        genome, accuracy, size_bytes=float(sum(genome)), bops=sum(genome) * 10, generation=gen, feasible=feasible
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "gruq.db"  # the parent directory does not exist yet


@pytest.fixture
def store_with_run(db: Path) -> tuple[Path, int]:
    """A store holding one run with two committed generations."""
    with RunStore(db) as store:
        run_id = store.create_run("fake", {"objective": "size", "pop": 4}, seed=3, generations=5)
        store.claim(run_id, pid=1, allowed=("queued",))
        store.commit_generation(
            run_id,
            0,
            hypervolume=0.5,
            seconds=0.1,
            evaluations=2,
            scored=[scored(G8, 0.9), scored(G2, 0.2)],
            front=[G8, G2],
            checkpoint={"gen": 0, "population": [list(G8), list(G2)]},
        )
        store.commit_generation(
            run_id,
            1,
            hypervolume=0.6,
            seconds=0.1,
            evaluations=3,
            scored=[scored(G4, 0.8, gen=1)],
            front=[G8, G4, G2],
            checkpoint={"gen": 1, "population": [list(G8), list(G4)]},
        )
    return db, run_id


def snapshot(path: Path) -> bytes:
    return path.read_bytes()


# -- creation ---------------------------------------------------------------------


def test_a_new_store_is_created_in_wal_mode_with_a_schema_version(db: Path) -> None:
    RunStore(db).close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM gruq_schema").fetchall() == [(schema.VERSION,)]


def test_an_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with RunStore(path) as store:
        assert store.create_run("fake", {}, 0, 1) == 1


def test_genomes_are_stored_as_comma_separated_text() -> None:
    assert genome_text((8, 7) + (2,) * 15) == "8,7," + ",".join(["2"] * 15)
    assert parse_genome(genome_text(G4)) == G4


# -- files that are not ours --------------------------------------------------------


def test_a_file_that_is_not_sqlite_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"my thesis, do not lose\n" * 100)
    before = snapshot(path)
    with pytest.raises(GruqError, match="not an SQLite database"):
        RunStore(path)
    with pytest.raises(GruqError, match="not an SQLite database"):
        list_runs(path)
    assert snapshot(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_another_applications_database_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
        conn.execute("INSERT INTO customers VALUES ('ada')")
    conn.close()
    before = snapshot(path)
    with pytest.raises(GruqError, match="not a gruq store"):
        RunStore(path)
    with pytest.raises(GruqError, match="not a gruq store"):
        list_runs(path)
    assert snapshot(path) == before


def test_a_corrupt_store_is_refused_and_left_byte_identical(store_with_run: tuple[Path, int], tmp_path: Path) -> None:
    db, _ = store_with_run
    corrupt = tmp_path / "corrupt.db"
    shutil.copy(db, corrupt)
    data = bytearray(corrupt.read_bytes())
    for offset in range(4096, len(data), 4096):  # damage every page after the header page
        data[offset : offset + 64] = b"\xff" * 64
    corrupt.write_bytes(bytes(data))
    with pytest.raises(GruqError, match="corrupt"):
        RunStore(corrupt)
    with pytest.raises(GruqError, match="corrupt"):
        list_runs(corrupt)
    assert corrupt.read_bytes() == bytes(data)


def test_a_store_from_a_newer_gruq_is_refused(db: Path) -> None:
    RunStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE gruq_schema SET version = ?", (schema.VERSION + 1,))
    conn.close()
    with pytest.raises(GruqError, match="schema version"):
        RunStore(db)


def test_a_locked_store_is_refused_with_a_clear_line_and_keeps_its_data(
    store_with_run: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, run_id = store_with_run
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_S", 0.1)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE runs SET seed = seed")
    try:
        with pytest.raises(GruqError, match="locked by another process"):
            RunStore(db)
        with pytest.raises(GruqError, match="locked by another process"):
            list_runs(db)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result(db, run_id)["evaluations"] == 3


def test_a_write_waits_for_another_writer_then_reports_the_lock(
    store_with_run: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, _ = store_with_run
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_S", 0.1)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert len(list_runs(db)) == 1  # WAL: a reader is not blocked by a writer
        with RunStore(db) as store, pytest.raises(GruqError, match="locked"):
            store.create_run("fake", {}, 0, 1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_reading_a_missing_store_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    with pytest.raises(GruqError, match="no gruq store"):
        list_runs(tmp_path / "nothing.db")
    assert not (tmp_path / "nothing.db").exists()


# -- runs and generations -----------------------------------------------------------


def test_a_generation_is_committed_whole_or_not_at_all(store_with_run: tuple[Path, int]) -> None:
    db, run_id = store_with_run
    with RunStore(db) as store, pytest.raises(sqlite3.IntegrityError):
        # the same generation twice: its new individual must not be left behind
        store.commit_generation(
            run_id,
            1,
            hypervolume=0.7,
            seconds=0.1,
            evaluations=4,
            scored=[scored((3,) * 17, 0.5, gen=1)],
            front=[G8],
            checkpoint={},
        )
    assert len(individuals(db, run_id)) == 3
    assert [g["gen"] for g in hypervolume_curve(db, run_id)] == [0, 1]


def test_claim_refuses_a_run_in_a_status_not_allowed(store_with_run: tuple[Path, int]) -> None:
    db, run_id = store_with_run
    with RunStore(db) as store:
        with pytest.raises(GruqError, match="is running"):
            store.claim(run_id, pid=2, allowed=("queued",))
        with pytest.raises(GruqError, match="no run 99"):
            store.claim(99, pid=2, allowed=("queued",))


def test_the_read_functions_give_what_the_app_shows(store_with_run: tuple[Path, int]) -> None:
    db, run_id = store_with_run
    [run] = list_runs(db)
    assert run == run_detail(db, run_id)
    assert (run["run_id"], run["task"], run["status"], run["seed"]) == (run_id, "fake", "running", 3)
    assert (run["generations"], run["generations_done"], run["evaluations"]) == (5, 2, 3)
    assert run["alive"] is False  # pid 1 is not a gruq process

    curve = hypervolume_curve(db, run_id)
    assert [(c["gen"], c["hypervolume"], c["evaluations"]) for c in curve] == [(0, 0.5, 2), (1, 0.6, 3)]
    by_bits = {tuple(i["bits"]): i for i in individuals(db, run_id)}
    assert by_bits[G4]["generation"] == 1 and by_bits[G8]["generation"] == 0
    assert all(i["on_front"] for i in by_bits.values())  # the latest front holds all three

    per_gen = fronts(db, run_id)
    assert [[m["bits"] for m in per_gen[g]] for g in (0, 1)] == [[list(G2), list(G8)], [list(G2), list(G4), list(G8)]]
    assert population(db, run_id) == [G8, G4]
    assert population(db, run_id, gen=0) == [G8, G2]

    res = result(db, run_id)
    assert res["hypervolume"] == [0.5, 0.6] and res["evaluations"] == 3
    assert [m["size_bytes"] for m in res["front"]] == sorted(m["size_bytes"] for m in res["front"])
    assert set(res["front"][0]) == {"bits", "accuracy", "size_bytes", "bops", "model", "check"}
    assert res["front"][0]["model"] == "post-training" and "--split val" in res["front"][0]["check"]


def test_an_unknown_run_is_a_clear_error(store_with_run: tuple[Path, int]) -> None:
    db, _ = store_with_run
    for read in (run_detail, hypervolume_curve, individuals, fronts, result, population):
        with pytest.raises(GruqError, match="no run 42"):
            read(db, 42)


def test_status_changes_are_conditional(store_with_run: tuple[Path, int]) -> None:
    db, run_id = store_with_run
    with RunStore(db) as store:
        assert not store.set_status(run_id, "cancelled", only_from=("queued",))
        assert store.set_status(run_id, "failed", error="boom", only_from=("running",))
    detail = run_detail(db, run_id)
    assert (detail["status"], detail["error"]) == ("failed", "boom") and detail["finished_at"]


def test_every_change_of_status_is_recorded_in_order(db: Path) -> None:
    """Launch, start, cancel, resume, start again: the Live page's elapsed time leaves out
    the stretch between the cancel and the resume, so the store must keep when each happened."""
    with RunStore(db) as store:
        run_id = store.create_run("fake", {}, seed=0, generations=3)
        store.claim(run_id, pid=1, allowed=("queued",))
        assert store.set_status(run_id, "cancelled", only_from=("running",))
        assert not store.set_status(run_id, "failed", only_from=("running",))  # refused: nothing happened
        store.set_status(run_id, "queued", only_from=("cancelled",))
        store.claim(run_id, pid=2, allowed=("queued",))
        store.set_status(run_id, "finished")
    events = run_detail(db, run_id)["events"]
    assert [e["status"] for e in events] == ["queued", "running", "cancelled", "queued", "running", "finished"]
    assert events[0]["at"] == run_detail(db, run_id)["created_at"]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)


def test_a_version_2_store_gets_the_events_its_runs_table_knows(store_with_run: tuple[Path, int]) -> None:
    db, run_id = store_with_run
    with RunStore(db) as store:
        store.set_status(run_id, "cancelled")
    with sqlite3.connect(db) as conn:  # as gruq of schema version 2 left it
        conn.execute("DROP TABLE run_events")
        conn.execute("UPDATE gruq_schema SET version = 2")
    conn.close()
    assert run_detail(db, run_id)["events"] == []  # read as is: no history
    RunStore(db).close()  # a writer migrates it
    detail = run_detail(db, run_id)
    assert detail["events"] == [
        {"status": "queued", "at": detail["created_at"]},
        {"status": "cancelled", "at": detail["finished_at"]},
    ]
