"""Per-repo test environments, built the way the repo builds itself (``detect``, ``build``)."""
