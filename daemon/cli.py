"""The `nextround` command line: parse arguments, call the core, turn errors into exit codes.

Exit codes everywhere: 0 ok, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from nextround.daemon import commands
from nextround.daemon.errors import ConfigError, NextroundError, UsageError

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    command: Command = args.command
    try:
        code = command(args)
        # Inside the try: piped output is block-buffered, and the flush at exit would meet
        # a reader gone away outside it.
        if sys.stdout is not None:  # None when started with stdout closed
            sys.stdout.flush()
        return code
    except (ConfigError, UsageError) as error:
        print(f"nextround: {error}", file=sys.stderr)
        return EXIT_USAGE
    except NextroundError as error:
        print(f"nextround: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Its reader went (`nextround status | head`): Python's advice, so that the flush
        # at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE


def configure_logging(level: str) -> None:
    """One line per event on stderr; journald adds its own timestamps."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
            )
        )
    handler.set_name("nextround")
    root = logging.getLogger()
    # Replace only our own handler, so calling main() twice (tests, reload) never doubles lines.
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "nextround"] + [handler]
    root.setLevel(level.upper())
    # mail-parser reports every MIME defect of every message at WARNING; we log what matters.
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    # APScheduler narrates every run, and warns when a wake-up is coalesced into the running
    # cycle (which is what we want); our own lines say what matters.
    logging.getLogger("apscheduler").setLevel(max(root.level, logging.ERROR))
    # imapclient narrates connects and closes at INFO; our own lines say what matters.
    logging.getLogger("imapclient").setLevel(max(root.level, logging.WARNING))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nextround",
        description="Drafts gracious feedback requests after job rejections into your Drafts "
        "folder. It never sends anything itself.",
        epilog="example:\n  nextround -c ~/.config/nextround/config.toml check-config",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        help="configuration file (default: $NEXTROUND_CONFIG, else "
        "$XDG_CONFIG_HOME/nextround/config.toml)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="how much to log on stderr (default: info)",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def add(name: str, handler: Command, help_text: str, example: str) -> argparse.ArgumentParser:
        sub = subparsers.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(command=handler)
        return sub

    add(
        "check-config",
        commands.check_config,
        "parse the config, log in, find Drafts and Sent, and say what was found",
        "nextround check-config",
    )
    once = add(
        "once",
        commands.once,
        "run one cycle: fetch what is new, classify it, draft what is owed",
        "nextround once --now 2026-11-22T09:00:00Z",
    )
    once.add_argument(
        "--dry-run",
        action="store_true",
        help="classify and print what would be drafted; write nothing to IMAP or the database",
    )
    once.add_argument(
        "--now",
        type=parse_now,
        help="the time the cycle takes as now (ISO 8601; naive means UTC; default: the clock)",
    )
    once.add_argument(
        "--wait",
        type=seconds,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for a cycle already running on this state (the service's) "
        "to finish before giving up (default: 60)",
    )
    status = add(
        "status",
        commands.status,
        "show each application: state, contact, what happens next and when",
        "nextround status --json",
    )
    classify = add(
        "classify",
        commands.classify,
        "classify message files (RFC 822; - reads one from stdin) and say what nextround sees",
        "nextround classify --json ~/Downloads/rejection.eml",
    )
    classify.add_argument("paths", nargs="+", metavar="PATH", help="message file, or - for stdin")
    classify.add_argument("--json", action="store_true", help="one JSON object per line")
    classify.add_argument(
        "--explain", action="store_true", help="show the features that weighed most"
    )
    add(
        "train",
        commands.train,
        "train the classifier from the shipped corpus plus your own examples",
        "nextround train",
    )
    for name, event_help in (
        ("skip", "stop drafting for an application (its drafts stay where they are)"),
        ("close", "close an application: nothing more is drafted for it"),
    ):
        sub = add(name, getattr(commands, name), event_help, f"nextround {name} 3")
        sub.add_argument(
            "id", type=application_id, metavar="ID", help="the application's id (see status)"
        )
        sub.add_argument(
            "--wait",
            type=seconds,
            default=60.0,
            metavar="SECONDS",
            help="how long to wait for a cycle running on this state to finish (default: 60)",
        )
    label = add(
        "label",
        commands.label,
        "correct the classifier: file a message from INBOX as an example of a label",
        "nextround label '<CAF1234@mail.example.com>' other",
    )
    label.add_argument("message_id", metavar="MESSAGE_ID", help="the message's Message-ID")
    label.add_argument("label", choices=["rejection", "closed", "other"])
    add(
        "run",
        commands.run,
        "run as a service: poll and IDLE, draft as mail arrives (SIGHUP reloads the config)",
        "nextround --log-level info run",
    )
    init = add(
        "init",
        commands.init,
        "write a first configuration file (asks on a terminal; never overwrites)",
        "nextround init --host imap.example.org --username me@example.org --name 'Alex Doe'",
    )
    init.add_argument("--host", help="the IMAP server")
    init.add_argument("--username", help="the IMAP login name")
    init.add_argument("--name", help="your name, as drafts are signed")
    init.add_argument("--email", help="your address (default: the user name, if it is one)")
    init.add_argument("--security", choices=["tls", "starttls", "plain"], default=None)
    init.add_argument("--port", type=int, default=None)
    secret = init.add_mutually_exclusive_group()
    secret.add_argument("--password-command", help="a command that prints the password")
    secret.add_argument("--password-file", help="a file whose first line is the password")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument(
        "--folders",
        action="store_true",
        help="show the sync state of each folder (with --json: a list of folder objects)",
    )
    from nextround.daemon.demo import run_demo  # light: the demo imports its heavy parts itself

    demo = add(
        "demo",
        run_demo,
        "see the whole lifecycle offline, on a throwaway mailbox: no config, no account",
        "nextround demo",
    )
    demo.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep the demo's state directory in DIR"
    )
    return parser


def application_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an application id: {text!r}") from None
    if not 1 <= value < 2**63:  # what SQLite holds
        raise argparse.ArgumentTypeError(f"no application has the id {value}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86400:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be between 0 and 86400 seconds, not {text}")
    return value


def parse_now(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (example: 2026-11-22T09:00:00Z)"
        ) from None
    try:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        value = datetime.min.replace(tzinfo=UTC)
    # A cycle reaches a century back (backfill_days) and ahead (the lifecycle's delays).
    if not 1900 <= value.year <= 9000:
        raise argparse.ArgumentTypeError(f"out of range (years 1900 to 9000): {text!r}")
    return value


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
