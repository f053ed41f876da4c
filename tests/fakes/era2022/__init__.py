"""Fakes of the vendor APIs as their earliest documents describe them (2022).

Same module names as the current-era fakes one level up; tests/edge/conftest.py's
``vendor_fakes_2022`` fixture puts this directory first on sys.path. Each fake has only what its
era had: a fake that mixes eras hides exactly the bugs a user of the other era meets.
"""
