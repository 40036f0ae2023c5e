"""WSGI entry point: uWSGI loads `wsgi:application`."""

from app import create_app

application = create_app()
