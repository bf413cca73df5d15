"""Image similarity search: handler (:mod:`.handler`) and gallery thumbnails (:mod:`.views`)."""
