"""The app for `uvicorn api.asgi:app` (an import string, so that --workers can fork)."""

from api.app import create_app

app = create_app()
