"""Image similarity handler: photo -> embedding (or raw pixels) -> the k nearest gallery images.

The gallery (``<GALLERY_FOLDER>/similarity``, see :mod:`app.gallery`) is built from a folder of
reference images whose sub-folder names are their labels (``flask gallery build similarity``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from flask import current_app
from PIL import Image
from tqdm import tqdm

from geovision.checkpoint import Checkpoint, fingerprint
from geovision.imaging import decode_image, rgb_model_input

from ..extensions import engine
from ..gallery import GalleryUnavailable, check_model, store
from ..gallery_search import SearchOptions, check_thumbnail, search, with_image_urls
from ..outcome import Outcome
from ..tasks.handler import Prepared, TaskHandler
from ..tasks.protocols import GalleryTask
from .parts import SimilarityApi, SimilarityPage

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}


class SimilarityHandler(TaskHandler, GalleryTask):
    """The ``k`` most similar gallery images of a rock photo, by CNN embedding or the seed's methods."""

    name = "similarity"
    api = SimilarityApi()
    page = SimilarityPage()
    options_model = SearchOptions
    gallery_data_key = "GALLERY_DATA"

    def check_ready(self) -> None:
        super().check_ready()
        store().get(self.name)   # 409 before decoding when there is no gallery

    def preprocess(self, item, ckpt: Checkpoint, k: int = 10, method: str = "embedding") -> Prepared:
        gallery = store().get(self.name)
        image = decode_image(item.data, current_app.config["MAX_IMAGE_PIXELS"])
        thumb, x = rgb_model_input(image, ckpt.meta)
        check_thumbnail(gallery, thumb)
        if method == "embedding":   # the pixel searches do not use the model's embeddings
            check_model(gallery, fingerprint(ckpt), self.name)
        rows = torch.from_numpy(x[None]) if method == "embedding" else None
        return Prepared(rows, image.size, {"thumb": thumb, "gallery": gallery})

    def postprocess(self, prepared: Prepared, outputs: torch.Tensor | None, ckpt: Checkpoint,
                    k: int = 10, method: str = "embedding") -> Outcome:
        embedding = outputs[0].float().numpy() if outputs is not None else None
        return Outcome(*search(prepared.state["gallery"], method, k, embedding, prepared.state["thumb"]))

    def links(self, answer: dict) -> dict:
        """Each match gets its gallery thumbnail's ``image_url``."""
        return with_image_urls(answer)

    # --- gallery hooks --------------------------------------------------------------------------
    def build_gallery(self, data: Path, exclude: Path | None) -> int:
        """Embed every image under ``data`` (label = sub-folder name) and swap in the new gallery."""
        skip = set(exclude.read_text().split()) if exclude else set()
        paths = sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                       and str(p.relative_to(data)) not in skip)
        if not paths:
            raise GalleryUnavailable(f"no images under {data}")
        images = (_open(p) for p in paths)
        thumbs, embs = self._embed(images, len(paths))
        items = [{"label": p.parent.name if p.parent != data else "", "path": str(p.resolve())} for p in paths]
        return store().replace(self.name, items, embs, thumbs, model=fingerprint(engine.checkpoint(self.model_task)))

    def add_to_gallery(self, label: str | None, photos: list[tuple[str, Image.Image, bytes | None]]) -> int:
        """Add photos under ``label`` (None: each file's folder name); uploaded ones (bytes given)
        are kept as thumbnails only (``path`` = ``upload:<name>``)."""
        thumbs, embs = self._embed((im for _, im, _ in photos), len(photos))
        items = [{"label": label or Path(name).parent.name,
                  "path": f"upload:{name}" if data is not None else str(Path(name).resolve())}
                 for name, _, data in photos]
        return store().append(self.name, items, embs, thumbs, model=fingerprint(engine.checkpoint(self.model_task)))

    def _embed(self, images, total: int, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 thumbnails (N, S, S, 3), float32 L2-normalised embeddings (N, D)), with a progress bar."""
        ckpt = engine.checkpoint(self.model_task)
        thumbs, embs, batch = [], [], []

        def flush() -> None:   # through the engine: the local batcher or the Ray deployment
            embs.append(engine.predict(self.model_task, torch.from_numpy(np.stack([x for _, x in batch]))).numpy())
            thumbs.extend(t for t, _ in batch)
            batch.clear()

        for image in tqdm(images, total=total, desc=f"embedding {total} images", unit="image", mininterval=2,
                          disable=total < batch_size):
            batch.append(rgb_model_input(image, ckpt.meta))
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
        return np.stack(thumbs), np.concatenate(embs)


def _open(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im


handler = SimilarityHandler()
