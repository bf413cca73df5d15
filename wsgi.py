"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app`` (models load in each worker)."""
from app import create_app

app = create_app()
