"""RouteHead training: QRHead-style heads, pseudo-label search, the router and the shared part of its score, and adaptation to a corpus."""
