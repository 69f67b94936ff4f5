"""Reads crowdflow sketch bytes and envelopes with Apache DataSketches for Python.

Usage: python read_sketches.py FILE...
A `.bin` file is raw sketch bytes; a `.json` file is a v1 envelope whose sketch is base64.
Prints one JSON object per line: file, lg_k, estimate, lower and upper (2 standard deviations).
"""
import base64
import json
import sys

import datasketches as ds


def sketch_bytes(path: str) -> bytes:
    if path.endswith(".json"):
        with open(path) as f:
            envelope = json.load(f)
        assert envelope["sketch"]["enc"] == "datasketches-hll4", envelope["sketch"]["enc"]
        return base64.b64decode(envelope["sketch"]["b64"])
    with open(path, "rb") as f:
        return f.read()


for path in sys.argv[1:]:
    sketch = ds.hll_sketch.deserialize(sketch_bytes(path))
    print(json.dumps({
        "file": path,
        "lg_k": sketch.lg_config_k,
        "hll4": sketch.tgt_type == ds.tgt_hll_type.HLL_4,
        "estimate": sketch.get_estimate(),
        "lower": sketch.get_lower_bound(2),
        "upper": sketch.get_upper_bound(2),
    }))
