"""``routehead bench``: every re-ranking method side by side on one dataset (:mod:`.runner`)."""
