"""The salt model's domain check through the API: AUROC between untouched TGS tiles and real sections.

    python -m bench.domain_check [--model models/salt] [--data ../shared/data] [--slices 12]

Positives (in the training domain): the 401 untouched TGS tiles (``train/splits/salt_untouched_ids.txt``,
no choice was made on them, the threshold included). Negatives (real surveys as users have them):
up to ``--slices`` inlines and as many crosslines of every SEG-Y file of ``seismic-real/`` (the
section of a 2-D line; depth files in the depth domain; the velocity cube is refused and left out),
and the pictures of the 2-D line that ``bench.section_pictures`` renders. Each answer's
``confidence.domain.score`` is read; printed: the AUROC (the chance that a real section scores above
a TGS tile), the share flagged "unlike" on each side, and the scores per input kind.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from bench.section_pictures import DEPTH, pictures, salt_client
from bench.server import ROOT


def slices(path: Path, most: int) -> list[str]:
    """Slice specs of a SEG-Y file: evenly spread inlines and crosslines, or ``section``."""
    import segyio

    try:
        with segyio.open(str(path), ignore_geometry=False) as f:
            ilines, xlines = list(f.ilines), list(f.xlines)
    except Exception:  # noqa: BLE001 - no inline/crossline geometry: a 2-D line
        return ["section"]
    if len(ilines) < 2 or len(xlines) < 2:
        return ["section"]
    def spread(lines: list[int]) -> list[int]:
        return [lines[int(i)] for i in np.unique(np.linspace(0, len(lines) - 1, min(most, len(lines))).round())]
    return [f"inline:{n}" for n in spread(ilines)] + [f"crossline:{n}" for n in spread(xlines)]


def measure(model: Path, data: Path, most: int) -> dict[str, list[tuple[str, float, bool]]]:
    out: dict[str, list[tuple[str, float, bool]]] = {"tgs": [], "real": []}
    with salt_client(model) as client:
        def post(kind: str, name: str, form: dict) -> None:
            body = client.post("/api/v1/salt/segment", data=form).get_json()
            if "results" not in body:
                print(name, body)
            for r in body.get("results", []):
                if "confidence" in r and "domain" in r["confidence"]:
                    d = r["confidence"]["domain"]
                    out[kind].append((name, d["score"], d["unlike"]))

        ids = (ROOT / "train" / "splits" / "salt_untouched_ids.txt").read_text().split()
        folder = data / "tgs-salt" / "train" / "images"
        for i in range(0, len(ids), 25):
            post("tgs", "tgs", {"image": [(io.BytesIO((folder / f"{t}.png").read_bytes()), f"{t}.png")
                                          for t in ids[i:i + 25]]})
        real = data / "seismic-real"
        for path in sorted(real.glob("*.sgy")):
            domain = "depth" if path.name in DEPTH else "time"
            first = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(path.read_bytes()), path.name)],
                                                               "domain": domain}).get_json()
            segy_id = (first.get("results") or [{}])[0].get("segy_id")
            if not segy_id:
                continue
            for spec in slices(path, most):
                post("real", path.name, {"segy_id": segy_id, "slice": spec, "domain": domain})
        for name, payload, form in pictures(real)[len(list(real.glob("*.sgy"))):]:
            post("real", "picture: " + name.split(" as ")[-1], {"image": [(io.BytesIO(payload), "picture.png")], **form})
    return out


def main() -> None:
    from sklearn.metrics import roc_auc_score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "salt")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--slices", type=int, default=12)
    args = parser.parse_args()
    found = measure(args.model, args.data, args.slices)
    tgs, real = np.array([s for _, s, _ in found["tgs"]]), np.array([s for _, s, _ in found["real"]])
    auroc = roc_auc_score(np.r_[np.zeros(len(tgs)), np.ones(len(real))], np.r_[tgs, real])
    summary = {"auroc": round(float(auroc), 4), "tgs_tiles": len(tgs), "real_inputs": len(real),
               "tgs_flagged": round(float(np.mean([u for *_, u in found["tgs"]])), 4),
               "real_flagged": round(float(np.mean([u for *_, u in found["real"]])), 4),
               "tgs_median_score": round(float(np.median(tgs)), 2)}
    by_kind: dict[str, list[float]] = {}
    for name, s, _ in found["real"]:
        by_kind.setdefault(name, []).append(s)
    summary["real_median_score"] = {k: round(float(np.median(v)), 2) for k, v in by_kind.items()}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
