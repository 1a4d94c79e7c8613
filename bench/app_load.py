"""Cold page loads of the app in a real browser (Debian's chromium, headless, via Playwright).

For each page and each checkout given, a fresh `streamlit run app.py` is started (so the
page load is cold: nothing imported, nothing cached), the page is opened once (cold) and
once more in a new tab (warm). Reported per load: seconds until the page title shows,
seconds until the script run ends ([data-test-script-state='notRunning']), and the CPU
seconds the server process spent on it (user + system, from /proc), which depends far
less on the machine's load than wall time does. Checkouts are interleaved so that all
see the same load.

    python -m bench.app_load [--rounds N] [CHECKOUT ...]   (default: this checkout)

The store holds three finished searches on vowels (size, BOPs, an unreachable minimum
accuracy), written once into a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["", "Live_run?run=1", "Explorer?run=1", "Compare", "Learn"]
CONNECTED = "[data-testid='stApp'][data-test-connection-state='CONNECTED']"
IDLE = "[data-test-script-state='notRunning']"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def make_store(db: Path) -> None:
    from gruq.search import run
    from gruq.search.config import SearchConfig

    for cfg in (
        SearchConfig(task="vowels", pop=8, gens=3, seed=0),
        SearchConfig(task="vowels", pop=8, gens=3, seed=1, objective="bops"),
        SearchConfig(task="vowels", pop=8, gens=2, seed=2, min_accuracy=0.999),
    ):
        run.start(db, cfg, progress=False)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(checkout: Path, db: Path) -> tuple[subprocess.Popen, str]:
    port = _port()
    args = ["--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"]
    args += ["--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", *args],
        cwd=checkout,
        env={**os.environ, "GRUQ_DB": str(db)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError("streamlit did not start")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(browser, url: str, page_path: str, pid: int) -> dict:
    cpu0 = _cpu(pid)
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    t0 = time.monotonic()
    page.goto(f"{url}/{page_path}")
    page.wait_for_selector(CONNECTED, timeout=300_000)
    page.wait_for_selector("h1", timeout=300_000)
    title = time.monotonic() - t0
    time.sleep(0.2)  # the script state attribute appears once the run is under way
    page.wait_for_selector(IDLE, timeout=300_000)
    idle = time.monotonic() - t0
    errors = page.locator("[data-testid='stException']").count()
    page.close()
    return {"title": title, "idle": idle, "cpu": _cpu(pid) - cpu0, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", type=Path, default=[ROOT])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="gruq-app-load-") as tmp:
        db = Path(tmp) / "gruq.db"
        make_store(db)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for _ in range(args.rounds):
                for page_path in PAGES:
                    for checkout in args.checkouts:
                        proc, url = _serve(checkout, db)
                        try:
                            cold, warm = (_load(browser, url, page_path, proc.pid) for _ in range(2))
                        finally:
                            proc.terminate()
                            try:
                                proc.wait(10)
                            except subprocess.TimeoutExpired:
                                proc.kill()
                                proc.wait()
                        name = page_path.split("?")[0] or "Launch"
                        results.setdefault((str(checkout), name), []).append(cold)
                        load = open("/proc/loadavg").read().split()[0]
                        print(
                            f"{checkout} {name:10s} cold: title {cold['title']:5.1f} s, done {cold['idle']:5.1f} s, "
                            f"server CPU {cold['cpu']:4.2f} s | warm: done {warm['idle']:5.1f} s, server CPU "
                            f"{warm['cpu']:4.2f} s | exceptions {cold['errors'] + warm['errors']} | load {load}",
                            flush=True,
                        )
            browser.close()
    print("median of the cold loads:")
    for (checkout, name), rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("title", "idle", "cpu")}
        print(f"  {checkout} {name:10s} title {med['title']:.1f} s, done {med['idle']:.1f} s, CPU {med['cpu']:.2f} s")


if __name__ == "__main__":
    main()
