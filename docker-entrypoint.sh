#!/bin/sh
# Apply database migrations, then hand the process to gunicorn (PID 1 gets SIGTERM).
set -e
flask --app wsgi db upgrade
exec gunicorn -c gunicorn.conf.py wsgi:app
