"""The app's side of Dask, headless (AppTest): the Launch page's scheduler field and the
Live page's "computing on". Runs are not started on a cluster here (tests/test_search_dask.py
does that); an unreachable address must be refused at launch with nothing stored.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from gruq.store import list_runs, settings

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
LIVE = "app_pages/live_run.py"


@pytest.fixture()
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "gruq.db"
    monkeypatch.setenv("GRUQ_DB", str(path))
    monkeypatch.delenv("GRUQ_EVALUATOR", raising=False)
    return path


def launch_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_bad_scheduler_address_is_explained_before_launch(db: Path) -> None:
    at = launch_page()
    at.text_input(key="scheduler").set_value("my-cluster").run()
    said = " ".join(e.value for e in at.error)
    assert 'The Dask scheduler address (under "Where to compute") takes tcp://HOST:PORT' in said
    assert "got 'my-cluster'" in said and "--scheduler" not in said  # the form's words, not the flag
    assert at.button(key="launch").disabled


def test_an_unreachable_scheduler_is_refused_at_launch_and_nothing_is_stored(db: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"  # bound, not listening
        at = launch_page()
        at.number_input(key="pop").set_value(4)
        at.text_input(key="scheduler").set_value(address).run()
        at.button(key="launch").click().run()
    assert any("cannot reach a Dask scheduler at " + address in e.value for e in at.error)
    assert not db.exists() or list_runs(db) == []
    assert settings.load(db).get("scheduler") is None  # remembered only once a launch succeeds


def test_the_scheduler_address_is_remembered_and_the_live_page_says_where_a_run_computes(db: Path) -> None:
    from gruq.search import run
    from gruq.search.config import SearchConfig

    settings.save(db, scheduler="tcp://10.1.2.3:8786")
    at = launch_page()
    assert at.text_input(key="scheduler").value == "tcp://10.1.2.3:8786"

    run.start(db, SearchConfig(task="vowels", pop=4, gens=1), progress=False)
    at.switch_page(LIVE)
    at.query_params["run"] = "1"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("computing on: this machine, one process" in c.value for c in at.caption)
