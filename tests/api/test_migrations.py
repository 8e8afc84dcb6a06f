"""The committed migrations describe the models exactly, so a deployed database can follow."""

from __future__ import annotations

import pytest
from tortoise import Tortoise
from tortoise.migrations.autodetector import MigrationAutodetector

from models.db import APP, tortoise_config


@pytest.mark.usefixtures("database")
async def test_models_have_no_changes_missing_from_the_migrations(database_url: str) -> None:
    apps = tortoise_config(database_url)["apps"]
    detector = MigrationAutodetector(Tortoise.apps, {APP: apps[APP]})
    pending = await detector.changes()
    assert [writer.name for writer in pending] == [], "run `make migrations` and commit them"
