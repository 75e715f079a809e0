"""State a user may hand nextround damaged: each gets one clear error, or is mended, and
nothing of the user's is changed (found in review, session 14)."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from nextround.classifier.persist import key_path_for, load_model, save_model
from nextround.daemon.errors import StorageError
from nextround.daemon.store import Store, migrations
from nextround.daemon.training import MODEL_FILE, ModelSettings, current_fingerprint, user_examples


def test_a_database_written_by_a_newer_nextround_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store.open(path).close()
    newest = migrations()[-1][0]
    with sqlite3.connect(path) as connection:
        connection.execute(
            "INSERT INTO schema_migrations VALUES (?, '9999_future.sql', datetime('now'))",
            (newest + 1,),
        )
    connection.close()
    with pytest.raises(StorageError, match=rf"newer nextround \(database schema {newest + 1},"):
        Store.open(path)


def test_a_database_path_naming_a_directory_is_refused_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    folder.chmod(0o755)
    with pytest.raises(StorageError, match="not a file"):
        Store.open(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # was 0600: its files unreachable


def test_a_database_path_naming_another_file_is_refused_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    notes.chmod(0o644)
    with pytest.raises(StorageError, match="not a SQLite database"):
        Store.open(notes)
    assert stat.S_IMODE(notes.stat().st_mode) == 0o644
    assert notes.read_text() == "my notes\n"


@pytest.mark.parametrize("kind", ["dangling link", "directory"])
def test_an_unreadable_example_is_skipped_not_fatal(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "extra" / "rejection"
    folder.mkdir(parents=True)
    broken = folder / "broken.eml"
    if kind == "directory":
        broken.mkdir()
    else:
        broken.symlink_to(tmp_path / "nowhere.eml")
    settings = ModelSettings(tmp_path / "state", 0.55, tmp_path / "extra")
    before = current_fingerprint(settings)  # raised FileNotFoundError: every command failed
    examples, skipped = user_examples(settings)
    assert examples == [] and len(skipped) == 1 and "broken.eml" in skipped[0]
    if kind == "dangling link":  # readable at last: it counts, and the model is retrained
        (tmp_path / "nowhere.eml").write_text("From: a@example.org\nSubject: no\n\nSorry.\n")
        assert current_fingerprint(settings) != before


def test_a_damaged_signing_key_is_replaced_when_the_model_is_written(
    tmp_path: Path, trained_model: Path
) -> None:
    model = load_model(trained_model / MODEL_FILE)
    path = tmp_path / MODEL_FILE
    key = key_path_for(path)
    key.write_bytes(b"x")  # truncated: every training failed on it, for ever
    save_model(model, path, "stamp")
    assert len(key.read_bytes()) == 32 and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert load_model(path, "stamp").threshold == model.threshold
    assert not [name for name in tmp_path.iterdir() if name.name.startswith(".")]
