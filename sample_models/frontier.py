"""A synthetic frontier-size checkpoint: ~95k tensors in ~160 safetensors shards, as sparse files.

    python -m sample_models.frontier OUTDIR [--layers 64] [--experts 256] [--shards 160]

The shape of DeepSeek-V3 (fp8 ``float8_e4m3fn`` weights with float32
``weight_scale_inv`` block scales, 256 routed experts and one shared expert
per layer, multi-head latent attention, bf16 norms, embedding and head). The
headers and the ``model.safetensors.index.json`` are real; the data sections
are holes (``truncate``), so ~700 GB of checkpoint costs a few MB of disk.
Tests and ``bench/frontier.py`` both use :func:`write_frontier`. Only ``json``
and ``struct``: no torch.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from dataclasses import dataclass, field

#: bytes per element of the safetensors dtype codes used here
_ITEM = {"F8_E4M3": 1, "F8_E5M2": 1, "BF16": 2, "F32": 4, "F16": 2, "U8": 1, "I64": 8, "BOOL": 1}
BLOCK = 128  # the fp8 block size of the scales


@dataclass
class Frontier:
    """What :func:`write_frontier` wrote: enough for a test to check a listing against."""

    folder: str
    shards: list[str]  # file names, in order
    tensors: int = 0
    params: int = 0
    nbytes: int = 0
    last_shard_names: list[str] = field(default_factory=list)
    placement: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # name -> (shard, begin, end)


def _fp8(name: str, rows: int, cols: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """A block-quantised weight and its scales (one float32 per 128x128 block, stored inverted)."""
    return [
        (f"{name}.weight", "F8_E4M3", (rows, cols)),
        (f"{name}.weight_scale_inv", "F32", (-(-rows // BLOCK), -(-cols // BLOCK))),
    ]


def frontier_entries(
    *, layers: int = 64, dense_layers: int = 3, experts: int = 256, hidden: int = 7168,
    moe_inter: int = 2048, inter: int = 18432, vocab: int = 129280,
) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(name, safetensors dtype, shape)`` of every tensor, in the order a save writes them."""
    h = hidden
    out: list[tuple[str, str, tuple[int, ...]]] = [("model.embed_tokens.weight", "BF16", (vocab, h))]
    for i in range(layers):
        p = f"model.layers.{i}"
        out += _fp8(f"{p}.self_attn.q_a_proj", 1536, h)
        out.append((f"{p}.self_attn.q_a_layernorm.weight", "BF16", (1536,)))
        out += _fp8(f"{p}.self_attn.q_b_proj", 24576, 1536)
        out += _fp8(f"{p}.self_attn.kv_a_proj_with_mqa", 576, h)
        out.append((f"{p}.self_attn.kv_a_layernorm.weight", "BF16", (512,)))
        out += _fp8(f"{p}.self_attn.kv_b_proj", 32768, 512)
        out += _fp8(f"{p}.self_attn.o_proj", h, 16384)
        out.append((f"{p}.input_layernorm.weight", "BF16", (h,)))
        out.append((f"{p}.post_attention_layernorm.weight", "BF16", (h,)))
        if i < dense_layers:
            out += _fp8(f"{p}.mlp.gate_proj", inter, h)
            out += _fp8(f"{p}.mlp.up_proj", inter, h)
            out += _fp8(f"{p}.mlp.down_proj", h, inter)
            continue
        out.append((f"{p}.mlp.gate.weight", "BF16", (experts, h)))
        out.append((f"{p}.mlp.gate.e_score_correction_bias", "F32", (experts,)))
        for e in range(experts):
            q = f"{p}.mlp.experts.{e}"
            out += _fp8(f"{q}.gate_proj", moe_inter, h)
            out += _fp8(f"{q}.up_proj", moe_inter, h)
            out += _fp8(f"{q}.down_proj", h, moe_inter)
        q = f"{p}.mlp.shared_experts"
        out += _fp8(f"{q}.gate_proj", moe_inter, h)
        out += _fp8(f"{q}.up_proj", moe_inter, h)
        out += _fp8(f"{q}.down_proj", h, moe_inter)
    out.append(("model.norm.weight", "BF16", (h,)))
    out.append(("lm_head.weight", "BF16", (vocab, h)))
    return out


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def write_shard(path: str, entries: list[tuple[str, str, tuple[int, ...]]], data: dict[str, bytes] | None = None,
                metadata: dict[str, str] | None = None) -> dict[str, tuple[int, int]]:
    """Write one safetensors file whose data section is a hole (except the bytes in ``data``); returns the offsets."""
    header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offsets: dict[str, tuple[int, int]] = {}
    pos = 0
    for name, code, shape in entries:
        n = _numel(shape) * _ITEM[code]
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [pos, pos + n]}
        offsets[name] = (pos, pos + n)
        pos += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    start = 8 + len(raw)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, blob in (data or {}).items():
            b, e = offsets[name]
            if len(blob) != e - b:
                raise ValueError(f"{name}: {len(blob)} bytes given, the tensor holds {e - b}")
            f.seek(start + b)
            f.write(blob)
        f.truncate(start + pos)
    return offsets


def write_frontier(folder: str, *, shards: int = 160, data: dict[str, bytes] | None = None,
                   overrides: dict[str, tuple[str, tuple[int, ...]]] | None = None, **shape) -> Frontier:
    """Write the checkpoint into ``folder`` (sparse shards + index); ``shape``: :func:`frontier_entries`' sizes.

    ``data`` gives real bytes for some tensors (the rest read as zeros);
    ``overrides`` changes the dtype code and shape of some names (an odd expert).
    """
    os.makedirs(folder, exist_ok=True)
    entries = frontier_entries(**shape)
    for i, (name, code, shp) in enumerate(entries):
        if overrides and name in overrides:
            entries[i] = (name, *overrides[name])
    per = -(-len(entries) // shards)
    out = Frontier(folder, [])
    weight_map: dict[str, str] = {}
    groups = [entries[i:i + per] for i in range(0, len(entries), per)]
    for k, group in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{len(groups):06d}.safetensors"
        mine = {n: b for n, b in (data or {}).items() if any(n == g[0] for g in group)} if data else None
        offsets = write_shard(os.path.join(folder, fname), group, mine)
        out.shards.append(fname)
        for name, code, shp in group:
            weight_map[name] = fname
            b, e = offsets[name]
            out.placement[name] = (fname, b, e)
            out.params += _numel(shp)
            out.nbytes += e - b
        if k == len(groups) - 1:
            out.last_shard_names = [g[0] for g in group]
    out.tensors = len(entries)
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": out.nbytes}, "weight_map": weight_map}, f)
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--layers", type=int, default=64)
    ap.add_argument("--experts", type=int, default=256)
    ap.add_argument("--shards", type=int, default=160)
    a = ap.parse_args(argv)
    fr = write_frontier(a.outdir, shards=a.shards, layers=a.layers, experts=a.experts)
    print(f"{a.outdir}: {fr.tensors:,} tensors, {fr.params / 1e9:.0f}B parameters, "
          f"{fr.nbytes / 2**30:.0f} GiB in {len(fr.shards)} sparse shards", file=sys.stderr)


if __name__ == "__main__":
    main()
