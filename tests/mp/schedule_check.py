"""Run under MicroPython (host port on the path): print wake.next_wake for the cases in argv[1]
(JSON list of [config dict, now_s, interval_left_ms or null]) as one JSON line."""

import json
import sys

import wake

cases = json.loads(sys.argv[-1])
print("RESULT " + json.dumps([list(wake.next_wake(cfg, now, left)) for cfg, now, left in cases]))
