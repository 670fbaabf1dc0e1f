"""The .npz reader: what numpy writes comes back as written; what breaks the rules is an NpzError naming the
member, found from the zip directory and the .npy header before any data is read."""

from __future__ import annotations

import io
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlpcli.npzfile import MAX_MEMBERS, NpzError, NpzReader, load_npz, save_npz
from tests.hostile import Member, deflated, npy_bytes, npy_header, stored, zip_bytes

DTYPES = st.sampled_from(["<f4", "<f8", ">f4", "<i8", "|u1", "|b1", "<c8", "<u2"])


@settings(max_examples=40, deadline=None)
@given(arrays=st.dictionaries(st.from_regex(r"[a-z]{1,8}(/[a-z0-9.]{1,8})?", fullmatch=True),
                              hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)), max_size=4),
       compressed=st.booleans(), fortran=st.booleans())
def test_what_numpy_writes_reads_back_exactly(tmp_path_factory, arrays, compressed, fortran):
    path = tmp_path_factory.getbasetemp() / "a.npz"
    arrays = {name: np.asfortranarray(a) if fortran else a for name, a in arrays.items()}
    (np.savez_compressed if compressed else np.savez)(path, **{name: a for name, a in arrays.items()})
    back = load_npz(path)
    assert back.keys() == arrays.keys()
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape
        np.testing.assert_array_equal(back[name], array)


def test_save_npz_round_trips(tmp_path):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b/c": np.array(3)}
    save_npz(tmp_path / "x.npz", arrays)
    back = load_npz(tmp_path / "x.npz")
    assert all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in arrays.items())


def read(tmp_path, members: list[Member]) -> dict[str, np.ndarray]:
    path = tmp_path / "x.npz"
    path.write_bytes(zip_bytes(members))
    return load_npz(path)


def with_data(member: Member, data: bytes, size: int | None = None) -> None:
    """Stored `data` with its true CRC, declaring `size` (default: its length)."""
    member.data, member.crc, member.size = data, zlib.crc32(data), len(data) if size is None else size


def good(name: str = "a.npy", array=np.arange(10_000, dtype=np.float32)) -> Member:
    return stored(name, npy_bytes(array))


@pytest.mark.parametrize("change, message", [
    (lambda m: setattr(m, "method", 1), "member 'a.npy' uses compression method 1"),
    (lambda m: setattr(m, "method", 99), "uses compression method 99"),
    (lambda m: setattr(m, "method", 12), "uses compression method 12"),
    (lambda m: setattr(m, "flags", 0x1), "member 'a.npy' is encrypted or patched (zip flags 0x1)"),
    (lambda m: setattr(m, "flags", 0x40), "is encrypted or patched (zip flags 0x40)"),
    (lambda m: setattr(m, "flags", 0x20), "is encrypted or patched (zip flags 0x20)"),
    (lambda m: setattr(m, "name", "a.txt"), "member 'a.txt' is not a .npy array"),
    (lambda m: setattr(m, "size", m.size + 1), "member 'a' declares 40,129 bytes, but its header announces float32 "
                                              "(10000,), 40,128 bytes"),
    (lambda m: setattr(m, "size", 64 << 30), f"member 'a' declares {64 << 30:,} bytes"),
    (lambda m: setattr(m, "crc", m.crc ^ 1), "member 'a' cannot be read (Bad CRC-32"),
    (lambda m: setattr(m, "data", m.data[:-4]), "member 'a' cannot be read (Bad CRC-32"),
    (lambda m: with_data(m, m.data[:-4], m.size), "member 'a' ends after 39,996 of its 40,000 bytes of data"),
    (lambda m: with_data(m, b"\x93NUMPY\x03\x00" + m.data[8:]), "is .npy version (3, 0)"),
    (lambda m: with_data(m, b"text, not numpy" + bytes(129)), "member 'a' is not a .npy array"),
])
def test_members_that_break_the_rules(tmp_path, change, message):
    member = good()
    change(member)
    with pytest.raises(NpzError) as err:
        read(tmp_path, [member])
    assert message in str(err.value)


def test_duplicate_members(tmp_path):
    with pytest.raises(NpzError, match="member 'a.npy' appears twice"):
        read(tmp_path, [good(), good()])


def test_too_many_members(tmp_path):
    with pytest.raises(NpzError, match=f"{MAX_MEMBERS + 1:,} members; at most {MAX_MEMBERS:,}"):
        read(tmp_path, [good(f"{i}.npy", np.zeros(0)) for i in range(MAX_MEMBERS + 1)])


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    with pytest.raises(NpzError, match="member 'a' holds Python objects"):
        read(tmp_path, [stored("a.npy", npy_bytes(np.array([print] * 1000, dtype=object)))])


def test_a_header_past_numpys_limit_is_refused(tmp_path):
    header = npy_header((4,))
    big = header[:-1] + b" " * 20_000 + b"\n"
    big = big[:8] + len(big[10:]).to_bytes(2, "little") + big[10:]
    with pytest.raises(NpzError, match="member 'a' is not a .npy array"):
        read(tmp_path, [stored("a.npy", big + bytes(16))])


def test_a_deflate_bomb_is_refused_before_decompressing(tmp_path):
    header = npy_header((16 << 30,))
    bomb = deflated("a.npy", header + bytes(1 << 20))
    bomb.size = len(header) + (64 << 30)
    path = tmp_path / "x.npz"
    path.write_bytes(zip_bytes([bomb]))
    with NpzReader(path) as npz:
        assert npz.header("a").shape == (16 << 30,)       # announced: the caller compares it before reading
    with pytest.raises(NpzError, match=f"its arrays announce {64 << 30:,} bytes, more than the memory available"):
        load_npz(path)


def test_a_deflated_member_whose_data_is_shorter_than_declared(tmp_path):
    content = npy_bytes(np.arange(100, dtype=np.float64))
    member = deflated("a.npy", content[:-8])
    member.size = len(content)
    with pytest.raises(NpzError):
        read(tmp_path, [member])


def test_version_2_headers_are_read(tmp_path):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.arange(3, dtype=np.int64), version=(2, 0))
    assert read(tmp_path, [stored("a.npy", buffer.getvalue())])["a"].tolist() == [0, 1, 2]


def test_not_a_zip_file(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"PK\x05\x06" + bytes(10))
    with pytest.raises(NpzError, match="not a readable .npz file"):
        load_npz(tmp_path / "x.npz")
    with zipfile.ZipFile(tmp_path / "y.npz", "w") as archive:
        archive.writestr("a.npy", b"")
    with pytest.raises(NpzError, match="member 'a' is not a .npy array"):
        load_npz(tmp_path / "y.npz")
