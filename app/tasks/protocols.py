"""The two optional protocols of a task, apart from its model pipeline (:class:`~app.tasks.handler.TaskHandler`).

A handler mixes in the ones it implements, and the server asks ``handler.supports_jobs`` /
``handler.has_gallery`` (``isinstance`` of these):

- :class:`JobTask`: large inputs run as background jobs (salt): how an input is sized in work
  units, kept on disk for a job and rebuilt from it, and its options stored as JSON;
- :class:`GalleryTask`: the task searches a gallery (similarity, whales): how one is built from a
  folder (``flask gallery build``, the admin API) and grown without retraining.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar


class JobTask:
    """Background jobs of a task (``/api/v1/<task>/jobs``): inputs over ``SYNC_MAX_TILES`` units, or
    options that always need one (:meth:`needs_job`), are queued by :func:`app.serve.serve`."""

    def needs_job(self, **options) -> bool:
        """Whether these options make a background job whatever the input's size (salt volumes)."""
        return False

    def job_unit(self, options: dict) -> str:
        """What a job's ``tiles_done`` counts, from its stored options (:meth:`job_options`)."""
        return "tiles"

    def job_units(self, item: Any, **options) -> int:
        """Work units (rows for the model) of an item, to choose between answering now and a job.
        Raises ImageError for an input refused by its size alone (before any decoding work)."""
        return 1

    def job_input(self, item: Any, folder: Path) -> dict:
        """Keep what a job needs to rebuild ``item`` later (files under ``folder``); JSON-safe."""
        raise NotImplementedError

    def job_item(self, saved: dict) -> Any:
        """The item of :meth:`job_input`'s record."""
        raise NotImplementedError

    def job_options(self, options: dict, restore: bool = False) -> dict:
        """JSON-safe copy of the hooks' options, or (``restore``) the options back from it."""
        return dict(options)


class GalleryTask:
    """A task that searches a gallery (``flask gallery build|add``, the admin gallery API)."""

    name: ClassVar[str]
    #: The form field naming the label of added photos; the config key of the server-side folder
    #: the admin rebuild reads; what a gallery row is called in messages.
    gallery_label_field: ClassVar[str] = "label"
    gallery_data_key: ClassVar[str | None] = None
    gallery_unit: ClassVar[str] = "images"

    def gallery_root(self) -> Path:
        """The gallery link of this task (``<GALLERY_FOLDER>/<name>``)."""
        from ..gallery import store

        return store().folder / self.name

    def build_gallery(self, data: Path, exclude: Path | None) -> int:
        """Embed the reference folder ``data`` as the new gallery; returns its size.
        Raises :class:`app.gallery.GalleryUnavailable` when ``data`` holds nothing usable."""
        raise NotImplementedError

    def add_to_gallery(self, label: str | None, photos: list[tuple[str, Any, bytes | None]]) -> int:
        """Add decoded photos ``(name, PIL image, original bytes or None to keep the file where it
        is)`` under ``label``; returns the new gallery size. Raises ValueError for a bad label."""
        raise NotImplementedError
