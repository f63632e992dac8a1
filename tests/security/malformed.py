"""Broken checkpoints, each with the words its clear error must contain."""

from __future__ import annotations

import io
import json
import os
import random
import struct
import zipfile

import torch
from safetensors.torch import save_file


def _st(header: dict | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(raw) if length is None else length
    return struct.pack("<Q", n) + raw + data


def _valid_st() -> bytes:
    buf = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"modeltui-valid-{os.getpid()}.safetensors")
    save_file({"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.int64)}, buf)
    with open(buf, "rb") as f:
        data = f.read()
    os.remove(buf)
    return data


def _valid_pt(**kw) -> bytes:
    buf = io.BytesIO()
    torch.save({"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4, dtype=torch.int64)}, buf, **kw)
    return buf.getvalue()


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def make_malformed(folder: str) -> dict[str, tuple[str, str]]:
    """Write every broken file; return ``name -> (path, words the error must contain)``."""
    os.makedirs(folder, exist_ok=True)
    out: dict[str, tuple[str, str]] = {}

    def put(name: str, data: bytes, expect: str) -> None:
        p = os.path.join(folder, name)
        with open(p, "wb") as f:
            f.write(data)
        out[name] = (p, expect)

    st = _valid_st()
    put("st_header_past_end.safetensors", _st({"a": _entry()}, b"\0" * 8, length=10_000), "truncated")
    put("st_header_claims_gigabytes.safetensors", struct.pack("<Q", 3 << 30) + b"{}" + b"\0" * 64, "header claims")
    put("st_header_claims_exabytes.safetensors", struct.pack("<Q", (1 << 64) - 1) + b"{}", "header claims")
    put("st_invalid_json.safetensors", _st(b'{"a": {"dtype": "F32", "shape": [2], "data_offs'), "not valid JSON")
    put("st_not_utf8.safetensors", _st(b'{"\xff\xfe": 1}'), "not valid JSON")
    put("st_header_is_a_list.safetensors", _st(b"[1, 2, 3]"), "not a JSON object")
    put("st_overlap.safetensors", _st({"a": _entry(offsets=(0, 8)), "b": _entry(offsets=(4, 12))}, b"\0" * 12), "overlap")
    put("st_offsets_out_of_range.safetensors", _st({"a": _entry(offsets=(0, 8))}, b"\0" * 4), "a")
    put("st_offsets_reversed.safetensors", _st({"a": _entry(offsets=(8, 0))}, b"\0" * 8), "a")
    put("st_unknown_dtype.safetensors", _st({"a": _entry(dtype="F33")}, b"\0" * 8), "F33")
    put("st_shape_mismatch.safetensors", _st({"a": _entry(shape=(3,))}, b"\0" * 8), "a")
    put("st_negative_dim.safetensors", _st({"a": _entry(shape=(-2,))}, b"\0" * 8), "a")
    put("st_huge_shape.safetensors", _st({"a": _entry(shape=(1 << 62, 1 << 62))}, b"\0" * 8), "a")
    put("st_bad_metadata.safetensors", _st({"__metadata__": {"k": 1}, "a": _entry()}, b"\0" * 8), "__metadata__")
    put("st_entry_not_object.safetensors", _st({"a": 7}), "a")
    put("st_truncated_data.safetensors", st[:-10], "truncated")
    put("st_empty.safetensors", b"", "not a safetensors file")
    put("st_seven_bytes.safetensors", b"\x10\0\0\0\0\0\0", "not a safetensors file")
    pt = _valid_pt()
    put("pt_truncated_half.pt", pt[: len(pt) // 2], "corrupt or truncated zip archive")
    put("pt_truncated_tail.pt", pt[:-30], "corrupt or truncated zip archive")
    bad_cd = bytearray(pt)
    cd = pt.rfind(b"PK\x01\x02")
    bad_cd[cd + 20: cd + 40] = b"\xff" * 20
    put("pt_corrupt_central_directory.pt", bytes(bad_cd), "corrupt or truncated checkpoint")
    bad_local = bytearray(pt)
    lh = pt.find(b"PK\x03\x04", 10)
    bad_local[lh: lh + 30] = b"\x00" * 30
    put("pt_corrupt_local_header.pt", bytes(bad_local), "corrupt or truncated checkpoint")
    legacy = _valid_pt(_use_new_zipfile_serialization=False)
    put("pt_legacy_truncated.pt", legacy[: len(legacy) - 40], "corrupt or truncated checkpoint")
    rng = random.Random(0)  # fixed garbage: the same message every run
    put("pt_garbage.pt", rng.randbytes(4096), "not a PyTorch checkpoint")
    put("pt_pickle_garbage.pt", b"\x80\x02" + rng.randbytes(2000), "its pickle cannot be read")
    # a zip whose pickle record inflates to 600 MB: must not be read into memory to scan it
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        with zipfile.ZipFile(io.BytesIO(pt)) as src:
            for info in src.infolist():
                if info.filename.endswith("data.pkl"):
                    with z.open(info.filename, "w", force_zip64=True) as w:
                        chunk = b"N" * (1 << 20)
                        for _ in range(600):
                            w.write(chunk)
                else:
                    z.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_STORED)
    put("pt_pickle_bomb.pt", bomb.getvalue(), "far more than a list of tensors needs")
    # sharded checkpoints: index problems
    shards = os.path.join(folder, "missing_shard")
    os.makedirs(shards, exist_ok=True)
    with open(os.path.join(shards, "model-00001-of-00002.safetensors"), "wb") as f:
        f.write(st)
    with open(os.path.join(shards, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {"a": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}, f)
    out["index_missing_shard"] = (os.path.join(shards, "model.safetensors.index.json"), "missing")
    outside = os.path.join(folder, "outside_shard")
    os.makedirs(outside, exist_ok=True)
    with open(os.path.join(outside, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {"a": "../st_truncated_data.safetensors"}}, f)
    out["index_shard_outside"] = (os.path.join(outside, "model.safetensors.index.json"), "outside")
    put("bad.index.json", b"{not json", "not a valid index")
    put("no_map.index.json", b'{"metadata": {}}', "weight_map")
    return out
