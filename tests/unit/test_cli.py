"""The CLI contract: help with an example on every command, exit codes."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import CliResult, run_cli

from nextround.daemon import applications as apps
from nextround.daemon.cli import build_parser, main, parse_now
from nextround.daemon.config import load_config
from nextround.daemon.errors import UsageError
from nextround.daemon.init import write_config
from nextround.daemon.lifecycle import State
from nextround.daemon.store import Store


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_command_has_help_and_an_example() -> None:
    parser = build_parser()
    assert "example:" in parser.format_help()
    commands = subcommands()
    assert {"check-config", "once", "status"} <= set(commands)
    helps = {
        action.dest: action.help
        for action in build_parser()._subparsers._group_actions[0]._choices_actions  # type: ignore[union-attr]
    }
    for name, sub in commands.items():
        text = sub.format_help()
        assert helps.get(name), f"{name} has no one-line help"
        assert f"example:\n  nextround {name}" in text or "example:\n  nextround" in text, name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T09:00:00Z", "2026-11-22T09:00:00+00:00"),
        ("2026-11-22T10:00:00+01:00", "2026-11-22T09:00:00+00:00"),
        ("2026-11-22T09:00:00", "2026-11-22T09:00:00+00:00"),
    ],
)
def test_now_is_iso_8601(text: str, expected: str) -> None:
    assert parse_now(text).isoformat() == expected


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["once", "--now", "yesterday"])
    assert caught.value.code == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["no-such-command"])
    assert caught.value.code == 2


def test_every_example_in_help_parses() -> None:
    """A user copies the example: it must be a command line the parser takes."""
    for name, sub in {"": build_parser(), **subcommands()}.items():
        example = sub.epilog.split("example:\n", 1)[1].strip() if sub.epilog else ""
        assert example.startswith("nextround "), name
        parsed = build_parser().parse_args(shlex.split(example)[1:])
        assert parsed.command is not None, example


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["skip", "99999999999999999999999"], "no application has the id"),
        (["close", "0"], "no application has the id"),
        (["skip", "1", "--wait", "-5"], "must be between 0 and 86400 seconds"),
        (["once", "--wait", "nan"], "must be between 0 and 86400 seconds"),
        (["once", "--now", "0001-01-01T00:00:00+01:00"], "--now: out of range"),
        (["once", "--now", "0001-01-01T00:00:00Z"], "--now: out of range"),
    ],
)
def test_out_of_range_numbers_are_usage_errors(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert expected in capsys.readouterr().err


def init(config: Path, *more: str) -> CliResult:
    return run_cli(
        "-c", str(config), "init", "--host", "imap.example.org",
        "--username", "me@example.org", *more,
        *(() if "--name" in more else ("--name", "Alex Doe")),
    )  # fmt: skip


def config_in(directory: Path) -> Path:
    """A config written by init, its state in `directory` (never the user's own)."""
    config = directory / "c.toml"
    assert init(config).code == 0
    with config.open("a") as file:
        file.write(f'\n[state]\ndatabase = "{directory / "state" / "state.db"}"\n')
    return config


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Al\x7fex", "--name: control characters"),
        ("Alex\nDoe", "--name"),
        ("Alex \udcff Doe", "--name: control characters and bytes that are not UTF-8"),
    ],
)
def test_init_refuses_control_characters(tmp_path: Path, name: str, expected: str) -> None:
    result = init(tmp_path / "c.toml", "--name", name)
    assert result.code == 2 and expected in result.err, result.err
    assert "Traceback" not in result.err and not (tmp_path / "c.toml").exists()


def test_init_input_ending_early_is_a_usage_error(tmp_path: Path) -> None:
    def ask(question: str) -> str:
        raise EOFError

    with pytest.raises(UsageError, match="input ended before every question was answered"):
        write_config(tmp_path / "c.toml", {"host": "imap.example.org"}, ask)
    assert not (tmp_path / "c.toml").exists()


def test_init_says_where_the_password_goes_when_it_was_not_given(tmp_path: Path) -> None:
    result = init(tmp_path / "c.toml")
    assert result.code == 0, result.err
    assert "password_file or password_command" in result.out
    assert "NEXTROUND_IMAP_PASSWORD" in result.out


def test_a_reader_that_goes_away_is_no_traceback(tmp_path: Path) -> None:
    """`nextround status | head -1`: the pipe is closed before nextround writes. Without
    PYTHONUNBUFFERED, as users run it: piped output is then flushed at the end."""
    config = config_in(tmp_path)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "nextround.daemon.cli", "-c", str(config), "status"],
            stdout=write, stderr=subprocess.PIPE, timeout=60, check=False, env=env,
        )  # fmt: skip
    finally:
        os.close(write)
    assert done.returncode == 1
    assert b"BrokenPipeError" not in done.stderr, done.stderr.decode()
    assert b"Traceback" not in done.stderr, done.stderr.decode()


@pytest.mark.parametrize(
    "body",
    [
        "Thanks {{ greeting }\n",  # syntax
        "{{ 1 / 0 }}\n",
        "{{ company + 1 }}\n",
        b"Gr\xfc\xdfe {{ greeting }}\n",  # not UTF-8
        "{% if company %}{{ company }}{% else %}{{ compnay }}{% endif %}\n",  # a draft's branch
        "{% if role %}{{ role + ' at ' + company }}{% endif %}\n",  # a role, no company
        "{{ '{0} at {1}'.format(role) }}\n",  # IndexError
    ],
    ids=[
        "syntax",
        "zero-division",
        "type-error",
        "latin-1",
        "unknown-company-branch",
        "role-without-company",
        "index-error",
    ],
)
def test_check_config_renders_the_users_templates(tmp_path: Path, body: str | bytes) -> None:
    config = config_in(tmp_path)
    (tmp_path / "mine").mkdir()
    path = tmp_path / "mine" / "thank_you.txt.j2"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    with config.open("a") as file:
        file.write('\n[templates]\ndir = "mine"\n')
    result = run_cli("-c", str(config), "check-config")
    assert result.code == 2, result.err
    assert f"{config}: [templates] dir: " in result.err and "thank_you.txt.j2" in result.err
    assert "Traceback" not in result.err


def test_check_config_names_a_missing_template_directory(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    with config.open("a") as file:
        file.write('\n[templates]\ndir = "nowhere"\n')
    result = run_cli("-c", str(config), "check-config")
    assert (
        result.code == 2 and "[templates] dir: " in result.err and "not a directory" in result.err
    )


def test_init_accepts_a_name_with_a_zero_width_non_joiner(tmp_path: Path) -> None:
    name = "Mohammad\u200cReza Tehrani"  # ZWNJ: ordinary in Persian names (Cf, not Cc)
    result = init(tmp_path / "c.toml", "--name", name)
    assert result.code == 0, result.err
    assert load_config(tmp_path / "c.toml").identity.name == name


def _columns(text: str) -> int:
    """Terminal columns, as wcwidth counts them: marks and format characters none."""
    return sum(
        0
        if unicodedata.category(ch) in ("Mn", "Me", "Cf")
        else 2
        if unicodedata.east_asian_width(ch) in "WF"
        else 1
        for ch in text
    )


def test_status_columns_line_up_with_wide_and_combining_characters(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    store = Store.open(load_config(config).database_path)
    now = datetime(2026, 11, 22, tzinfo=UTC)
    companies = [
        "株式会社メルカリ", "Cafe\u0301 Oslo", "Acme", "N" * 45,
        "บริษัท ที่ดี", "सुनील कुमार", "X" * 28 + "ที่YY",
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian, with a ZWNJ
    ]  # fmt: skip
    with store.transaction():
        for number, company in enumerate(companies):
            apps.open_application(
                store, now, State.NEW, company=company, role="Engineer",
                contact_email=f"person{number}@example.org", rejection_message_id=f"<{number}@x>",
            )  # fmt: skip
    store.close()
    result = run_cli("-c", str(config), "status")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    starts = {
        _columns(line[: line.index(" Engineer" if "Engineer" in line else " ROLE")])
        for line in lines
    }
    assert len(starts) == 1, result.out
    assert "N" * 29 + "\u2026" in result.out  # cut at 30 columns, marked
    assert all(f"person{number}@example.org" in result.out for number in range(8))
    assert "X" * 28 + "\u0e17\u0e35\u0e48\u2026" in result.out  # the marks stay with their letter


def test_init_takes_a_relative_password_file_from_where_the_user_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secrets").mkdir()
    result = init(tmp_path / "cfg" / "c.toml", "--password-file", "secrets/pw")
    assert result.code == 0, result.err
    config = load_config(tmp_path / "cfg" / "c.toml")
    assert Path(config.imap.password_file) == tmp_path / "secrets" / "pw"


def test_a_closed_stdout_is_no_traceback(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.stdout.close(); sys.stdout = None; "
         "from nextround.daemon.cli import main; sys.exit(main(sys.argv[1:]))",
         "-c", str(config), "status"],
        stderr=subprocess.PIPE, timeout=60, check=False,
    )  # fmt: skip
    assert b"Traceback" not in done.stderr, done.stderr.decode()


def test_init_where_it_cannot_write_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    result = init(tmp_path / "afile" / "c.toml")
    assert result.code == 1 and "Traceback" not in result.err, result.err
    assert result.err.startswith(f"nextround: {tmp_path / 'afile'}"), result.err


def test_a_nul_in_a_path_key_is_a_config_error(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    config.write_text(config.read_text().replace('database = "', 'database = "\\u0000'))
    result = run_cli("-c", str(config), "status")
    assert result.code == 2, result.err
    assert "[state] database: must not contain a NUL character" in result.err


def test_classify_with_its_input_closed_says_so(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.stdin = None; "
         "from nextround.daemon.cli import main; sys.exit(main(sys.argv[1:]))",
         "-c", str(config), "classify", "--json", "-"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert '"error": "cannot read: no standard input"' in done.stdout, done.stdout
