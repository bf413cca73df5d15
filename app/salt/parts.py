"""How programs call the salt task (:class:`SaltApi`) and what people see of it (:class:`SaltPage`)."""
from __future__ import annotations

import numpy as np
from flask import url_for

from geovision.rle import rle_decode

from ..tasks.parts import TaskApi, TaskPage
from . import corrections, refine_views, views  # noqa: F401 - their routes join the blueprint (with volume_views')
from .blueprint import bp
from .options import SaltOptions


class SaltApi(TaskApi):
    """``POST /api/v1/salt/<action>``: its form fields, result schema, error codes and v2 tensors."""

    action = "segment"
    aliases = ("refine",)
    v2_output_specs = [("mask", "UINT8", [-1, -1, -1]), ("coverage", "FP32", [-1])]
    fields = {**SaltOptions.openapi_fields(),
              "segy_id": {"type": "string", "description": "a SEG-Y volume stored by an earlier upload (its segy_id): "
                                                           "segment one of its slices without sending it again"}}
    result_schema = {
        "width": {"type": "integer"}, "height": {"type": "integer"},
        "coverage": {"type": "number", "description": "salt fraction of the live (not no-data) pixels, 0..1"},
        "no_data_fraction": {"type": "number", "description": "fraction of the pixels without data (dead traces, "
                                                              "mutes, padding): never salt, shown hatched"},
        "confidence": {"type": "object", "description": "how sure the model is: mean_probability (inside the mask; "
                       "null without salt), uncertain_fraction (live pixels with probability 0.3..0.7), level "
                       "(high >= 0.85, medium >= 0.7, low, none)", "properties": {
                           "mean_probability": {"type": "number", "nullable": True},
                           "uncertain_fraction": {"type": "number"},
                           "level": {"type": "string", "enum": ["high", "medium", "low", "none"]}}},
        "data_area": {"type": "object", "description": "pictures: the plotted section used (pixels, right and "
                      "bottom exclusive; source auto, all or user); outside it is no data"},
        "colour_scale": {"type": "string", "enum": ["grey", "seismic", "bwr"], "description": "pictures: how "
                         "amplitudes were read: grey (luma) or the red-white-blue scale detected (blue low, white "
                         "zero, red high; geovision.colourscale)"},
        "rle_mask": {"type": "string", "description": "Kaggle RLE: column-major, 1-based start/length pairs"},
        "mask_url": {"type": "string", "format": "uri"}, "overlay_url": {"type": "string", "format": "uri"},
        "slice": {"type": "string", "description": "SEG-Y only: the slice segmented"},
        "domain": {"type": "string", "enum": ["time", "depth"], "default": "time",
                   "description": "SEG-Y: the samples are two-way time in ms or depth in m (headers cannot tell)"},
        "segy_id": {"type": "string", "description": "SEG-Y only: the stored volume"},
        "segy_url": {"type": "string", "format": "uri", "description": "slice=volume: salt probability 0..1, IEEE "
                     "float32 SEG-Y with the input's binary and trace headers"},
        "mask_npy_url": {"type": "string", "format": "uri", "description": "slice=volume: uint8 (inlines, "
                         "crosslines, samples), 1 salt, 0 no salt, 255 no data"},
        "salt_fraction": {"type": "number", "description": "slice=volume: salt share of the live samples"},
        "salt_samples": {"type": "integer", "description": "slice=volume: samples above the threshold"},
        "bin_area_m2": {"type": "number", "nullable": True, "description": "slice=volume: one inline x crossline "
                        "bin, from CDP X/Y (null without coordinates)"},
        "salt_area_m2": {"type": "array", "items": {"type": "number"}, "nullable": True,
                         "description": "slice=volume: salt area per time (or depth) sample"},
        "salt_volume": {"type": "number", "nullable": True, "description": "slice=volume: in volume_unit"},
        "volume_unit": {"type": "string", "enum": ["m2*ms", "m3"]},
        "fuse": {"type": "string", "enum": ["inline", "inline+crossline"]},
        "clicks": {"type": "integer", "description": "refine: the clicks the mask was redrawn with"},
    }
    errors = (*SaltOptions.error_codes(), "invalid_segy", "not_amplitudes", "segy_too_large", "volume_too_large")

    def v2_outputs(self, results: list[dict], **options) -> list[tuple[str, str, np.ndarray]]:
        """``mask`` UINT8 [N, H, W] (1 = salt) and ``coverage`` FP32 [N]; the images must share one size."""
        sizes = {(r["height"], r["width"]) for r in results}
        if len(sizes) > 1:
            raise ValueError(f"the images have different sizes {sorted(sizes)}: send one size per request")
        masks = np.stack([rle_decode(r["rle_mask"], (r["height"], r["width"])) for r in results])
        return [("mask", "UINT8", masks.astype(np.uint8)),
                ("coverage", "FP32", np.array([r["coverage"] for r in results], np.float32))]


class SaltPage(TaskPage):
    """The salt task's menu entry, home card, pages and history cell."""

    title = "Salt segmentation"
    blurb = "Seismic tiles or whole sections: salt mask, coverage, Kaggle RLE"
    blueprint = bp

    def history_text(self, summary: dict) -> str:
        if summary.get("slice") == "volume":
            return f"SEG-Y volume: {summary['salt_fraction'] * 100:.2f} % salt"
        where = f"SEG-Y {summary['slice']}: " if summary.get("slice") else ""
        no_data = summary.get("no_data_fraction") or 0.0
        return f"{where}{summary['coverage'] * 100:.2f} % salt" + (f", {no_data * 100:.0f} % no data" if no_data else "")

    def history_url(self, public_id: str) -> str | None:
        return url_for("salt.result", public_id=public_id)
