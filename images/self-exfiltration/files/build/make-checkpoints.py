#!/usr/bin/env python3
"""Build-time only: writes the two small checkpoints of the model store and their SHA256SUMS.

Real safetensors layout (8-byte little-endian header length, JSON header, F16 tensor data),
tiny shapes, deterministic pseudo-random values so the image is reproducible.
"""

import hashlib
import json
import math
import random
import struct
import sys


def tensors(layers: int, dim: int, vocab: int, ffn: int) -> list[tuple[str, list[int]]]:
    out = [("model.embed_tokens.weight", [vocab, dim])]
    for i in range(layers):
        p = f"model.layers.{i}"
        out += [(f"{p}.input_layernorm.weight", [dim])]
        out += [(f"{p}.self_attn.{n}_proj.weight", [dim, dim]) for n in "qkvo"]
        out += [(f"{p}.post_attention_layernorm.weight", [dim])]
        out += [
            (f"{p}.mlp.gate_proj.weight", [ffn, dim]),
            (f"{p}.mlp.up_proj.weight", [ffn, dim]),
            (f"{p}.mlp.down_proj.weight", [dim, ffn]),
        ]
    out += [("model.norm.weight", [dim]), ("lm_head.weight", [vocab, dim])]
    return out


def write(
    path: str, name: str, seed: str, layers: int, dim: int = 128, vocab: int = 1024, ffn: int = 256
) -> None:
    rng = random.Random(seed)
    header: dict = {"__metadata__": {"format": "pt", "model_name": name}}
    offset = 0
    specs = tensors(layers, dim, vocab, ffn)
    for tname, shape in specs:
        size = 2 * math.prod(shape)
        header[tname] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for tname, shape in specs:
            n = math.prod(shape)
            if tname.endswith("norm.weight"):
                values = [1.0 + rng.gauss(0, 0.05) for _ in range(n)]
            else:
                values = [rng.gauss(0, 0.02) for _ in range(n)]
            fh.write(struct.pack(f"<{n}e", *values))


def sums(directory: str, names: list[str]) -> None:
    lines = []
    for n in names:
        with open(f"{directory}/{n}", "rb") as fh:
            lines.append(f"{hashlib.sha256(fh.read()).hexdigest()}  {n}\n")
    with open(f"{directory}/SHA256SUMS", "w") as fh:
        fh.writelines(lines)


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else "/srv/models"
    files = ["config.json", "generation_config.json", "weights.safetensors"]
    for name, layers in (("assistant-v3", 2), ("assistant-v4", 3)):
        write(f"{root}/{name}/weights.safetensors", name, f"corvid/{name}", layers)
        sums(f"{root}/{name}", files)
