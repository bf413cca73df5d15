"""Whale identification: handler (:mod:`.handler`), gallery building and enrolment
(:mod:`.gallery`), the identification and enrolment pages (:mod:`.views`)."""
