"""Map the top-level folders onto the ``camfleet.*`` import names.

The repository is laid out by architecture (proto/, controller/, edge/, esp32_node/), while Python
imports them as camfleet.proto, camfleet.controller, ... This file computes the package list from
that mapping so a new sub-package needs no edit here, and works for editable installs and wheels.
"""

import os

from setuptools import setup

AREAS = {
    "camfleet": "camfleet",
    "camfleet.proto": "proto",
    "camfleet.controller": "controller",
    "camfleet.edge": "edge",
    "camfleet.esp32_node": "esp32_node",
    "camfleet.broker_config": "broker_config",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for name, folder in AREAS.items():
        package_dir[name] = folder
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
            if "__init__.py" not in files:
                continue
            rel = os.path.relpath(root, folder)
            packages.append(name if rel == "." else name + "." + rel.replace(os.sep, "."))
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

setup(
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    # Every glob must match a file (tests/test_packaging.py checks): one that matches nothing
    # only misleads the reader about what the wheel carries.
    package_data={
        "camfleet.proto": ["camfleet/v1/*.proto", "v1/*.pyi", "py.typed"],
        # The node's MicroPython files travel as data: the simulator runs them under micropython.
        "camfleet.esp32_node": ["*.py", "host/*.py", "firmware/*"],
        "camfleet.broker_config": ["*.conf"],
        # The dashboard's page, scripts and styles (served by the controller, no build step).
        "camfleet.controller.web": ["static/*"],
    },
    include_package_data=False,
)
