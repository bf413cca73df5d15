"""Rock classification: handler (:mod:`.handler`) and the page that also shows similar images."""
