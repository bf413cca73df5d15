"""Salt segmentation handler: image or SEG-Y slice -> tiles -> batched model -> mask, overlay, RLE.

Pre-processing cuts the grey image into overlapping 101x101 tiles (:mod:`geovision.tiling`);
post-processing blends the tile probabilities and thresholds them into the mask, its coverage and
the Kaggle RLE, with the pictures :mod:`app.recorder` keeps (the overlay is drawn on first view).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from flask import current_app, url_for
from PIL import Image
from werkzeug.datastructures import FileStorage, MultiDict

from geovision import domain as domain_check
from geovision import nodata, refine, tiling
from geovision.checkpoint import Checkpoint
from geovision.imaging import ImageError, decode_image
from geovision.rle import rle_encode
from geovision.tiling import OVERLAP

from ..extensions import engine
from ..outcome import Outcome
from ..tasks.handler import Prepared, TaskHandler
from ..tasks.protocols import JobTask
from ..uploads import Upload, upload_root
from . import segy, tile_cache
from .commands import predict
from .inputs import image_input, input_size, segy_input
from .options import SaltOptions
from .parts import SaltApi, SaltPage
from .volume_job import run_volume, volume_units
from .volumes import Refused, StoredSegy, load_segy, read_salt_files

#: The click-conditioned refinement model's checkpoint folder (``MODEL_DIR/salt_clicks``).
CLICK_TASK = "salt_clicks"


class SaltHandler(TaskHandler, JobTask):
    """Salt masks of seismic images of any size and of SEG-Y slices (TGS Salt Identification)."""

    name = "salt"
    api = SaltApi()
    page = SaltPage()
    options_model = SaltOptions

    config_defaults = {"SALT_TILE_CACHE_MB": 256}

    def init_app(self, app) -> None:
        super().init_app(app)
        app.cli.add_command(predict)   # flask predict salt: a Kaggle submission CSV
        tile_cache.init_app(app)

    def outputs_for_many(self, prepared: list[Prepared], priority: int = 0, progress=None) -> list:
        """The released model's tile outputs; with clicks those of the same input answered before
        are reused (:mod:`app.salt.tile_cache`): only the clicked tiles run again, through the click model."""
        return tile_cache.cached_or_run([p.state["cache_key"] for p in prepared], [p.rows for p in prepared],
                                        lambda rows: self.infer_many(rows, priority, progress),
                                        [bool(p.state["clicks"]) for p in prepared])

    def request_limit(self, config: dict) -> int | None:
        """SEG-Y volumes may reach ``SEGY_MAX_BYTES`` (+ ``MAX_CONTENT_LENGTH`` for the form fields);
        each file is then held to its own limit by :func:`app.salt.volumes.read_salt_files`."""
        return ((config.get("MAX_CONTENT_LENGTH") or 0) + (config.get("SEGY_MAX_BYTES") or 0)) or None

    def read_inputs(self, files: list[FileStorage], form: MultiDict | None = None) -> list:
        """The uploaded images and SEG-Y files, and the stored volume named by ``segy_id``."""
        return read_salt_files(files, (form or {}).get("segy_id"))

    def run_many(self, items: list, priority: int = 0, progress=None, **options) -> list:
        """A volume (``slice=volume``) runs line by line (:func:`app.salt.volume_job.run_volume`);
        everything else through the batch path of pictures."""
        spec = options.get("spec")
        if spec is None or spec.kind != "volume":
            return super().run_many(items, priority, progress, **options)
        answers = []
        for item in items:
            try:
                answers.append(run_volume(self, item, progress, priority, **options))
            except ImageError as exc:
                answers.append(exc)
        return answers

    def needs_job(self, spec: segy.SliceSpec | None = None, **_) -> bool:
        """A whole volume is always a background job."""
        return spec is not None and spec.kind == "volume"

    def job_unit(self, options: dict) -> str:
        """A volume job counts lines."""
        return "lines" if options.get("spec") == "volume" else "tiles"

    def preprocess(self, item, ckpt: Checkpoint, threshold: float | None = None,
                   spec: segy.SliceSpec | None = None, domain: str = "time", data_area="auto",
                   fuse: str = "inline", clicks: list | None = None) -> Prepared:
        """Grey image (H, W) in [0, 1] of an upload or a SEG-Y slice, cut into model inputs
        float32 (n, 1, S, S). Raises ImageError (``invalid_slice``, ``image_too_large``, ...)."""
        if isinstance(item, Refused):
            raise item.error
        if isinstance(item, StoredSegy):
            gray, no_data, extra, save_input, axes = segy_input(item, spec, domain)
        else:
            gray, no_data, extra, save_input = image_input(item, data_area)
            axes = {"x": {"label": "column (px)", "first": 0, "step": 1}, "y": {"label": "row (px)", "first": 0, "step": 1}}
        inputs, origins, canvas = tiling.model_inputs(nodata.fill_no_data(gray, no_data), ckpt.meta, OVERLAP)
        height, width = gray.shape
        return Prepared(torch.from_numpy(inputs), (width, height),
                        {"gray": gray, "no_data": no_data, "origins": origins, "canvas": canvas, "extra": extra,
                         "save_input": save_input, "axes": axes, "clicks": clicks,
                         "cache_key": tile_cache.output_key(item, ckpt, spec, domain, data_area)})

    def segment(self, prepared: Prepared, outputs: torch.Tensor, ckpt: Checkpoint,
                threshold: float | None = None, with_confidence: bool = True, clicks: list | None = None,
                click_model: tuple | None = None) -> dict:
        """The answer for one prepared item, pure (no file, no row, no URL): ``probs`` float32 (H, W),
        ``mask`` bool (H, W) (never on no data, no thin band along it), ``no_data`` bool (H, W),
        ``coverage`` (salt share of the live pixels), ``no_data_fraction``, ``rle_mask``,
        ``threshold``, ``confidence`` (None without ``with_confidence``). ``clicks`` (``[{"x", "y",
        "salt"}]``): the mask redrawn around them, by ``click_model`` (``(predict, threshold)``:
        :func:`geovision.refine.refine_with_model`) or else the random-walker baseline
        (:func:`geovision.refine.refine`); ImageError ``invalid_clicks`` for a click outside the
        picture. Used by :meth:`postprocess`,
        the volume job (:mod:`app.salt.volume_job`) and ``flask predict``."""
        state = prepared.state
        threshold = float(ckpt.meta.get("threshold", 0.5)) if threshold is None else threshold
        probs = tiling.probabilities(outputs.float().numpy(), state["origins"], state["canvas"], state["gray"].shape,
                                     ckpt.meta, OVERLAP)
        mask = tiling.threshold_mask(probs, len(state["origins"]), ckpt.meta, threshold)
        no_data = state["no_data"]
        mask &= ~no_data                                   # no data is never salt
        mask = nodata.drop_edge_slivers(mask, no_data)     # nor a thin band along its border
        if clicks:   # the user's clicks redraw the mask around them (geovision.refine)
            try:
                parsed = refine.parse_clicks(clicks, probs.shape)
            except refine.ClickError as exc:
                raise ImageError(str(exc), code="invalid_clicks") from None
            if click_model is None:      # the non-learned baseline
                mask = refine.refine(probs, state["gray"], parsed, threshold, no_data)
            else:                        # the click-conditioned network, on the clicked tiles only
                predict, click_threshold = click_model
                mask = refine.refine_with_model(mask, prepared.rows.numpy(), state["origins"], state["canvas"],
                                                parsed, predict, int(ckpt.meta.get("tile_size", tiling.TILE)),
                                                click_threshold, OVERLAP) & ~no_data
        live = int((~no_data).sum())
        return {"probs": probs, "mask": mask, "no_data": no_data, "threshold": threshold,
                "coverage": float(mask.sum() / live) if live else 0.0, "no_data_fraction": float(no_data.mean()),
                "rle_mask": rle_encode(mask),
                "confidence": self._confidence(prepared, ckpt, probs, mask, ~no_data) if with_confidence else None}

    @staticmethod
    def click_model() -> tuple | None:
        """``(predict, threshold)`` of the click-conditioned model (checkpoint ``salt_clicks`` in
        ``MODEL_DIR``, batched like every model), or None when it is not installed."""
        state = engine.state
        ckpt = state.checkpoints.get(CLICK_TASK)
        if ckpt is None:
            return None
        return (lambda rows: engine.predict(CLICK_TASK, torch.from_numpy(rows)).float().numpy(),
                float(ckpt.meta.get("threshold", 0.5)))

    @staticmethod
    def _confidence(prepared: Prepared, ckpt: Checkpoint, probs, mask, live) -> dict:
        """:func:`geovision.tiling.salt_confidence` plus ``domain`` (:func:`geovision.domain.score`,
        when the checkpoint has ``domain.npz``): an input unlike the training tiles is ``low``."""
        confidence = tiling.salt_confidence(probs, mask, live)
        if "domain_stats" not in ckpt.extra:
            ckpt.extra["domain_stats"] = domain_check.load(ckpt.path)
        stats = ckpt.extra["domain_stats"]
        if stats is None or prepared.rows is None or not len(prepared.rows):
            return confidence
        try:
            check = domain_check.score(ckpt.module, prepared.rows, stats)
        except AttributeError:   # a checkpoint without the U-Net's encoder (the tiny test models)
            return confidence
        return {**confidence, "domain": check, **({"level": "low"} if check["unlike"] else {})}

    def postprocess(self, prepared: Prepared, outputs: torch.Tensor | None, ckpt: Checkpoint,
                    threshold: float | None = None, spec: segy.SliceSpec | None = None,
                    domain: str = "time", data_area="auto", fuse: str = "inline",
                    clicks: list | None = None) -> Outcome:
        """:meth:`segment`'s answer as an :class:`Outcome`: the public fields, the recorded summary
        and the files kept with it (``input.png``, ``mask.png``, ``nodata.png`` when there is no
        data, ``prob.png`` for the figures, ``rle.txt``; ``overlay.png`` is drawn on first view)."""
        state = prepared.state
        answer = self.segment(prepared, outputs, ckpt, threshold, clicks=clicks,
                              click_model=self.click_model() if clicks else None)
        probs, mask, no_data, rle_mask = answer["probs"], answer["mask"], answer["no_data"], answer["rle_mask"]
        coverage, no_data_fraction, confidence = answer["coverage"], answer["no_data_fraction"], answer["confidence"]
        artefacts = {"input.png": lambda path: state["save_input"](path.parent), "mask.png": tiling.mask_image(mask),
                     "prob.png": Image.fromarray(np.round(np.where(no_data, 0, probs) * 255).astype(np.uint8), "L"),
                     "rle.txt": (rle_mask + "\n").encode()}
        if no_data.any():
            artefacts["nodata.png"] = tiling.mask_image(no_data)
        extra = {**state["extra"], **({"clicks": len(clicks)} if clicks else {})}
        summary = {"coverage": coverage, "no_data_fraction": no_data_fraction, "rle_mask": rle_mask,
                   "threshold": answer["threshold"], "tiles": len(state["origins"]), "axes": state["axes"],
                   "confidence": confidence, **extra, **({"clicks_made": clicks} if clicks else {})}
        width, height = prepared.size
        result = {**extra, "axes": state["axes"], "width": width, "height": height, "coverage": round(coverage, 6),
                  "no_data_fraction": round(no_data_fraction, 6), "confidence": confidence, "rle_mask": rle_mask}
        return Outcome(result, summary, artefacts)

    def links(self, answer: dict) -> dict:
        """Adds ``mask_url`` and ``overlay_url``; a volume's ``segy_url``, ``mask_npy_url`` and ``viewer_url``."""
        public_id = answer["prediction_id"]
        if answer.get("slice") == "volume":
            file = lambda name: url_for("salt.result_file", public_id=public_id, name=name, _external=True)  # noqa: E731
            return {**answer, "segy_url": file("salt.sgy"), "mask_npy_url": file("mask.npy"),
                    "viewer_url": url_for("salt.result", public_id=public_id, _external=True)}
        return {**answer,
                "mask_url": url_for("salt.result_file", public_id=public_id, name="mask.png", _external=True),
                "overlay_url": url_for("salt.result_file", public_id=public_id, name="overlay.png", _external=True)}

    # --- background jobs ------------------------------------------------------------------------
    def job_units(self, item, threshold: float | None = None, spec: segy.SliceSpec | None = None,
                  domain: str = "time", data_area="auto", fuse: str = "inline", clicks: list | None = None) -> int:
        """101x101 tiles of an image (from its header) or of a SEG-Y slice (from the geometry).

        Checked here, before a job is created for it: the pixel limit (``image_too_large``, 413,
        from the header or the geometry) and, for a picture that would become a job, that it
        decodes whole (a truncated file is ``invalid_image`` now, not a failed job later). A volume
        counts its lines (:func:`app.salt.volume_job.volume_units`, which checks its limits)."""
        if spec is not None and spec.kind == "volume":
            return volume_units(item, fuse)
        height, width = input_size(item, spec)
        limit = current_app.config["MAX_IMAGE_PIXELS"]
        if height * width > limit:
            raise ImageError(f"the input is {width}x{height} pixels; the limit is {limit:,} pixels",
                             code="image_too_large", status=413)
        units = tiling.tile_count(height, width, OVERLAP)
        if units > current_app.config["SYNC_MAX_TILES"] and isinstance(item, Upload):
            decode_image(item.data, limit)
        return units

    def job_input(self, item, folder: Path) -> dict:
        if isinstance(item, StoredSegy):
            return {"kind": "segy", "segy_id": item.segy_id}
        (folder / "input").write_bytes(item.data)   # the path is kept relative to UPLOAD_FOLDER
        return {"kind": "upload", "filename": item.filename, "path": f"jobs/{folder.name}/input"}

    def job_item(self, saved: dict):
        if saved["kind"] == "segy":
            found = load_segy(saved["segy_id"], check_owner=False)   # the job checked it when created
            if found is None:
                raise ImageError("the SEG-Y volume is no longer stored; upload it again", code="invalid_segy")
            return found[0]
        return Upload(saved["filename"], (upload_root() / saved["path"]).read_bytes())   # absolute: older rows

    def job_options(self, options: dict, restore: bool = False) -> dict:
        spec = options.get("spec")
        domain = options.get("domain", "time")
        area = options.get("data_area", "auto")
        same = {"threshold": options.get("threshold"), "domain": domain, "fuse": options.get("fuse", "inline"),
                "clicks": options.get("clicks") or []}
        if restore:
            return {**same, "spec": segy.parse_slice(spec) if spec else None,
                    "data_area": tuple(area) if isinstance(area, list) else area}
        return {**same, "spec": str(spec) if spec else None, "data_area": list(area) if isinstance(area, tuple) else area}


handler = SaltHandler()
