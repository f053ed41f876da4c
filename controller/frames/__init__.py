"""Frames at rest: the durable frame log (``log``), the browsable file store behind it
(``store``) and the registry's index of stored frames (``index``)."""
