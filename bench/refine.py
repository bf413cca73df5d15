"""Click-guided salt refinement through ``POST /api/v1/salt/refine``: the benchmarks' click protocol
on TGS tiles, with the committed checkpoint.

    python -m bench.refine [--split train/splits/salt_untouched_ids.txt] [--limit 0] [--max-clicks 20]
                           [--click-model models/salt_clicks | --baseline [--beta 400]] [--out refine.json]

With ``--click-model`` (default: ``models/salt_clicks`` when it is there) the click-conditioned
network answers the clicks; ``--baseline`` measures the random-walker baseline instead.

For each tile the first answer has no click; each next request sends all clicks so far plus one at
the pixel of the largest error region farthest from its border (:func:`geovision.refine.next_click`:
"salt" where salt was missed, "not salt" where it was wrongly marked), until the mask is right or
``--max-clicks``. Prints the TGS metric over all tiles and the mean IoU of the tiles with salt after
0, 1, 2, 3, 5 clicks, NoC@85 and NoC@90 (clicks to reach that IoU, ``--max-clicks`` when never,
tiles with salt), and the refine call's p50/p95 latency on this CPU.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.section_pictures import salt_client
from bench.server import ROOT
from geovision import refine
from geovision.metrics import iou, tgs_image_score
from geovision.rle import rle_decode

STEPS = (0, 1, 2, 3, 5)


def session(client, image: bytes, truth: np.ndarray, max_clicks: int, latencies: list[float]) -> list[np.ndarray]:
    """The masks after 0, 1, ... clicks (fewer when the mask became right)."""
    clicks: list[dict] = []
    masks = []
    while True:
        started = time.perf_counter()
        resp = client.post("/api/v1/salt/refine", data={"image": [(io.BytesIO(image), "tile.png")],
                                                        "clicks": json.dumps(clicks)})
        latencies.append(time.perf_counter() - started)
        if resp.status_code != 200:
            raise RuntimeError(f"the API answered {resp.status_code}: {resp.get_data(as_text=True)[:300]}")
        mask = rle_decode(resp.get_json()["results"][0]["rle_mask"], truth.shape)
        masks.append(mask)
        click = refine.next_click(mask, truth)
        if click is None or len(clicks) >= max_clicks:
            return masks
        clicks.append({"x": click.x, "y": click.y, "salt": click.salt})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "salt")
    parser.add_argument("--split", type=Path, default=ROOT / "train" / "splits" / "salt_untouched_ids.txt")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "tgs-salt")
    parser.add_argument("--limit", type=int, default=0, help="first N tiles only (0: all)")
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--click-model", type=Path, default=ROOT / "models" / "salt_clicks")
    parser.add_argument("--baseline", action="store_true", help="the random-walker baseline, no click model")
    parser.add_argument("--beta", type=float, default=refine.BETA)
    parser.add_argument("--clear-radius", type=int, default=refine.CLEAR_RADIUS)
    parser.add_argument("--sure", type=float, default=refine.SURE)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    refine.BETA, refine.CLEAR_RADIUS, refine.SURE = args.beta, args.clear_radius, args.sure
    ids = args.split.read_text().split()
    ids = ids[:args.limit] if args.limit else ids
    folder = args.data / "train"
    latencies: list[float] = []
    scores = {n: [] for n in STEPS}
    ious = {n: [] for n in STEPS}
    noc85, noc90 = [], []
    click_model = None if args.baseline or not (args.click_model / "model.pt").exists() else args.click_model
    with salt_client(args.model, click_model, MAX_BATCH_DELAY_MS=1) as client:
        for k, tile in enumerate(ids):
            truth = np.asarray(Image.open(folder / "masks" / f"{tile}.png").convert("L")) > 127
            masks = session(client, (folder / "images" / f"{tile}.png").read_bytes(), truth, args.max_clicks, latencies)
            after = lambda n, masks=masks: masks[min(n, len(masks) - 1)]  # noqa: E731 - a right mask stays right
            for n in STEPS:
                scores[n].append(tgs_image_score(truth, after(n)))
                if truth.any():
                    ious[n].append(iou(truth, after(n)))
            if truth.any():
                curve = [iou(truth, after(n)) for n in range(args.max_clicks + 1)]
                noc85.append(refine.clicks_to_reach(curve, 0.85, args.max_clicks))
                noc90.append(refine.clicks_to_reach(curve, 0.90, args.max_clicks))
            if (k + 1) % 50 == 0:
                print(f"{k + 1} tiles: TGS after 3 clicks {np.mean(scores[3]):.4f}", flush=True)
    ordered = sorted(latencies)
    report = {"model": str(args.model), "split": args.split.name, "tiles": len(ids), "tiles_with_salt": len(noc85),
              "method": f"click-conditioned U-Net {click_model} (geovision.refine.refine_with_model)" if click_model else
                        f"random walker on probability and grey, beta {args.beta:g}, clear radius {args.clear_radius}, "
                        f"sure {args.sure:g} (geovision.refine)",
              "tgs_metric": {n: round(float(np.mean(scores[n])), 4) for n in STEPS},
              "mean_iou_salt_tiles": {n: round(float(np.mean(ious[n])), 4) for n in STEPS},
              "noc85": round(statistics.mean(noc85), 2), "noc90": round(statistics.mean(noc90), 2),
              "max_clicks": args.max_clicks, "refine_p50_ms": round(1e3 * ordered[len(ordered) // 2], 1),
              "refine_p95_ms": round(1e3 * ordered[int(0.95 * (len(ordered) - 1))], 1)}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
