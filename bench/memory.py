"""Resident memory of the daemon: after start, and after many cycles (goal: flat, < 160 MB).

    python bench/memory.py [--cycles 1000]

1. `nextround run` as a real process against a Dovecot: VmRSS once it is ready.
2. In this process, the daemon's cycle (`Engine.poll_once` on one logged-in session, as the
   scheduler runs it) repeated --cycles times, with a rejection delivered every 50 cycles so
   the drafting path runs too: VmRSS before and after, and its maximum.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from dovecot import Dovecot  # noqa: E402
from latency import rejection  # noqa: E402

from nextround.daemon.config import DEFAULT_THRESHOLD, load_config  # noqa: E402
from nextround.daemon.engine import Engine  # noqa: E402
from nextround.daemon.session import open_session  # noqa: E402
from nextround.daemon.store import Store  # noqa: E402
from nextround.daemon.training import ModelSettings, get_model  # noqa: E402


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_config(workdir: Path, server: Dovecot, username: str, password: str) -> Path:
    secret = workdir / "password"
    secret.write_text(password)
    secret.chmod(0o600)
    config = workdir / "config.toml"
    config.write_text(
        f'[imap]\nhost = "{server.host}"\nport = {server.port_plain}\nsecurity = "plain"\n'
        f'username = "{username}"\npassword_file = "{secret}"\n\n'
        f'[identity]\nname = "Alex Doe"\nemail = "{username}"\n\n'
        f'[state]\ndatabase = "{workdir / "state" / "state.db"}"\n\n'
        '[schedule]\npoll_interval = "10m"\n'
    )
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=1000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="nextround-memory-"))
    server = Dovecot.start()
    results: dict[str, Any] = {}
    try:
        user = server.add_user("memory@example.org")
        config_path = write_config(workdir, server, user.username, user.password)
        get_model(ModelSettings(workdir / "state", DEFAULT_THRESHOLD))

        log = workdir / "daemon.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "nextround.daemon.cli", "-c", str(config_path), "run"],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 60
            while "ready:" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2.0)
            results["daemon_after_start_mb"] = round(rss_mb(process.pid), 1)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)

        config = load_config(config_path)
        store = Store.open(config.database_path)
        engine = Engine(config, get_model(ModelSettings(config.state_dir, DEFAULT_THRESHOLD)))
        session = open_session(config)
        now = datetime.now(UTC)
        engine.poll_once(session.mailbox, store, session.folders, now)
        results["cycles_before_mb"] = round(rss_mb(), 1)
        peak = 0.0
        samples: list[tuple[int, float]] = []
        started = time.monotonic()
        for cycle in range(args.cycles):
            if cycle % max(1, args.cycles // 10) == 0:
                samples.append((cycle, round(rss_mb(), 1)))
            if cycle % 50 == 0:
                user.append("INBOX", rejection(1000 + cycle))
            now += timedelta(minutes=5)
            engine.poll_once(session.mailbox, store, session.folders, now)
            peak = max(peak, rss_mb())
        results["cycles"] = args.cycles
        results["cycles_seconds"] = round(time.monotonic() - started, 1)
        results["cycles_after_mb"] = round(rss_mb(), 1)
        results["samples"] = [*samples, (args.cycles, results["cycles_after_mb"])]
        results["cycles_peak_mb"] = round(peak, 1)
        session.close()
        store.close()
    finally:
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"daemon after start: {results['daemon_after_start_mb']} MB RSS; cycle loop: "
        f"{results['cycles_before_mb']} MB before, {results['cycles_after_mb']} MB after "
        f"{results['cycles']:.0f} cycles (peak {results['cycles_peak_mb']} MB, "
        f"{results['cycles_seconds']} s)"
    )
    print("RSS by cycle: " + ", ".join(f"{cycle}: {mb}" for cycle, mb in results["samples"]))
    out = REPO / "bench" / "results" / "memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
