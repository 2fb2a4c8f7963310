#!/usr/bin/python3
"""Reads a safetensors file (a Switchyard checkpoint, executor/train/checkpoint.hpp) with NumPy only.

    /usr/bin/python3 tests/reference/read_safetensors.py FILE            names, dtypes, shapes
    /usr/bin/python3 tests/reference/read_safetensors.py FILE --json     everything as JSON, values included

As a module: tensors, metadata = read_safetensors(path), tensors a dict name -> numpy array (F32
and BF16 as float32, I32 as int32), metadata a dict of strings. The format: an unsigned 64-bit
little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__":
{...}}, then the data, offsets relative to its start. The "checksum" metadata (FNV-1a 64 of the
data) is verified when present.
"""
import json
import struct
import sys

import numpy as np

_DTYPES = {"F32": np.dtype("<f4"), "I32": np.dtype("<i4"), "BF16": np.dtype("<u2")}


def _fnv1a64(data: bytes) -> int:
    # Vectorised FNV-1a would reorder the xor/multiply chain; it is sequential by definition.
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def read_safetensors(path, verify_checksum=True):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors header")
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    metadata = header.pop("__metadata__", {})
    if verify_checksum and "checksum" in metadata:
        got = f"{_fnv1a64(data):016x}"
        if got != metadata["checksum"]:
            raise ValueError(f"{path}: checksum {metadata['checksum']} does not match the data ({got})")
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = _DTYPES[entry["dtype"]]
        array = np.frombuffer(data[begin:end], dtype=dtype).reshape(entry["shape"])
        if entry["dtype"] == "BF16":  # the top 16 bits of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array
    return tensors, metadata


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    # The checksum is a byte loop, slow in Python: verified for files up to 16 MiB.
    path = sys.argv[1]
    import os

    tensors, metadata = read_safetensors(path, verify_checksum=os.path.getsize(path) <= 16 << 20)
    if "--json" in sys.argv[2:]:
        out = {
            "metadata": metadata,
            "tensors": {
                name: {"dtype": str(a.dtype), "shape": list(a.shape), "values": [float(x) for x in a.ravel()]}
                for name, a in tensors.items()
            },
        }
        json.dump(out, sys.stdout)
        print()
    else:
        for name, a in tensors.items():
            print(f"{name:60s} {str(a.dtype):8s} {list(a.shape)}")
        for key in ("format", "step", "data_epoch", "data_example"):
            if key in metadata:
                print(f"{key}: {metadata[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
