"""Stand-in for MicroPython's ``btree``, which the unix port lacks: micropython-esp32-ulp's
definesdb imports it for its optional database of ESP-IDF register names. No database exists
here (pir.S defines every register it uses), so opening one fails as a missing file does."""


def open(f):  # noqa: A001 (the name btree has)
    raise OSError(2)
