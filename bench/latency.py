"""IDLE latency: how long from a rejection landing in INBOX to its draft in Drafts.

    python bench/latency.py [--deliveries 50]

Starts a Dovecot (tests/dovecot.py) and `nextround run` as a real process (IDLE on, polling
every 10 minutes so only IDLE can explain a fast draft), then delivers rejections one at a time
and waits for each draft. Prints p50/p95/max in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from dovecot import Dovecot  # noqa: E402

from nextround.daemon.config import DEFAULT_THRESHOLD  # noqa: E402
from nextround.daemon.training import ModelSettings, get_model  # noqa: E402


def rejection(number: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"Recruiter {number} <recruiter{number}@company{number}.example>"
    message["To"] = "alex@example.org"
    message["Subject"] = f"Your application to Company {number}"
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=f"company{number}.example")
    message.set_content(
        f"Hi Alex,\n\nThank you for interviewing with us for the Data Engineer role at Company "
        f"{number}. After careful consideration we have decided to move forward with another "
        "candidate. We wish you the best in your search.\n\nBest regards,\nJordan\n"
    )
    return message.as_bytes()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=50)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="nextround-latency-"))
    server = Dovecot.start()
    process: subprocess.Popen[bytes] | None = None
    try:
        user = server.add_user("latency@example.org")
        state = workdir / "state"
        get_model(ModelSettings(state, DEFAULT_THRESHOLD))  # train before timing anything
        password = workdir / "password"
        password.write_text(user.password)
        password.chmod(0o600)
        config = workdir / "config.toml"
        config.write_text(
            f'[imap]\nhost = "{server.host}"\nport = {server.port_plain}\nsecurity = "plain"\n'
            f'username = "{user.username}"\npassword_file = "{password}"\n\n'
            f'[identity]\nname = "Alex Doe"\nemail = "{user.username}"\n\n'
            f'[state]\ndatabase = "{state / "state.db"}"\n\n'
            '[schedule]\npoll_interval = "10m"\nidle = true\n'
        )
        log = (workdir / "daemon.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "nextround.daemon.cli", "-c", str(config), "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )
        deadline = time.monotonic() + 60
        while "ready:" not in (workdir / "daemon.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        latencies = []
        for number in range(args.deliveries):
            before = len(user.uids("Drafts"))
            started = time.monotonic()
            user.append("INBOX", rejection(number))
            while len(user.uids("Drafts")) == before:
                if time.monotonic() - started > 60:
                    raise SystemExit(f"delivery {number}: no draft after 60 s")
                time.sleep(0.02)
            latencies.append(time.monotonic() - started)
            time.sleep(0.3)
        result = {
            "deliveries": len(latencies),
            "p50_s": round(statistics.median(latencies), 3),
            "p95_s": round(percentile(latencies, 0.95), 3),
            "max_s": round(max(latencies), 3),
        }
        print(
            f"IDLE latency over {result['deliveries']} deliveries: p50 {result['p50_s']} s, "
            f"p95 {result['p95_s']} s, max {result['max_s']} s (cpus {os.cpu_count()}, "
            f"load {os.getloadavg()[0]:.1f})"
        )
        out = REPO / "bench" / "results" / "latency.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        return 0
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
