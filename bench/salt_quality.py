"""TGS metric of a salt checkpoint through the API on a list of tile ids (the served path: decoding,
padding, the model, no-data rules, thresholds, RLE).

    python -m bench.salt_quality --model runs/salt_holdout/m1_export \
        --split train/splits/salt_untouched_ids.txt [--data ../shared/data/tgs-salt]

``--model`` is a folder with ``model.pt`` and ``meta.json`` (an export or ``models/salt``). The
untouched split (401 tiles, ``train/splits/salt_untouched_ids.txt``) is an honest figure only for
a model whose whole chain ran with ``--holdout`` on it; the released ensemble trained on it.
"""
from __future__ import annotations

import argparse
import io
import json
import secrets
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.server import ROOT
from geovision.metrics import tgs_metric
from geovision.rle import rle_decode


def measure(model: Path, ids: list[str], data: Path, chunk: int = 40) -> float:
    """The TGS metric of ``model`` through ``POST /api/v1/salt/segment`` on ``ids``."""
    from flask_migrate import upgrade

    from app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "models").mkdir()
        (Path(tmp) / "models" / "salt").symlink_to(Path(model).resolve())
        app = create_app({"TESTING": True, "AUTH_REQUIRED": False,   # the bench calls the API anonymously
                          "SECRET_KEY": secrets.token_hex(16), "INSTANCE_PATH": f"{tmp}/instance",
                          "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/q.db", "MODEL_DIR": f"{tmp}/models",
                          "UPLOAD_FOLDER": f"{tmp}/uploads", "GALLERY_FOLDER": f"{tmp}/gallery", "MAX_BATCH_SIZE": 32},
                         wait_for_models=True)
        try:
            with app.app_context():
                upgrade()
            client, folder = app.test_client(), data / "train"
            truth, pred = [], []
            for start in range(0, len(ids), chunk):
                part = ids[start:start + chunk]
                files = [(io.BytesIO((folder / "images" / f"{i}.png").read_bytes()), f"{i}.png") for i in part]
                resp = client.post("/api/v1/salt/segment", data={"image": files}, content_type="multipart/form-data")
                if resp.status_code != 200:
                    raise RuntimeError(f"the API answered {resp.status_code}: {resp.get_data(as_text=True)[:500]}")
                for i, result in zip(part, resp.get_json()["results"]):
                    pred.append(rle_decode(result["rle_mask"], (101, 101)))
                    truth.append(np.asarray(Image.open(folder / "masks" / f"{i}.png").convert("L")) > 127)
            return float(tgs_metric(np.stack(truth), np.stack(pred)))
        finally:
            app.extensions["engine"].close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "salt")
    parser.add_argument("--split", type=Path, default=ROOT / "train" / "splits" / "salt_untouched_ids.txt")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "tgs-salt")
    args = parser.parse_args()
    ids = args.split.read_text().split()
    score = measure(args.model, ids, args.data)
    meta = json.loads((args.model / "meta.json").read_text())
    print(json.dumps({"model": str(args.model), "split": args.split.name, "tiles": len(ids),
                      "tgs_metric": round(score, 4), "holdout": meta.get("data", {}).get("holdout"),
                      "val_tgs_metric": meta.get("metrics", {}).get("val_tgs_metric")}))


if __name__ == "__main__":
    main()
