"""Salt segmentation: handler (:mod:`.handler`), pages (:mod:`.views`), SEG-Y reading
(:mod:`.segy`) and storage (:mod:`.volumes`), ``flask predict salt`` (:mod:`.commands`)."""
