"""Salt answers on real sections and on pictures of them, through the API (the served path).

    python -m bench.section_pictures [--model models/salt] [--data ../shared/data/seismic-real]

For every shared SEG-Y file (its default slice, depth files in the depth domain) and for
pictures rendered from the 2-D line (``tests/section_figures.py``: a plain rendering at one pixel
per sample, a matplotlib figure in grey and one in red-white-blue saved as JPEG), prints the
coverage, the no-data fraction, the confidence and the data area found. The SEG-Y line and its
plain rendering show the same samples: their coverages should agree.
"""
from __future__ import annotations

import argparse
import io
import json
import secrets
import tempfile
from contextlib import contextmanager
from pathlib import Path

from bench.server import ROOT

DEPTH = ("volve10r12-full-z-il10117sub.sgy", "volve10-migvel-depth-sub3d.sgy")
LINE = "volve10r12-full-twt-arb.sgy"


def pictures(data: Path) -> list[tuple[str, bytes, dict]]:
    """(name, bytes, form fields) of every upload measured."""
    from tests.section_figures import read_section, render

    uploads = [(f.name, f.read_bytes(), {"domain": "depth" if f.name in DEPTH else "time"})
               for f in sorted(data.glob("*.sgy"))]
    section = read_section(data / LINE)
    for style in ("plain", "figure-grey", "figure-grey-jpeg90", "figure-rwb", "figure-rwb-jpeg60", "screenshot"):
        uploads.append((f"{LINE} as {style}", render(section, style).data, {}))   # PNG or JPEG bytes
    return uploads


def salt_client(model: Path, click_model: Path | None = None, **config):
    """A Flask test client of an app serving only the salt checkpoint at ``model`` (and the click
    model at ``click_model`` when given): :func:`models_client` with every section answered at once."""
    models = {"salt": model, **({"salt_clicks": click_model} if click_model is not None else {})}
    return models_client(models, **{"SYNC_MAX_TILES": 100_000, **config})


@contextmanager
def models_client(models: dict[str, Path], **config):
    """A Flask test client of an app serving the checkpoint folders ``models`` (task -> folder), in
    process, on a throwaway SQLite database and folders, sign-in off; ``config`` overrides settings
    (``MAX_BATCH_DELAY_MS``, ``INFERENCE_BACKEND``, ...)."""
    from flask_migrate import upgrade

    from app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "models").mkdir()
        for task, folder in models.items():
            (Path(tmp) / "models" / task).symlink_to(Path(folder).resolve())
        app = create_app({"TESTING": True, "SECRET_KEY": secrets.token_hex(16), "INSTANCE_PATH": f"{tmp}/instance",
                          "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/q.db", "MODEL_DIR": f"{tmp}/models",
                          "UPLOAD_FOLDER": f"{tmp}/uploads", "GALLERY_FOLDER": f"{tmp}/gallery",
                          "AUTH_REQUIRED": False, **config}, wait_for_models=True)
        try:
            with app.app_context():
                upgrade()
            yield app.test_client()
        finally:
            app.extensions["engine"].close()


def measure(model: Path, data: Path) -> list[dict]:
    rows = []
    with salt_client(model) as client:
        for name, payload, form in pictures(data):
            filename = name if name.endswith(".sgy") else "picture.png"
            resp = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(payload), filename)], **form})
            body = resp.get_json()
            r = body["results"][0] if resp.status_code == 200 else {"error": body.get("error")}
            if "error" in r:
                rows.append({"input": name, "error": r["error"]})
                continue
            rows.append({"input": name, "colour_scale": r.get("colour_scale"),
                         "size": f"{r['width']}x{r['height']}", "slice": r.get("slice"),
                         "coverage_pct": round(100 * r["coverage"], 2),
                         "no_data_pct": round(100 * r["no_data_fraction"], 1),
                         "confidence": r["confidence"], "data_area": r.get("data_area")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "salt")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "seismic-real")
    args = parser.parse_args()
    for row in measure(args.model, args.data):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
