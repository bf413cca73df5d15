"""Salt volume jobs: samples per second on the local backend and on Ray Serve, and the effect of
``fuse=inline+crossline``.

    python bench/volume.py [--inlines 16] [--crosslines 200] [--samples 400] [--backend both]
                           [--replicas 1] [--models models] [--segy ../shared/data/seismic-real/f3.sgy]

Writes a synthetic post-stack cube (band-limited reflectivity with a bright dome, float32 SEG-Y),
runs it through the volume pipeline (:func:`app.salt.volume_job.run_volume`, as a job does) with
the committed checkpoint, and prints samples/s for each backend (Ray: a local instance,
``--replicas`` replicas sharing this machine's 2 CPUs). Then, on the cube and on ``--segy`` (a real survey when
present), prints for ``inline`` and ``inline+crossline`` the time and the roughness across inlines:
the mean absolute probability change between neighbouring inlines, and the share of mask samples
that flip between them (no ground truth exists for 3-D salt here: this measures smoothness only).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import segyio

from bench.section_pictures import salt_client

ROOT = Path(__file__).resolve().parent.parent


def synthetic_cube(path: Path, n_il: int, n_xl: int, n_s: int, seed: int = 0) -> None:
    """Layered reflectivity convolved with a Ricker wavelet (25 Hz, 4 ms), a bright chaotic dome."""
    rng = np.random.default_rng(seed)
    t = np.arange(-32, 33) * 0.004
    ricker = (1 - 2 * (np.pi * 25 * t) ** 2) * np.exp(-(np.pi * 25 * t) ** 2)
    layers = rng.normal(0, 1, n_s)
    il, xl = np.meshgrid(np.arange(n_il), np.arange(n_xl), indexing="ij")
    top = (0.45 * n_s - 0.35 * n_s * np.exp(-(((il - n_il / 2) / (0.6 * n_il)) ** 2 + ((xl - n_xl / 2) / (0.3 * n_xl)) ** 2)))
    spec = segyio.spec()
    spec.format, spec.samples, spec.sorting = 5, list(range(0, 4 * n_s, 4)), 2
    spec.ilines, spec.xlines = list(range(1, n_il + 1)), list(range(1, n_xl + 1))
    with segyio.create(str(path), spec) as f:
        for i in range(n_il):
            block = np.empty((n_xl, n_s), np.float32)
            for j in range(n_xl):
                shift = int(0.05 * n_s * np.sin(j / 17 + i / 11))
                trace = np.roll(layers, shift)
                below = np.arange(n_s) > top[i, j]
                trace = np.where(below, rng.normal(0, 2.5, n_s), trace)     # the dome: chaotic and bright
                block[j] = np.convolve(trace, ricker, mode="same")
                f.header[i * n_xl + j] = {segyio.TraceField.INLINE_3D: i + 1, segyio.TraceField.CROSSLINE_3D: j + 1,
                                          segyio.TraceField.CDP_X: 25 * j, segyio.TraceField.CDP_Y: 25 * i}
            f.iline[i + 1] = block


def run(app, path: Path, fuse: str = "inline") -> tuple[float, Path]:
    """Seconds for one volume, and the answer's salt.sgy."""
    from werkzeug.datastructures import FileStorage

    from app.salt.segy import SliceSpec
    from app.salt.volumes import read_salt_files

    with app.app_context():
        with open(path, "rb") as fh:
            (item,) = read_salt_files([FileStorage(fh, filename=path.name)])
        started = time.perf_counter()
        outcome = app.extensions["tasks"]["salt"].run(item, spec=SliceSpec("volume", None), fuse=fuse)
        seconds = time.perf_counter() - started
        out = path.with_name(f"{path.stem}-{fuse.replace('+', '-')}-{app.config['INFERENCE_BACKEND']}.sgy")
        outcome.artefacts["salt.sgy"](out)
        outcome.artefacts["mask.npy"](out.with_suffix(".npy"))
    return seconds, out


def roughness(answer: Path, threshold: float) -> tuple[float, float]:
    """(mean |p(inline k+1) - p(inline k)|, share of mask samples that flip between neighbours)."""
    with segyio.open(str(answer)) as f:
        cube = segyio.tools.cube(f)
    p = cube.astype(np.float32)
    mask = p > threshold
    return float(np.abs(np.diff(p, axis=0)).mean()), float((mask[1:] != mask[:-1]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inlines", type=int, default=16)
    parser.add_argument("--crosslines", type=int, default=200)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--backend", choices=["local", "ray", "both"], default="both")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--segy", type=Path, default=ROOT.parent / "shared" / "data" / "seismic-real" / "f3.sgy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        cube = work / "cube.sgy"
        synthetic_cube(cube, args.inlines, args.crosslines, args.samples)
        samples = args.inlines * args.crosslines * args.samples
        print(f"cube: {args.inlines} inlines x {args.crosslines} crosslines x {args.samples} samples = {samples:,}")
        local = stack.enter_context(salt_client(args.models / "salt")).application
        threshold = float(local.extensions["engine"].checkpoints["salt"].meta.get("threshold", 0.5))
        if args.backend in ("local", "both"):
            run(local, cube)   # warm-up (first passes, oneDNN kernels)
            seconds, _ = run(local, cube)
            print(f"local backend: {seconds:.1f} s, {samples / seconds:,.0f} samples/s")
        if args.backend in ("ray", "both"):
            from ray import serve

            from app.engine import ray_backend

            salt_only = work / "ray-models"     # only the salt model on the cluster: its replicas get the CPUs
            salt_only.mkdir()
            (salt_only / "salt").symlink_to((args.models / "salt").resolve())
            ray_backend.connect("local", num_cpus=2)
            ray_backend.deploy({"MODEL_DIR": str(salt_only), "MAX_BATCH_SIZE": 32, "MAX_BATCH_DELAY_MS": 10,
                                "RAY_NUM_CPUS": 2 / args.replicas, "TORCH_THREADS": max(1, 2 // args.replicas),
                                "RAY_MIN_REPLICAS": args.replicas, "RAY_MAX_REPLICAS": args.replicas,
                                "RAY_SERVE_PORT": 8766})
            with salt_client(args.models / "salt", INFERENCE_BACKEND="ray") as client:
                run(client.application, cube)
                seconds, _ = run(client.application, cube)
            print(f"ray backend ({args.replicas} replica(s)): {seconds:.1f} s, {samples / seconds:,.0f} samples/s")
            serve.shutdown()
        for name, path in [("synthetic cube", cube)] + ([("real survey " + args.segy.name, args.segy)]
                                                        if args.segy.is_file() else []):
            for fuse in ("inline", "inline+crossline"):
                seconds, answer = run(local, path, fuse)
                dp, flips = roughness(answer, threshold)
                print(f"{name}, fuse={fuse}: {seconds:.1f} s; mean |dp| between inlines {dp:.4f}; "
                      f"mask flips between inlines {flips * 100:.2f} %")


if __name__ == "__main__":
    main()
