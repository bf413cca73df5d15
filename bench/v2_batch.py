"""One Open Inference Protocol request with many images: time per request and forward passes.

    python -m bench.v2_batch [--images 32] [--repeats 10] [--tasks salt rocks]

Posts ``--images`` real images (TGS tiles for salt, geological-similarity photos for rocks; random
ones when ../shared/data is absent) as one BYTES tensor to ``/v2/models/<task>/infer`` of an
in-process app serving the committed checkpoints (default batch delay), ``--repeats`` times, and
prints the median and best request time and how many images each forward pass held (the
batcher's mean batch size). Before the batch path each image was its own trip to the batcher.
"""
from __future__ import annotations

import argparse
import base64
import json
import statistics
import time

from bench.section_pictures import models_client
from bench.server import ROOT
from bench.serving import sample_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--tasks", nargs="+", default=["salt", "rocks"])
    args = parser.parse_args()
    with models_client({t: ROOT / "models" / t for t in args.tasks}) as client:
        for task in args.tasks:
            images = sample_images(task, args.images)
            body = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                                           "data": [base64.b64encode(b).decode() for b in images]}]})
            times = []
            for _ in range(args.repeats + 1):      # the first request warms up
                started = time.perf_counter()
                response = client.post(f"/v2/models/{task}/infer", data=body, content_type="application/json")
                times.append((time.perf_counter() - started) * 1e3)
                assert response.status_code == 200, response.get_json()
            (model,) = [m for m in client.get("/api/v1/models").get_json()["models"] if m["task"] == task]
            print(f"{task}: {len(images)} images per v2 request, median {statistics.median(times[1:]):.0f} ms, "
                  f"best {min(times[1:]):.0f} ms; mean batch size {model['mean_batch_size']} "
                  f"(max_batch_size {model['max_batch_size']}, delay {model['max_batch_delay_ms']} ms)")


if __name__ == "__main__":
    main()
