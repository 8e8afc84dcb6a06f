"""The config for Tortoise's own CLI, which Makefile's `migrations` target runs:
`tortoise -c models.tortoise_cli.TORTOISE_ORM makemigrations`."""

import os

from models.db import tortoise_config

TORTOISE_ORM = tortoise_config(os.environ.get("TALLY_DATABASE_URL", "sqlite://tally.db"))
