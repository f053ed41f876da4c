"""Entry point MicroPython runs after boot: one wake of the node, then deep sleep.

An unexpected exception must not leave a battery node awake: it is written to ``crash.txt``
(sent as a ``crash`` event by the next wake) and the node sleeps a minute and tries again.
"""

import machine

try:
    import node

    node.main()
except Exception as e:  # last line of defence: log, sleep, retry
    import sys

    try:
        with open("crash.txt", "w") as f:
            sys.print_exception(e, f)
    except OSError:
        pass
    sys.print_exception(e)
    machine.deepsleep(60000)
