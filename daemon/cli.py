"""The `nextround` command line: parse arguments, call the core, turn errors into exit codes.

Exit codes everywhere: 0 ok, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nextround.daemon.config import (
    DEFAULT_THRESHOLD,
    Config,
    default_config_path,
    default_state_dir,
    load_config,
)
from nextround.daemon.credentials import describe_password_source
from nextround.daemon.errors import ConfigError, NextroundError, UsageError
from nextround.daemon.store import Store
from nextround.daemon.training import ModelSettings

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    command: Command = args.command
    try:
        return command(args)
    except (ConfigError, UsageError) as error:
        print(f"nextround: {error}", file=sys.stderr)
        return EXIT_USAGE
    except NextroundError as error:
        print(f"nextround: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


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
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def add(name: str, handler: Command, help_text: str, example: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
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
        cmd_check_config,
        "parse the config, log in, find Drafts and Sent, and say what was found",
        "nextround check-config",
    )
    once = add(
        "once",
        cmd_once,
        "run one cycle: fetch what is new and record it",
        "nextround once --now 2026-11-22T09:00:00Z",
    )
    once.add_argument(
        "--now",
        type=parse_now,
        help="the time the cycle takes as now (ISO 8601; naive means UTC; default: the clock)",
    )
    status = add(
        "status",
        cmd_status,
        "show what nextround tracks",
        "nextround status --folders --json",
    )
    classify = add(
        "classify",
        cmd_classify,
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
        cmd_train,
        "train the classifier from the shipped corpus plus your own examples",
        "nextround train",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument(
        "--folders",
        action="store_true",
        help="show the sync state of each folder (with --json: a list of folder objects)",
    )
    return parser


def parse_now(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (example: 2026-11-22T09:00:00Z)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def load(args: argparse.Namespace) -> Config:
    path: Path = args.config or default_config_path()
    return load_config(path.expanduser())


def load_optional(args: argparse.Namespace) -> Config | None:
    """The config when one was named or exists; commands that work offline accept none."""
    if args.config is not None or os.environ.get("NEXTROUND_CONFIG"):
        return load(args)
    path = default_config_path()
    return load_config(path) if path.exists() else None


def model_settings(config: Config | None) -> ModelSettings:
    if config is None:
        return ModelSettings(state_dir=default_state_dir(), threshold=DEFAULT_THRESHOLD)
    extra = config.classifier.extra_examples
    return ModelSettings(
        state_dir=config.state_dir,
        threshold=config.classifier.threshold,
        extra_examples=Path(extra) if extra else None,
    )


def open_store(config: Config) -> Store:
    return Store.open(config.database_path)


# -- commands ------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    from nextround.daemon.session import open_session

    config = load(args)
    imap = config.imap
    print(f"config       {config.path}")
    print(f"server       {imap.host}:{imap.effective_port} ({imap.security})")
    print(f"password     from {describe_password_source(imap)}")
    session = open_session(config)
    try:
        print(f"login        ok as {imap.username}")
        for role in ("inbox", "drafts", "sent"):
            folder = session.folders[role]
            status = session.mailbox.status(folder.name)
            print(f"{role:<12} {folder.name} ({folder.how}; {status.messages} messages)")
    finally:
        session.close()
    print(f"state        {config.database_path}")
    return EXIT_OK


def cmd_once(args: argparse.Namespace) -> int:
    from nextround.daemon.session import open_session
    from nextround.daemon.sync import run_cycle

    config = load(args)
    now: datetime = args.now or datetime.now(UTC)
    store = open_store(config)
    try:
        session = open_session(config)
        try:
            result = run_cycle(session.mailbox, store, session.folders, config.sync, now)
        finally:
            session.close()
    finally:
        store.close()
    print(f"cycle at {now.isoformat()}: {result.summary()}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    config = load(args)
    store = open_store(config)
    try:
        folders = [
            {
                "folder": row.folder,
                "role": row.role,
                "uidvalidity": row.uidvalidity,
                "last_uid": row.last_uid,
                "messages": row.messages,
                "skipped": row.skipped,
                "synced_at": row.synced_at,
            }
            for row in store.folder_counts()
        ]
        skipped = store.unparsable()
    finally:
        store.close()
    applications: list[dict[str, Any]] = []
    if args.json:
        print(json.dumps(folders if args.folders else applications, indent=2))
        return EXIT_OK
    if not folders:
        print("nothing synced yet: run `nextround once`")
        return EXIT_OK
    print(f"{'ROLE':<8} {'FOLDER':<20} {'MESSAGES':>8} {'SKIPPED':>8}  LAST SYNC")
    for folder in folders:
        print(
            f"{folder['role']:<8} {folder['folder']:<20} {folder['messages']:>8} "
            f"{folder['skipped']:>8}  {folder['synced_at']}"
        )
    if skipped and args.folders:
        print("\nskipped messages (newest first):")
        for folder_name, uid, message_id, error in skipped:
            print(f"  {folder_name} UID {uid} {message_id}: {error}")
    return EXIT_OK


def cmd_classify(args: argparse.Namespace) -> int:
    from nextround.classifier.analyse import analyse
    from nextround.daemon.parse import parse_message
    from nextround.daemon.training import get_model

    config = load_optional(args)
    model = get_model(model_settings(config))
    user = [config.identity.email] if config else []
    paths: list[str] = args.paths
    if paths.count("-") > 1:
        raise UsageError("- (stdin) can be given once")
    rows: list[dict[str, Any]] = []
    # Chunks keep memory bounded for thousands of files while still predicting in batches.
    for start in range(0, len(paths), 256):
        chunk = paths[start : start + 256]
        parsed: list[tuple[int, Any]] = []
        results: list[dict[str, Any]] = []
        for index, path in enumerate(chunk):
            try:
                raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
                parsed.append((index, parse_message(raw)))
                results.append({"path": path})
            except OSError as error:
                results.append({"path": path, "error": f"cannot read: {error.strerror}"})
            except NextroundError as error:
                results.append({"path": path, "error": str(error)})
        analyses = analyse([message for _, message in parsed], model, user_addresses=user)
        for (index, message), analysis in zip(parsed, analyses, strict=True):
            results[index].update(analysis.as_json())
            if args.explain:
                results[index]["explain"] = [
                    [name, round(weight, 4)] for name, weight in model.explain(message)
                ]
        rows.extend(results)
        if args.json:
            for row in results:
                print(json.dumps(row, ensure_ascii=False))
    if not args.json:
        print_classification_table(rows, args.explain)
    return EXIT_OK


def print_classification_table(rows: list[dict[str, Any]], explain: bool) -> None:
    print(f"{'LABEL':<10} {'SCORE':>5} {'STAGE':<11} {'COMPANY':<22} {'REPLY-TO':<28} PATH")
    for row in rows:
        if "error" in row:
            print(f"{'error':<10} {'':>5} {'':<11} {'':<22} {'':<28} {row['path']}: {row['error']}")
            continue
        print(
            f"{row['label']:<10} {row['score']:>5.2f} {row['stage'] or '-':<11} "
            f"{(row['company'] or '-')[:22]:<22} {(row['reply_to'] or '-')[:28]:<28} {row['path']}"
        )
        if row["role"]:
            print(f"{'':<10} {'':>5} role: {row['role']}")
        if row["no_feedback_policy"]:
            print(f"{'':<10} {'':>5} says it gives no individual feedback")
        if explain:
            for name, weight in row["explain"]:
                print(f"{'':<10} {'':>5}   {weight:+.3f}  {name}")


def cmd_train(args: argparse.Namespace) -> int:
    from nextround.daemon.training import train_and_save

    _, report = train_and_save(model_settings(load_optional(args)))
    labels = ", ".join(f"{count} {label}" for label, count in report.by_label.items())
    print(f"trained on {report.examples} examples ({labels}) in {report.seconds:.1f} s")
    print(f"your own examples: {report.user_examples}; skipped: {len(report.skipped)}")
    for problem in report.skipped:
        print(f"  skipped {problem}")
    print(f"model: {report.path} (fingerprint {report.fingerprint})")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
