"""The CLI contract: help with an example on every command, exit codes."""

from __future__ import annotations

import argparse

import pytest

from nextround.daemon.cli import build_parser, main, parse_now


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
