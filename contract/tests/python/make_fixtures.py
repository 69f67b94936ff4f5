"""Writes sketches made by Apache DataSketches for Python (the C++ library) as golden fixtures.

Run from this folder's parent with the pinned package:
    pip install datasketches==5.2.0 && python python/make_fixtures.py fixtures
The Rust test `golden::python_made_sketches_decode_to_their_recorded_estimates` reads them.
Estimates are recorded for the bytes with the out-of-order flag set, which is how crowdflow
reads every sketch (composite estimator; see contract/src/sketch.rs).
"""
import json
import os
import sys

import datasketches as ds

LG_K = 14


def order_independent(data: bytes) -> bytes:
    data = bytearray(data)
    data[5] |= 16
    return bytes(data)


def main(out: str) -> None:
    manifest = []
    for n in (10, 1000, 5000, 100000):
        sketch = ds.hll_sketch(LG_K, ds.tgt_hll_type.HLL_4)
        for i in range(n):
            sketch.update(f"device-{i}")
        data = sketch.serialize_compact()
        name = f"python_hll4_lgk14_{n}.bin"
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        read = ds.hll_sketch.deserialize(order_independent(data))
        manifest.append({
            "file": name,
            "distinct": n,
            "estimate": read.get_estimate(),
            "lower": read.get_lower_bound(2),
            "upper": read.get_upper_bound(2),
            "made_by": f"datasketches {ds.__version__} (Python)" if hasattr(ds, "__version__") else "datasketches 5.2.0 (Python)",
        })
    with open(os.path.join(out, "python_hll4.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
