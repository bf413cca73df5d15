"""Latency of one whale identification through the API against the full gallery.

    python bench/whales_latency.py [--data ../shared/data/whales] [--queries 40]

Builds the whale gallery of every ``train.csv`` photo (4,946 with the shared data: embedding,
pHash and local features, with a progress bar) in a temporary folder, then posts ``--queries``
photos one at a time to ``/api/v1/whales/identify`` (Flask test client, the app's real
handlers, the committed checkpoint) and prints p50 / p90 / max in seconds and the gallery
build time.
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from flask_migrate import upgrade

from app import create_app

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "whales")
    parser.add_argument("--queries", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(wait_for_models=True, config={"TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "bench",
                          "AUTH_REQUIRED": False,   # the bench calls the API anonymously
                          "INSTANCE_PATH": f"{tmp}/instance", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/b.db",
                          "UPLOAD_FOLDER": f"{tmp}/uploads", "GALLERY_FOLDER": f"{tmp}/gallery",
                          "MODEL_DIR": str(ROOT / "models")})
        with app.app_context():
            upgrade()   # the database tables (Alembic)
        t = time.perf_counter()
        result = app.test_cli_runner().invoke(args=["gallery", "build", "whales", "--data", str(args.data)])
        assert result.exit_code == 0, result.output
        build_s = time.perf_counter() - t
        photos = sorted((args.data / "images").glob("*.jpg"))[::max(1, len(list((args.data / "images").glob("*.jpg")))
                                                                    // args.queries)][:args.queries]
        client, times = app.test_client(), []
        for path in photos:
            t = time.perf_counter()
            r = client.post("/api/v1/whales/identify", data={"image": [(io.BytesIO(path.read_bytes()), path.name)]})
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.data
        first = times.pop(0)   # builds the descriptor index of the gallery version
        print(f"gallery build: {build_s:.1f} s; first query (index build): {first:.2f} s")
        print(f"identify ({len(times)} queries): p50 {np.percentile(times, 50):.2f} s, "
              f"p90 {np.percentile(times, 90):.2f} s, max {max(times):.2f} s")
        app.extensions["engine"].close()


if __name__ == "__main__":
    main()
