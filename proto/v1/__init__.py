"""Generated protobuf modules of the camfleet v1 wire contract (do not edit: see generate.py)."""
