"""TALLY_DATABASE_URL: which SQLite file a URL names, and the PRAGMAs a server gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.db import sqlite_file_path, tortoise_config, with_sqlite_defaults


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite://tally.db", "tally.db"),
        ("sqlite://data/tally.db", "data/tally.db"),
        ("sqlite:///srv/tally/tally.db", "/srv/tally/tally.db"),
        ("sqlite:////srv/tally/tally.db", "/srv/tally/tally.db"),
        ("sqlite:////srv/tally/tally.db?synchronous=NORMAL", "/srv/tally/tally.db"),
        ("sqlite://:memory:", ":memory:"),
    ],
)
def test_two_slashes_are_relative_and_three_or_four_are_absolute(url: str, path: str) -> None:
    assert sqlite_file_path(url) == path


@pytest.mark.parametrize("url", ["sqlite://", "sqlite://?synchronous=NORMAL", "sqlite:tally.db"])
def test_a_sqlite_url_without_a_file_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not a SQLite URL"):
        sqlite_file_path(url)


def test_server_pragmas_are_added_and_the_url_keeps_its_slashes() -> None:
    assert with_sqlite_defaults("sqlite:////srv/t.db?synchronous=NORMAL") == (
        "sqlite:////srv/t.db?journal_mode=WAL&busy_timeout=10000&synchronous=NORMAL"
    )


def credentials(url: str) -> dict[str, object]:
    connection: dict[str, dict[str, object]] = tortoise_config(url)["connections"]["default"]
    return connection["credentials"]


def test_a_four_slash_url_opens_the_absolute_file_with_the_server_pragmas(tmp_path: Path) -> None:
    found = credentials(f"sqlite:///{tmp_path}/tally.db?busy_timeout=500")
    assert found["file_path"] == f"{tmp_path}/tally.db"
    assert (found["journal_mode"], found["busy_timeout"], found["synchronous"]) == (
        "WAL",
        "500",
        "FULL",
    )


def test_a_two_slash_url_opens_a_file_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert credentials("sqlite://tally.db")["file_path"] == "tally.db"


@pytest.mark.parametrize("spelling", ["sqlite://{}/missing/t.db", "sqlite:///{}/missing/t.db"])
def test_a_file_in_a_missing_folder_is_refused(tmp_path: Path, spelling: str) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        tortoise_config(spelling.format(tmp_path))


def test_a_folder_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "tally.db").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        tortoise_config(f"sqlite:///{tmp_path}/tally.db")
