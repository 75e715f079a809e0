"""`nextround demo` as a newcomer runs it: no config, no account, no network, nothing left behind,
and every draft of the lifecycle shown with its From, To and Subject."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from support import run_cli

# Loaded into the demo's interpreter as `sitecustomize` (found first on PYTHONPATH): every
# attempt to resolve or reach an address off this machine is reported on stderr and refused.
NETWORK_GUARD = """
import ipaddress
import socket
import sys

MARK = "NETWORK-GUARD"


def _is_loopback(host):
    if host is None or str(host).lower() in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def _guard(event, args):
    host = None
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, address = args[0], args[-1]
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return
        if not isinstance(address, tuple):
            return
        host = address[0]
    elif event in (
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyname_ex",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
    ):
        host = args[0][0] if event == "socket.getnameinfo" else args[0]
    else:
        return
    if not _is_loopback(host):
        print(f"{MARK}: {event} {host!r}", file=sys.stderr, flush=True)
        raise OSError(f"{MARK}: {event} to {host!r} refused by the test")


sys.addaudithook(_guard)
"""

SENDER = "Jordan Reyes <jordan.reyes@example.net>"
INTERVIEWER = "Daniel Osei <daniel.osei@tidewaterrobotics.com>"
APPLICATION_CONTACT = "Ines Carvalho <ines.carvalho@lumenhive.com>"
RECRUITER = "Mara Lindqvist <mara.lindqvist@quillfinch.com>"
DRAFT = re.compile(
    r"^  -+ draft for application #(?P<id>\d+): (?P<step>[a-z -]+?) -+\n(?P<body>.*?)^  -{20,}$",
    re.MULTILINE | re.DOTALL,
)


def header(block: str, name: str) -> str:
    match = re.search(rf"^    {name}: (.*)$", block, re.MULTILINE)
    assert match, f"no {name} line in\n{block}"
    return match.group(1)


def processes_in_session(session: int) -> list[str]:
    """Processes still alive in the demo's session (it ran as a session leader)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        fields = text.rpartition(")")[2].split()
        if len(fields) > 3 and int(fields[3]) == session:
            found.append(text.partition(" (")[2].partition(")")[0])
    return found


def clean_environment(tmp_path: Path) -> tuple[dict[str, str], list[Path]]:
    home, temp, guard = tmp_path / "home", tmp_path / "tmp", tmp_path / "guard"
    for directory in (home, temp, guard):
        directory.mkdir()
    (guard / "sitecustomize.py").write_text(NETWORK_GUARD, encoding="utf-8")
    dropped = ("NEXTROUND_", "XDG_", "STATE_DIRECTORY", "CONFIGURATION_DIRECTORY")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(dropped)
        and name not in ("CREDENTIALS_DIRECTORY", "CERT_FILE", "KEY_FILE", "JOURNAL_STREAM")
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        TMPDIR=str(temp),
        PYTHONPATH=os.pathsep.join(filter(None, [str(guard), env.get("PYTHONPATH")])),
    )
    return env, [home, temp]


def test_demo_shows_the_whole_lifecycle_offline_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    env, must_stay_empty = clean_environment(tmp_path)
    kept = tmp_path / "kept"
    demo = subprocess.Popen(
        [sys.executable, "-m", "nextround.daemon.cli", "demo", "--keep", str(kept)],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = demo.communicate(timeout=180)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "NETWORK-GUARD" not in err, err
    assert not err.strip(), f"the demo should log nothing at its default level:\n{err}"
    assert processes_in_session(demo.pid) == [], "the demo left a process behind"
    for directory in must_stay_empty:
        assert list(directory.iterdir()) == [], f"{directory} is not empty"

    assert "training the classifier (first run only)..." in out
    for section in ("1. Your inbox", "2. nextround's first cycle", "7. `nextround status`"):
        assert section in out
    drafts = [
        (
            match["step"],
            header(match["body"], "From"),
            header(match["body"], "To"),
            header(match["body"], "Subject"),
        )
        for match in DRAFT.finditer(out)
    ]
    assert drafts == [
        ("feedback request", SENDER, INTERVIEWER, "Re: Platform Engineer interviews: next steps"),
        (
            "feedback request",
            SENDER,
            APPLICATION_CONTACT,
            "Re: Your application for Analytics Engineer at Lumenhive",
        ),
        # The rejection came from a no-reply Greenhouse address: the draft goes to the
        # recruiter who scheduled the interview.
        ("feedback request", SENDER, RECRUITER, "Re: Your application to Quillfinch"),
        ("follow-up", SENDER, INTERVIEWER, "Re: Platform Engineer interviews: next steps"),
        ("thank-you", SENDER, RECRUITER, "Re: Your application to Quillfinch"),
    ], out
    bodies = {(match["step"], match["id"]): match["body"] for match in DRAFT.finditer(out)}
    assert "\n    Hi Mara,\n" in bodies["feedback request", "4"]
    assert "\n    Hi Mara,\n" in bodies["thank-you", "4"]
    assert "To: Quillfinch <no-reply@us.greenhouse-mail.io>" not in out
    assert "#2 requested -> followed_up (follow_up_due)" in out
    assert "#4 requested -> replied (reply_received)" in out

    # The kept state answers `status` offline (in this process: the demo server is gone).
    status = run_cli("-c", str(kept / "config.toml"), "status", "--json")
    assert status.code == 0, status.err
    rows: list[dict[str, Any]] = json.loads(status.out)
    assert {row["company"]: (row["state"], row["contact"]) for row in rows} == {
        "Fernhill Bank": ("closed", None),
        "Tidewater Robotics": ("followed_up", "daniel.osei@tidewaterrobotics.com"),
        "Lumenhive": ("stale", "ines.carvalho@lumenhive.com"),
        "Quillfinch": ("replied", "mara.lindqvist@quillfinch.com"),
    }
    # The demo's step 7 shows the very table `status` prints.
    table = run_cli("-c", str(kept / "config.toml"), "status")
    assert table.code == 0, table.err
    assert len(table.out.splitlines()) == 1 + len(rows), table.out
    assert table.out in out.split("7. `nextround status`", 1)[1], (table.out, out)
    for directory in must_stay_empty:
        assert list(directory.iterdir()) == [], f"{directory} is not empty"
