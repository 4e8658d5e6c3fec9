"""The feedback service: JSON API and ranking page (`create_app`), and a way to run it."""
from rankact.alignment.feedback.service.app import create_app

__all__ = ["create_app"]
