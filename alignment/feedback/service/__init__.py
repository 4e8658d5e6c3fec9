"""The feedback service: JSON API and ranking page (`create_app`), and a way to run it.

Modules: `app` (the FastAPI app and its routes), `auth` (roles and tokens), `end_user_routes`
(end users' votes), `hosts` (the Host allowlist), `strict_json` (JSON bodies without
duplicate keys or unsafe numbers), `server` (running it); `static/` holds the ranking page.
"""
from rankact.alignment.feedback.service.app import create_app

__all__ = ["create_app"]
