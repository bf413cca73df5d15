"""How programs call the salt task (:class:`SaltApi`) and what people see of it (:class:`SaltPage`)."""
from __future__ import annotations

import numpy as np
from flask import url_for

from geovision.rle import rle_decode

from ..tasks.parts import TaskApi, TaskPage
from .views import bp


class SaltApi(TaskApi):
    """``POST /api/v1/salt/<action>``: its form fields, result schema, error codes and v2 tensors."""

    action = "segment"
    v2_output_specs = [("mask", "UINT8", [-1, -1, -1]), ("coverage", "FP32", [-1])]
    fields = {
        "threshold": {"type": "number", "minimum": 0, "maximum": 1,
                      "description": "salt probability cut (default: the checkpoint's)"},
        "domain": {"type": "string", "enum": ["time", "depth"], "default": "time",
                   "description": "SEG-Y: the samples are two-way time in ms or depth in m (headers cannot tell)"},
        "data_area": {"type": "string", "default": "auto",
                      "description": "pictures: where the section is plotted. auto (found: margins, titles, labels, "
                                     "colour bars and flat fills of any grey are no data), all (the whole picture), "
                                     "or left,top,right,bottom in pixels (a crop; right and bottom exclusive)"},
        "segy_id": {"type": "string", "description": "a SEG-Y volume stored by an earlier upload (its segy_id): "
                                                     "segment one of its slices without sending it again"},
        "slice": {"type": "string", "pattern": r"^(inline|crossline|time):-?\d+(\.\d+)?$|^section$",
                  "description": "SEG-Y files: inline:N, crossline:N, time:MS (nearest sample) or section; "
                                 "default: the survey's middle inline"},
    }
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
    }
    errors = ("invalid_threshold", "invalid_slice", "invalid_segy", "not_amplitudes", "segy_too_large",
                  "invalid_domain", "invalid_data_area")

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
        where = f"SEG-Y {summary['slice']}: " if summary.get("slice") else ""
        no_data = summary.get("no_data_fraction") or 0.0
        return f"{where}{summary['coverage'] * 100:.2f} % salt" + (f", {no_data * 100:.0f} % no data" if no_data else "")

    def history_url(self, public_id: str) -> str | None:
        return url_for("salt.result", public_id=public_id)
