"""RouteHead training: per-query head-score features, static heads, pseudo-label search, the router."""
