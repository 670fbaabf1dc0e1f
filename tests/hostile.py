"""Hostile inputs, generated: config overrides and files, and checkpoints mutated member by member, byte by
byte and re-zipped with hostile headers. Shared by the property tests (tests/test_hostile_*.py) and
benchmarks/bench_hostile.py, which feeds thousands of them to real `mlp` processes.

Every input is a `Hostile` that says whether a correct mlp must refuse it: `invalid=True` (a NaN, a
billion laughs, a member that breaks the checkpoint schema...) or `invalid=None` (a random override, a
flipped byte in a zip field nobody reads: refused or not, never a traceback).
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import types
import typing
import zlib
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from mlpcli.config import Config
from mlpcli.features import EXTRACTORS
from mlpcli.npzfile import load_npz


@dataclass(frozen=True)
class Hostile:
    what: str                          # a short description, the category first
    invalid: bool | None               # True: must be refused; None: either way (never a traceback)
    overrides: tuple[str, ...] = ()    # `key=value` arguments
    config: bytes | None = None        # a config file
    checkpoint: bytes | None = None    # a checkpoint file
    key: str | None = None             # the config key a hostile file sets, if one


# ---------------------------------------------------------------- config keys and values

@dataclass(frozen=True)
class Key:
    """A config key's value type (int, float, str, bool or list; an optional key's inner type) and bounds."""

    kind: type
    meta: typing.Mapping


def config_keys() -> dict[str, Key]:
    """Every config key as it is overridden — `model.hidden`, or `features.extractors[hog].orientations`
    for an extractor's option."""
    keys = dict(_keys(Config))
    for name, extractor in EXTRACTORS.items():
        keys.update({f"features.extractors[{name}].{key}": value for key, value in _keys(extractor.Config)})
    return keys


def _keys(cls: type, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from _keys(hint, f"{prefix}{f.name}.")
            continue
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        yield f"{prefix}{f.name}", Key(typing.get_origin(hint) or hint, f.metadata)


def override(key: str, value: str) -> str:
    """The override setting `key` (an entry of config_keys()) to YAML text `value`."""
    if key.startswith("features.extractors["):
        name, option = key[len("features.extractors["):].split("].")
        return f"features.extractors=[{{{name}: {{{option}: {value}}}}}]"
    return f"{key}={value}"


YAML_NON_FINITE = [".nan", ".NaN", ".NAN", ".inf", ".Inf", "-.inf", "+.inf", "1.0e+400", "-2.5e+999"]
TEXT_NON_FINITE = ["nan", "inf", "-inf", "1e400", "1.0e400", "-1e999", "Infinity", "NaN"]     # YAML strings
BAD_TEXT = ['"a\\0b"', '"\\0"', '"run\\x07"', '"\\ud800"', '"a\\udfffb"', '"line\\nbreak"', '"tab\\there"',
            '"\\x1b[31mred"', '"\\x7f"']


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """A flow YAML value of ~1 KB that names width**levels strings through nested aliases."""
    parts = ["&a0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        parts.append(f"&a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "[" + ", ".join(parts) + "]"


@st.composite
def hostile_values(draw, key: Key | None = None) -> tuple[str, str, bool | None]:
    """(category, YAML text, whether it must be refused) for a value of config key `key`."""
    kind = key.kind if key is not None else None
    category = draw(st.sampled_from(["non-finite", "non-finite-text", "long-int", "nesting", "laughs", "bad-text",
                                     "edge", "huge", "wrong-type", "junk"]))
    if category == "non-finite":
        return category, draw(st.sampled_from(YAML_NON_FINITE)), True
    if category == "non-finite-text":
        return category, draw(st.sampled_from(TEXT_NON_FINITE)), True if kind is float else None
    if category == "long-int":
        digits = draw(st.integers(65, 1500))
        return category, draw(st.sampled_from(["", "-"])) + "9" * digits, True
    if category == "nesting":
        depth = draw(st.integers(33, 600))
        closed = draw(st.booleans())
        return category, "[" * depth + ("]" * depth if closed else ""), True
    if category == "laughs":
        return category, billion_laughs(draw(st.integers(6, 12)), draw(st.integers(9, 12))), True
    if category == "bad-text":
        return category, draw(st.sampled_from(BAD_TEXT)), True
    if category == "edge" and key is not None and _edges(key):
        return category, draw(st.sampled_from(_edges(key))), True
    if category == "huge":
        number = 10 ** draw(st.integers(7, 60))
        text = str(number) if kind is not list else f"[{number}, {number}]"
        bound = key.meta.get("max") if key is not None else None
        too_big = key is not None and (kind in (str, bool) or (bound is not None and number > bound))
        return category, text, True if too_big else None
    if category == "wrong-type":
        text = draw(st.sampled_from(["[]", "{}", "{a: 1}", "[1, [2]]", "true", "'text'", "2001-12-14", "!!binary aGk=",
                                     "[.nan]", "{hog: .inf}"]))
        return category, text, None
    return "junk", draw(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                 max_size=40)), None


def _edges(key: Key) -> list[str]:
    """Values just outside the key's declared range."""
    meta, number = key.meta, float if key.kind is float else int
    edges = [repr(float(meta[bound])) for bound in ("below", "above") if meta.get(bound) is not None]
    if meta.get("max") is not None:
        edges.append(repr(number(meta["max"] * 2 + 1)))
    if meta.get("min") is not None:
        edges.append(repr(number(meta["min"] - 1)))
    return [f"[{edge}]" for edge in edges] if key.kind is list else edges


@st.composite
def hostile_overrides(draw) -> Hostile:
    """One to three overrides, one of them hostile (or an unknown key)."""
    keys = config_keys()
    if draw(st.integers(0, 9)) == 0:
        junk_key = draw(st.sampled_from(["model.hiden", "optim.lrr", "seed.x", "nope", "data..path", ".", "=",
                                         "model.hidden.0", "x" * 5000, "\u00e9t\u00e9"]))
        return Hostile("unknown-key", True, (f"{junk_key}=1",))
    key = draw(st.sampled_from(sorted(keys)))
    category, value, invalid = draw(hostile_values(keys[key]))
    items = [override(key, value)]
    others = [item for item in ("optim.lr=0.01", "seed=3", "model.hidden=[8]") if not item.startswith(key + "=")]
    if draw(st.booleans()):      # a valid override of another key beside it
        items.insert(draw(st.integers(0, 1)), draw(st.sampled_from(others)))
    return Hostile(f"{category}: {key}", invalid, tuple(items))


@st.composite
def hostile_config_files(draw) -> Hostile:
    """A YAML config file with a hostile value at some key, or hostile as a whole."""
    shape = draw(st.sampled_from(["value", "laughs", "deep", "recursive", "not-utf8", "huge", "top-list", "junk",
                                  "aliases", "tabs"]))
    if shape == "value":
        keys = config_keys()
        key = draw(st.sampled_from(sorted(k for k in keys if "[" not in k)))
        category, value, invalid = draw(hostile_values(keys[key]))
        *sections, leaf = key.split(".")
        text = "".join(f"{'  ' * i}{section}:\n" for i, section in enumerate(sections))
        text += f"{'  ' * len(sections)}{leaf}: {value}\n"
        return Hostile(f"{category}: {key} in a file", invalid, config=text.encode("utf-8", "surrogatepass"),
                       key=key)
    if shape == "laughs":
        return Hostile("laughs: file", True, config=f"model:\n  hidden: {billion_laughs()}\n".encode(),
                       key="model.hidden")
    if shape == "deep":
        depth = draw(st.integers(33, 400))
        text = "".join(f"{' ' * i}k{i}:\n" for i in range(depth)) + " " * depth + "v: 1\n"
        return Hostile("nesting: file", True, config=text.encode())
    if shape == "recursive":
        return Hostile("nesting: recursive alias", True, config=b"model:\n  hidden: &h [1, *h]\n", key="model.hidden")
    if shape == "not-utf8":
        return Hostile("encoding: not UTF-8", True, config=b"output:\n  name: caf\xe9\xff\n", key="output.name")
    if shape == "huge":
        return Hostile("size: over 1 MiB", True, config=b"# " + b"x" * (1 << 20) + b"\nseed: 1\n")
    if shape == "top-list":
        return Hostile("wrong-type: top-level list", True, config=b"- seed: 1\n- optim: {lr: 0.1}\n")
    if shape == "aliases":
        return Hostile("aliases: undefined", True, config=b"model: *nowhere\n", key="model")
    if shape == "tabs":
        return Hostile("junk: tabs", True, config=b"model:\n\thidden: [1]\n", key="model")
    return Hostile("junk: bytes", None, config=draw(st.binary(max_size=200)))


# ---------------------------------------------------------------- checkpoints

@dataclass
class Member:
    """One zip entry as written: its name, its stored bytes and every header field a hostile file may set."""

    name: str
    data: bytes                      # as stored (compressed when method is 8)
    size: int                        # declared uncompressed size
    crc: int
    method: int = 0
    flags: int = 0


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=array.dtype.hasobject)
    return buffer.getvalue()


def stored(name: str, content: bytes) -> Member:
    return Member(name, content, len(content), zlib.crc32(content))


def deflated(name: str, content: bytes) -> Member:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return Member(name, compressor.compress(content) + compressor.flush(), len(content), zlib.crc32(content), 8)


def zip_bytes(members: list[Member]) -> bytes:
    """A zip archive of `members`, exactly as given (sizes, CRCs, methods, flags and duplicates included);
    sizes of 4 GiB and more are written in zip64 extra fields."""
    out, central = io.BytesIO(), []
    for m in members:
        name = m.name.encode("utf-8")
        big = m.size >= 0xFFFFFFFF or len(m.data) >= 0xFFFFFFFF
        extra = struct.pack("<HHQQ", 1, 16, m.size, len(m.data)) if big else b""
        sizes = (0xFFFFFFFF, 0xFFFFFFFF) if big else (len(m.data), m.size)
        offset = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if big else 20, m.flags, m.method, 0, 0x21, m.crc,
                              *sizes, len(name), len(extra)) + name + extra + m.data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45 if big else 20, m.flags, m.method, 0,
                                   0x21, m.crc, *sizes, len(name), len(extra), 0, 0, 0, 0o644 << 16, offset)
                       + name + extra)
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), out.tell() - start, start, 0))
    return out.getvalue()


def members_of(arrays: dict[str, np.ndarray]) -> list[Member]:
    return [stored(f"{name}.npy", npy_bytes(array)) for name, array in arrays.items()]


class Template:
    """A valid checkpoint taken apart: its arrays and its meta, to be mutated."""

    def __init__(self, path) -> None:
        self.arrays = load_npz(path)
        self.meta = json.loads(self.arrays["meta"].tobytes())

    def with_meta(self, meta: dict | bytes) -> bytes:
        raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
        return zip_bytes(members_of({**self.arrays, "meta": np.frombuffer(raw, np.uint8)}))

    def with_arrays(self, arrays: dict[str, np.ndarray]) -> bytes:
        return zip_bytes(members_of(arrays))

    @property
    def data_names(self) -> list[str]:
        return sorted(name for name in self.arrays if name != "meta")


META_VALUES = {
    "format_version": [1.0, True, "1", 2, 0, None, [1], 10 ** 30],
    "classes": ["abcd", [], ["a"], ["a", "a"], [1, 2], ["", "b"], ["a\u0000", "b"], ["a\ud800", "b"], None,
                ["x" * 300, "b"], {"a": 1}, [["a"], ["b"]]],
    "image_shape": [None, "16x16", [16, 16], [16, 16, 2], [0, 16, 3], [-16, 16, 3], [16.0, 16, 3], [10 ** 6, 16, 3],
                    [True, 16, 3], [16, 16, 3, 1], {"h": 16}],
    "input_dim": [324.7, 0, -1, 10 ** 10, "768", None, True, [768], 1e400],
    "config": [5, [], "x", None, {"model": {"hidden": "x"}}, {"optim": {"beta1": 1}}, {"reg": 1e400},
               {"model": {"hiden": [3]}}, {"features": {"extractors": "x"}}, {"seed": -1},
               {"model": {"hidden": [10 ** 30]}}, {"output": {"name": "a\u0000b"}}],
    "progress": [[], "x", 5, None, {"epoch": 1}],
}
PROGRESS_VALUES = {
    "epoch": [-5, "2", 2.0, 10 ** 9, None, True],
    "step": [-1, 10 ** 9, "0", 0.5],
    "rng_state": [{}, "x", None, {"bit_generator": "MT19937", "state": {"key": [0] * 624, "pos": 624}},
                  {"bit_generator": "PCG64", "state": {"state": 2 ** 200, "inc": 1}, "has_uint32": 0, "uinteger": 0},
                  {"bit_generator": "PCG64", "state": {"state": "1", "inc": 1}, "has_uint32": 0, "uinteger": 0}],
    "loss_sum": [-1.0, "x", None, 1e400],
    "correct": [-1, 10 ** 12, "3"],
    "best_acc": [2.0, -0.5, "x"],
    "best_epoch": [10 ** 6, -1],
    "stale": [10 ** 6, -2],
    "stopped": ["weird", 1, None, ["completed"]],
}


@st.composite
def hostile_checkpoints(draw, template: Template) -> Hostile:
    """A checkpoint mutated member by member, in its meta, at zip level, or byte by byte."""
    kind = draw(st.sampled_from(["drop", "extra", "dtype", "shape", "poison", "fortran", "meta-field",
                                 "meta-missing", "meta-unknown", "meta-raw", "progress", "method", "encrypted",
                                 "declared-size", "bomb", "duplicate", "not-npy", "bad-name", "truncated",
                                 "byte-flip", "deflated", "identical"]))
    arrays, names = dict(template.arrays), template.data_names
    if kind == "drop":
        name = draw(st.sampled_from([*names, "meta"]))
        del arrays[name]
        return Hostile(f"drop: {name}", True, checkpoint=template.with_arrays(arrays))
    if kind == "extra":
        name = draw(st.sampled_from(["params/extra", "features/extra", "optim/extra", "buffers/running_mean",
                                     "junk", "params/layer0.W.bak", "meta2", "params/"]))
        arrays[name] = np.zeros(3, np.float32)
        return Hostile(f"extra: {name}", True, checkpoint=template.with_arrays(arrays))
    if kind == "dtype":
        name = draw(st.sampled_from(names))
        dtype = draw(st.sampled_from([d for d in ["<f8", "<f2", "<i8", "<i4", "|u1", "|b1", "<c8", ">f4", ">i8"]
                                      if np.dtype(d) != arrays[name].dtype]))
        arrays[name] = arrays[name].astype(dtype)
        return Hostile(f"dtype: {name} as {dtype}", True, checkpoint=template.with_arrays(arrays))
    if kind == "shape":
        name = draw(st.sampled_from(names))
        array = arrays[name]
        candidates = [array.reshape(*array.shape, 1), np.zeros((0,), array.dtype), np.zeros(array.size + 1, array.dtype),
                      np.zeros((), array.dtype) if array.ndim else np.zeros(1, array.dtype)]
        if array.ndim == 2 and array.shape[0] != array.shape[1]:
            candidates.append(np.ascontiguousarray(array.T))
        arrays[name] = draw(st.sampled_from(candidates))
        return Hostile(f"shape: {name} as {arrays[name].shape}", True, checkpoint=template.with_arrays(arrays))
    if kind == "poison":
        name = draw(st.sampled_from([n for n in names if arrays[n].dtype.kind == "f" and arrays[n].size]))
        array = arrays[name].copy()
        bad = draw(st.sampled_from([np.nan, np.inf, -np.inf] + ([0.0, -1.0] if name.endswith("std") else [])))
        array.flat[draw(st.integers(0, array.size - 1))] = bad
        arrays[name] = array
        return Hostile(f"poison: {name} holds {bad}", True, checkpoint=template.with_arrays(arrays))
    if kind == "fortran":
        name = draw(st.sampled_from([n for n in names if arrays[n].ndim == 2 and min(arrays[n].shape) > 1]
                                    or ["meta"]))
        if name == "meta":
            return Hostile("identical: no 2-D array", False, checkpoint=template.with_arrays(arrays))
        arrays[name] = np.asfortranarray(arrays[name])
        return Hostile(f"fortran: {name}", True, checkpoint=template.with_arrays(arrays))
    if kind == "meta-field":
        field = draw(st.sampled_from(sorted(META_VALUES)))
        value = draw(st.sampled_from(META_VALUES[field]))
        meta = {**template.meta, field: value}
        if field == "config" and isinstance(value, dict):
            meta["config"] = _merged(template.meta["config"], value)
        return Hostile(f"meta-field: {field}={str(value)[:40]}", True, checkpoint=template.with_meta(meta))
    if kind == "meta-missing":
        field = draw(st.sampled_from(sorted(template.meta)))
        meta = {key: value for key, value in template.meta.items() if key != field}
        return Hostile(f"meta-missing: {field}", True, checkpoint=template.with_meta(meta))
    if kind == "meta-unknown":
        return Hostile("meta-unknown: field", True, checkpoint=template.with_meta({**template.meta, "evil": 1}))
    if kind == "meta-raw":
        raw = draw(st.sampled_from([b"[]", b"null", b"\xff\xfe", b"{", b'{"a": NaN}', b"[" * 100_000 + b"]" * 100_000,
                                    b'{"format_version": 1, "format_version": 1}', b"9" * 5000, b"",
                                    json.dumps(template.meta).encode().replace(b'"format_version": 1',
                                                                               b'"format_version": Infinity')]))
        return Hostile(f"meta-raw: {raw[:20]!r}", True, checkpoint=template.with_meta(raw))
    if kind == "progress":
        field = draw(st.sampled_from(sorted(PROGRESS_VALUES) + ["unknown"]))
        progress = dict(template.meta["progress"])
        if field == "unknown":
            progress["evil"] = 1
        else:
            progress[field] = draw(st.sampled_from(PROGRESS_VALUES[field]))
        return Hostile(f"progress: {field}", True, checkpoint=template.with_meta({**template.meta, "progress": progress}))
    members = members_of(arrays)
    index = draw(st.integers(0, len(members) - 1))
    member = members[index]
    if kind == "method":
        member.method = draw(st.sampled_from([1, 6, 9, 12, 14, 93, 95, 98, 99]))
        return Hostile(f"method: {member.name} method {member.method}", True, checkpoint=zip_bytes(members))
    if kind == "encrypted":
        member.flags |= draw(st.sampled_from([0x1, 0x41, 0x20]))
        return Hostile(f"encrypted: {member.name}", True, checkpoint=zip_bytes(members))
    if kind == "declared-size":
        member.size = draw(st.sampled_from([64 << 30, member.size + 1, member.size - 1, 0, 0xFFFFFFFE]))
        return Hostile(f"declared-size: {member.name} claims {member.size:,}", True, checkpoint=zip_bytes(members))
    if kind == "bomb":      # a real .npy header announcing 64 GiB, then deflated zeros: a few kilobytes of file
        header = npy_header((16 << 30,))
        bomb = deflated(member.name, header + bytes(1 << 20))
        bomb.size = len(header) + (64 << 30)
        members[index] = bomb
        return Hostile(f"bomb: {member.name} claims 64 GiB", True, checkpoint=zip_bytes(members))
    if kind == "duplicate":
        members.insert(index, members[index])
        return Hostile(f"duplicate: {member.name}", True, checkpoint=zip_bytes(members))
    if kind == "not-npy":
        content = draw(st.sampled_from([b"", b"\x93NUMPY", b"PK\x03\x04", b"not an array at all", b"\x93NUMPY\x03\x00"]))
        members[index] = stored(member.name, content)
        return Hostile(f"not-npy: {member.name}", True, checkpoint=zip_bytes(members))
    if kind == "bad-name":
        members[index] = stored(draw(st.sampled_from([member.name[:-4], member.name + ".txt", "../evil.npy"
                                                       if member.name != "meta.npy" else "meta.txt"])), member.data)
        return Hostile(f"bad-name: {members[index].name}", True, checkpoint=zip_bytes(members))
    whole = zip_bytes(members)
    if kind == "truncated":
        cut = draw(st.integers(0, len(whole) - 1))
        return Hostile(f"truncated: at {cut} of {len(whole)}", True, checkpoint=whole[:cut])
    if kind == "byte-flip":
        data = bytearray(whole)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return Hostile("byte-flip", None, checkpoint=bytes(data))
    if kind == "deflated":        # as numpy.savez_compressed writes them: must be read as the stored original
        return Hostile("deflated: every member", False,
                       checkpoint=zip_bytes([deflated(m.name, m.data) for m in members]))
    return Hostile("identical: re-zipped", False, checkpoint=whole)


def npy_header(shape: tuple[int, ...]) -> bytes:
    """The magic string and header of a .npy file announcing a float32 array of `shape`."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _merged(config: dict, change: dict) -> dict:
    out = json.loads(json.dumps(config))
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out
