"""Conformance fakes of camera vendor libraries that cannot run here (no Pi, no MaixCAM).

Each package has the vendor's module name and is put on sys.path by tests/edge/conftest.py's
``vendor_fakes`` fixture. They follow the vendor documentation: same class and method names and
signatures, the documented value ranges (out-of-range values raise as the real library does),
and a ``calls`` list recording every call so tests can check the mapping. Images are real JPEGs
made with Pillow so the agent's pipeline runs end to end.
"""
