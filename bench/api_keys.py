"""Requests per second of an API-key request, in process (Flask test client, SQLite file database).

    python -m bench.api_keys [--requests 400]

Times ``GET /api/v1/models`` with ``Authorization: Bearer <key>`` (the key looked up and checked
on each request; its last use written at most once a minute, ``KEY_LAST_USED_EVERY_S``) against
the same route with ``KEY_LAST_USED_EVERY_S=0`` (a database write on every request, as before).
"""
from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path

from bench.server import ROOT


def measure(n: int, every_s: float) -> float:
    from flask_migrate import upgrade

    from app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"TESTING": True, "SECRET_KEY": secrets.token_hex(16), "INSTANCE_PATH": f"{tmp}/instance",
                          "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/k.db", "MODEL_DIR": f"{tmp}/none",
                          "UPLOAD_FOLDER": f"{tmp}/uploads", "GALLERY_FOLDER": f"{tmp}/gallery",
                          "AUTH_REQUIRED": True, "KEY_LAST_USED_EVERY_S": every_s}, wait_for_models=True)
        with app.app_context():
            upgrade()
        runner = app.test_cli_runner()
        runner.invoke(args=["users", "create", "bench"], input="a long password\na long password\n")
        key = runner.invoke(args=["users", "key", "bench"]).output.strip().splitlines()[-1]
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        assert client.get("/api/v1/models", headers=headers).status_code == 200
        started = time.perf_counter()
        for _ in range(n):
            client.get("/api/v1/models", headers=headers)
        rate = n / (time.perf_counter() - started)
        app.extensions["engine"].close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    print(f"models: none ({Path(ROOT).name}); {args.requests} requests each")
    for label, every in (("last use written on every request", 0.0), ("at most once a minute per key", 60.0)):
        print(f"{label}: {measure(args.requests, every):.0f} requests/s")


if __name__ == "__main__":
    main()
