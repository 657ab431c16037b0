#!/usr/bin/env python3
"""Prints the sha256 of each checkpoint's canonical form: the tensors' bytes and the header with
its keys sorted, whatever order the writer put them in. Checkpoints written before the header
was made deterministic (safetensors serialises its metadata from a HashMap, whose order changes
from process to process) are compared with later ones this way.

Usage: tools/checkpoint-digest.py FILE.safetensors..."""
import hashlib, json, struct, sys

for path in sys.argv[1:]:
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    print(hashlib.sha256(canonical + raw[8 + n :]).hexdigest(), path)
