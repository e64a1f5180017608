"""Hostile pickles against the restricted unpickler's budget: whatever a pickle combines, what its calls produce
stays within a small budget (or the call is refused), before anything large is built.

Each pickle here is written opcode by opcode (the forms an attacker would use, not what :mod:`pickle` writes);
the payloads that hit the old reader are kept as they were reported. Every case must end in a one-line
:class:`DatasetFormatError` (or its :class:`UnsafePickleError` subclass) that names the file.
"""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest

from hub_datasets import DatasetFormatError, UnsafePickleError, load_dataset, safe_load_pickle
from hub_datasets.safe_pickle import ALLOCATION_ALLOWANCE, MAX_NESTING, RestrictedUnpickler


MiB = 1 << 20


def g(module: str, name: str) -> bytes:
    """GLOBAL opcode."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def binbytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def text(value: str) -> bytes:
    data = value.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def put(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)


def get(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)


def integer(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)`` through MARK ... TUPLE REDUCE."""
    return func + b"(" + b"".join(args) + b"tR"


def list_of(*items: bytes) -> bytes:
    return b"](" + b"".join(items) + b"e"


def dtype(spec: str, copy: bool = True) -> bytes:
    return call(g("numpy", "dtype"), text(spec), b"\x89", b"\x88" if copy else b"\x89")


def empty_array() -> bytes:
    return call(
        g("numpy.core.multiarray", "_reconstruct"), g("numpy", "ndarray"), integer(0) + b"\x85", binbytes(b"b")
    )


def array_state(shape: tuple, dtype_ops: bytes, data: bytes) -> bytes:
    shape_ops = b"(" + b"".join(integer(d) for d in shape) + b"t"
    return b"(" + integer(1) + shape_ops + dtype_ops + b"\x89" + data + b"tb"


def proto(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def _refused(tmp_path, payload: bytes, match: str, error=UnsafePickleError):
    path = tmp_path / "hostile.pkl"
    path.write_bytes(payload)
    with pytest.raises(error, match=match) as info:
        safe_load_pickle(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    assert len(message) < 600, message
    return message


# ------------------------------------------------------------------------------------- the two reported pickles


def test_str_of_many_references_to_one_buffer(tmp_path):
    """``str`` applied to a list of 200 references to one 8 MiB buffer: ~6.7 GB of text from 458 bytes."""
    buffer = call(g("builtins", "bytearray"), integer(8 * MiB)) + put(0)
    payload = proto(call(g("builtins", "str"), buffer + b"0" + list_of(*[get(0)] * 200)))
    assert len(payload) < 1200
    _refused(tmp_path, payload, r"builtins\.str")


def test_codec_applied_to_its_own_output(tmp_path):
    """``_codecs.encode(..., 'hex')`` chained 24 times doubles 64 bytes into 1 GiB."""
    payload = g("_codecs", "encode") + put(0) + b"0"
    payload += (get(0) + b"(") * 24 + binbytes(b"x" * 64) + (text("hex") + b"tR") * 24
    _refused(tmp_path, proto(payload), r"_codecs\.encode called with bytes of length 64.*encode\(<text>, 'latin1'\)")


# ------------------------------------------------------------------------------------- globals and call forms


@pytest.mark.parametrize(
    "name", ["str", "list", "dict", "tuple", "int", "float", "complex", "bool", "slice", "range", "getattr", "eval"]
)
def test_builtins_no_corpus_pickle_needs_are_not_resolved(tmp_path, name):
    _refused(tmp_path, proto(call(g("builtins", name), list_of(integer(1)))), rf"global 'builtins\.{name}'")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (call(g("builtins", "bytes"), integer(10**9)), r"bytes called with 1000000000; only a byte string"),
        (call(g("builtins", "bytearray"), integer(10**9)), r"bytearray called with 1000000000"),
        (call(g("builtins", "bytes"), list_of(*[integer(7)] * 5)), r"bytes called with list of length 5"),
        (call(g("builtins", "set"), integer(5)), r"set called with 1 argument\(s\) \(5\)"),
        (call(g("_codecs", "encode"), text("abc"), text("rot13")), r"encode\(<text>, 'latin1'\)"),
        (call(g("_codecs", "encode"), text("abc")), r"encode\(<text>, 'latin1'\)"),
        (call(g("collections", "OrderedDict"), list_of()), r"OrderedDict called with arguments"),
        (call(g("numpy", "ndarray"), b"(" + integer(10**9) + b"t", text("f8")), r"calls numpy\.ndarray"),
        # a call whose result is then called again (a reduce chain through a non-global)
        (call(call(g("builtins", "set"), list_of()), list_of()), r"calls set of length 0"),
        # arguments that are not a tuple
        (g("builtins", "set") + list_of(text("a")) + b"R", r"set is called with list of length 1 instead of"),
    ],
)
def test_allowed_globals_accept_only_the_forms_pickle_writes(tmp_path, body, match):
    _refused(tmp_path, proto(body), match)


# ------------------------------------------------------------------------------------- memo reuse and the budget


def _big_reused(payload_per_use: bytes, uses: int, base: bytes) -> bytes:
    """``base`` stored once in the memo, then ``payload_per_use`` (which refers to it) repeated ``uses`` times."""
    return proto(base + put(0) + b"0" + list_of(*[payload_per_use] * uses))


@pytest.mark.parametrize(
    ("name", "per_use", "base"),
    [
        ("bytes", call(g("builtins", "bytes"), get(0)), binbytes(b"\x01" * (2 * MiB))),
        ("bytearray", call(g("builtins", "bytearray"), get(0)), binbytes(b"\x01" * (2 * MiB))),
        ("encode", call(g("_codecs", "encode"), get(0), text("latin1")), text("z" * (2 * MiB))),
        ("set", call(g("builtins", "set"), get(0)), list_of(*[text("a")] + [get(1)] * 200_000)),
        ("frozenset", call(g("builtins", "frozenset"), get(0)), list_of(*[text("a")] + [get(1)] * 200_000)),
        (
            "_frombuffer",
            call(g("numpy.core.numeric", "_frombuffer"), get(0), dtype("u1"), integer(2 * MiB) + b"\x85", text("C")),
            binbytes(b"\x01" * (2 * MiB)),
        ),
        (  # object arrays built again and again from one list of references
            "BUILD of an array of 200,000 objects",
            empty_array() + array_state((200_000,), dtype("O8"), get(0)),
            list_of(*[text("a")] + [get(1)] * 199_999),
        ),
        (  # numeric arrays built again and again from one buffer
            "BUILD of an array of shape",
            empty_array() + array_state((2 * MiB,), dtype("u1"), get(0)),
            binbytes(b"\x01" * (2 * MiB)),
        ),
    ],
)
def test_repeated_references_are_charged_on_every_use(tmp_path, monkeypatch, name, per_use, base):
    if name in ("bytes", "encode"):
        monkeypatch.setattr("hub_datasets.safe_pickle.IN_MEMORY_BYTES", 0)  # the streamed path too
    # the "a" string of the list bases sits in memo slot 1 (put right after it)
    base = base.replace(text("a"), text("a") + put(1), 1)
    payload = _big_reused(per_use, 40, base)
    assert len(payload) < 4 * MiB + 1000
    message = _refused(tmp_path, payload, r"budget")
    assert name in message


def test_the_budget_is_shared_by_every_call_of_one_file():
    """Calls each well under the budget cannot add up to more than it."""
    chunk = binbytes(b"\x02" * MiB)
    payload = proto(list_of(*[call(g("builtins", "bytes"), chunk)] * 8))
    back = RestrictedUnpickler(io.BytesIO(payload), allocation_budget=20 * MiB).load()
    assert len(back) == 8 and all(len(x) == MiB for x in back)
    with pytest.raises(UnsafePickleError, match="budget"):
        RestrictedUnpickler(io.BytesIO(payload), allocation_budget=5 * MiB).load()


# ------------------------------------------------------------------------------------- numpy reconstruction


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (  # huge shape, no data
            call(
                g("numpy.core.multiarray", "_reconstruct"),
                g("numpy", "ndarray"),
                b"(" + integer(2**31 - 1) * 2 + b"t",
                binbytes(b"b"),
            ),
            r"_reconstruct\(shape=\(2147483647, 2147483647\)\) would produce",
        ),
        (  # a shape that is not a tuple of non-negative integers
            call(
                g("numpy.core.multiarray", "_reconstruct"),
                g("numpy", "ndarray"),
                b"(" + integer(-5) + b"t",
                binbytes(b"b"),
            ),
            r"shape tuple of length 1, not a tuple of non-negative",
        ),
        (  # a dtype other than numpy's placeholder
            call(g("numpy.core.multiarray", "_reconstruct"), g("numpy", "ndarray"), integer(0) + b"\x85", text("f8")),
            r"numpy writes b'b'",
        ),
        (  # anything but ndarray as the subtype
            call(
                g("numpy.core.multiarray", "_reconstruct"), g("builtins", "set"), integer(0) + b"\x85", binbytes(b"b")
            ),
            r"numpy writes \(ndarray, \(0,\), b'b'\)",
        ),
        (empty_array(), r"an array was created but never given its data"),  # uninitialised memory
        (  # data shorter than the shape says
            empty_array() + array_state((1000,), dtype("f8"), binbytes(b"\0" * 8)),
            r"needs 8,000 bytes of data, got bytes of length 8",
        ),
        (  # an object array whose list does not match
            empty_array() + array_state((3,), dtype("O8"), list_of(integer(1))),
            r"BUILD of an array of 3 objects was given list of length 1",
        ),
        (  # zero-byte elements: a huge element count from no data
            empty_array() + array_state((10**9,), dtype("U0"), binbytes(b"")),
            r"zero bytes",
        ),
        (  # BUILD twice on one array
            empty_array()
            + array_state((1,), dtype("u1"), binbytes(b"\1"))
            + array_state((1,), dtype("u1"), binbytes(b"\1")),
            r"already set up",
        ),
        (  # a record dtype, a subarray dtype, a void dtype, a datetime dtype, a non-string spec
            dtype("f8,f8"),
            r"only a plain type code",
        ),
        (call(g("numpy", "dtype"), b"(" + text("f8") + b"(" + integer(10**9) + b"tt"), r"only a plain type code"),
        (dtype("V16"), r"only a plain type code"),
        (dtype("M8"), r"only a plain type code"),
        (  # numpy's shared float64 type, which BUILD would then modify for the whole process
            dtype("f8", copy=False),
            r"copy=False\) would hand out numpy's shared 'f8' type",
        ),
        (  # a float type whose flags would claim it holds Python objects
            dtype("f8") + b"(" + integer(3) + text("<") + b"NNN" + integer(-1) + integer(-1) + integer(63) + b"tb",
            r"not a plain type's state",
        ),
        (  # a string type whose element size is rewritten to 4 GB
            dtype("U1")
            + b"("
            + integer(3)
            + text("<")
            + b"NNN"
            + integer(2**31 - 4)
            + integer(4)
            + integer(8)
            + b"tb",
            r"not a plain type's state",
        ),
        (  # a dtype modified after an array uses it (the array's element size would change under it)
            dtype("u1")
            + put(5)
            + b"0"
            + empty_array()
            + array_state((1,), get(5), binbytes(b"\1"))
            + b"0"
            + get(5)
            + b"("
            + integer(3)
            + text("|")
            + b"NNN"
            + integer(-1)
            + integer(-1)
            + integer(0)
            + b"tb",
            r"shared or already in use",
        ),
        (  # a scalar whose data is shorter than its type
            call(g("numpy.core.multiarray", "scalar"), dtype("U100000"), binbytes(b"ab")),
            r"was given bytes of length 2, not 400000 bytes",
        ),
        (  # _frombuffer whose buffer does not hold the shape
            call(
                g("numpy._core.numeric", "_frombuffer"),
                binbytes(b"\0" * 8),
                dtype("f8"),
                b"(" + integer(10**6) + b"t",
                text("C"),
            ),
            r"a buffer of 8 bytes does not hold an array of shape \(1000000,\)",
        ),
    ],
)
def test_numpy_reconstruction_is_checked_before_it_allocates(tmp_path, body, match):
    _refused(tmp_path, proto(body), match)
    assert np.dtype("f8").str == "<f8" and not np.dtype("f8").hasobject  # numpy's shared types are untouched


# ------------------------------------------------------------------------------------- containers and opcodes


COLLIDING = [k * (2**61 - 1) for k in range(1, 6)]  # equal hashes: a dict of many of them costs O(n^2)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"]" + b"(" + text("a") + text("b") + b"u", r"SETITEMS adds items to a list"),
        (b"]" + text("k") + text("v") + b"s", r"SETITEM adds items to a list"),
        (
            call(g("builtins", "bytearray"), binbytes(b"ab")) + b"(" + integer(1) + b"e",
            r"APPENDS adds items to a bytearray",
        ),
        (b"\x8f" + b"(" + text("a") + b"\x91" + b"(" + text("b") + b"\x90", r"ADDITEMS adds items to a frozenset"),
        (
            b"}" + b"(" + b"".join(b"\x8a\x08" + k.to_bytes(8, "little") + integer(0) for k in COLLIDING) + b"u",
            r"int key",
        ),
        (b"}" + b"G" + struct.pack(">d", 0.5) + integer(1) + b"s", r"float key"),
        (b"}" + b"(" + integer(1) + integer(2) + b"t" + integer(1) + b"s", r"tuple key"),
        (call(g("builtins", "set"), list_of(*[b"\x8a\x08" + k.to_bytes(8, "little") for k in COLLIDING])), r"int key"),
        (b"(" + text("a") + integer(1) + text("b") + b"d", r"DICT is given a key without a value"),
        (b"]" + b"(" + text("x") + b"tb", r"BUILD sets the state of a list"),
        (g("builtins", "set") + b"}" + b"b", r"BUILD sets the state of a _Global"),
        (b"}" + b"(" + b"t" + b"b", r"BUILD sets the state of a dict"),
        (g("builtins", "set") + b")\x81", r"opcode that corpus pickles never use"),  # NEWOBJ
        (b"(" + b"ibuiltins\nset\n", r"opcode that corpus pickles never use"),  # INST
        (b"(" + g("builtins", "set") + b"o", r"opcode that corpus pickles never use"),  # OBJ
        (b"\x82\x01", r"opcode that corpus pickles never use"),  # EXT1
        (b"P1\n", r"opcode that corpus pickles never use"),  # PERSID
        (b"\x97", r"opcode that corpus pickles never use"),  # NEXT_BUFFER
    ],
)
def test_container_opcodes_only_fill_containers_with_safe_keys(tmp_path, body, match):
    _refused(tmp_path, proto(body), match)


def test_deep_nesting_and_self_reference(tmp_path):
    depth = 100_000
    _refused(tmp_path, proto(b"]" * depth + b"a" * (depth - 1)), rf"nest deeper than {MAX_NESTING} levels")
    _refused(tmp_path, proto(b"]" + put(0) + get(0) + b"a"), r"a container holds itself")
    _refused(tmp_path, proto(b"}" + put(0) + text("me") + get(0) + b"s"), r"a container holds itself")
    # an object array holding itself
    body = empty_array() + put(0) + array_state((1,), dtype("O8"), list_of(get(0)))
    _refused(tmp_path, proto(body), r"a container holds itself")
    # nesting at the limit loads
    path = tmp_path / "ok.pkl"
    path.write_bytes(proto(b"]" * MAX_NESTING + b"a" * (MAX_NESTING - 1)))
    assert isinstance(safe_load_pickle(path), list)


def test_shared_references_are_walked_once(tmp_path):
    """Twenty levels of two references each (2**20 paths): checked in time linear in the objects."""
    body = list_of(text("leaf")) + put(0) + b"0"
    for level in range(1, 21):
        body += list_of(get(level - 1), get(level - 1)) + put(level) + b"0"
    path = tmp_path / "shared.pkl"
    path.write_bytes(proto(body + get(20)))
    back = safe_load_pickle(path)
    assert back[0] is back[1]


@pytest.mark.parametrize(
    "body",
    [
        b"\x8e" + struct.pack("<Q", 2**40) + b"abc",  # BINBYTES8 announcing 1 TiB
        b"\x96" + struct.pack("<Q", 2**40) + b"abc",  # BYTEARRAY8 announcing 1 TiB
        b"\x8d" + struct.pack("<Q", 2**40) + b"abc",  # BINUNICODE8
        b"\x95" + struct.pack("<Q", 2**60) + b"N",  # FRAME
        b"L" + b"9" * 100_000 + b"L\n",  # a 100,000-digit integer in text
    ],
)
@pytest.mark.parametrize("whole", [True, False], ids=["read-whole", "streamed"])
def test_lengths_stored_in_the_file_allocate_nothing(tmp_path, monkeypatch, body, whole):
    if not whole:  # files above IN_MEMORY_BYTES are streamed from disk: the same checks apply
        monkeypatch.setattr("hub_datasets.safe_pickle.IN_MEMORY_BYTES", 0)
    _refused(tmp_path, b"\x80\x04" + body + b".", r"not a readable pickle", error=DatasetFormatError)


def test_a_huge_memo_index_costs_nothing(tmp_path):
    path = tmp_path / "memo.pkl"
    path.write_bytes(proto(b"]" + put(2**32 - 2) + b"0" + get(2**32 - 2)))
    assert safe_load_pickle(path) == []


# ------------------------------------------------------------------------------------- what still loads


def test_everything_pickle_and_numpy_write_still_loads(tmp_path):
    obj = {
        "arrays": [
            np.arange(6, dtype=">f8").reshape(2, 3),
            np.asfortranarray(np.ones((3, 2), "f4")),
            np.array(3.5),
            np.array(["x", "yz"]),
            np.array([b"a", b"bc"]),
            np.array(["q", 1, None, np.zeros(2)], dtype=object),
            np.array([True, False]),
            np.zeros((0, 5)),
            np.arange(8, dtype="<i2")[::2],
        ],
        "scalars": [np.int64(3), np.float32(2.5), np.str_("hé"), np.bool_(True)],
        "s": {"a", "b"},
        "f": frozenset({"c"}),
        "b": b"\x00\xffxyz",
        "ba": bytearray(b"12"),
        "e": b"",
        "od": OrderedDict([("k", 1)]),
        "t": (1, 2.5, None, True, 10**30),
        7: "an int key",
    }
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(obj, protocol=protocol)
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(data)
        back, ref = safe_load_pickle(path), pickle.loads(data)  # our own object: the default unpickler is fine
        for mine, theirs in zip(back["arrays"], ref["arrays"]):
            assert type(mine) is np.ndarray and mine.dtype == theirs.dtype and mine.shape == theirs.shape
            if mine.dtype != object:
                np.testing.assert_array_equal(mine, theirs)
        assert back["arrays"][5][:3].tolist() == ["q", 1, None]
        assert back["scalars"] == ref["scalars"] and [type(x) for x in back["scalars"]] == [
            type(x) for x in ref["scalars"]
        ]
        assert {k: v for k, v in back.items() if k not in ("arrays", "scalars")} == {
            k: v for k, v in ref.items() if k not in ("arrays", "scalars")
        }
        assert type(back["od"]) is OrderedDict


def test_a_genuine_file_larger_than_the_allowance_loads(tmp_path):
    """The budget grows with the file: a corpus pickle bigger than the allowance is not refused."""
    big = {"train": {"audio": np.ones((ALLOCATION_ALLOWANCE // 4 + 1000,), np.float32)}}
    path = tmp_path / "aligned_50.pkl"
    path.write_bytes(pickle.dumps(big, protocol=2))  # protocol 2: bytes go through _codecs.encode, then BUILD
    assert safe_load_pickle(path)["train"]["audio"].shape == big["train"]["audio"].shape


# ------------------------------------------------------------------------------------- through the loaders


STR_BOMB = proto(
    call(
        g("builtins", "str"),
        call(g("builtins", "bytearray"), integer(8 * MiB)) + put(0) + b"0" + list_of(*[get(0)] * 200),
    )
)
BUDGET_BOMB = proto(
    binbytes(b"\x01" * (2 * MiB)) + put(0) + b"0" + list_of(*[call(g("builtins", "bytes"), get(0))] * 40)
)


@pytest.mark.parametrize("payload", [STR_BOMB, BUDGET_BOMB])
def test_every_corpus_loader_refuses_them(iemocap_corpus, mosi_corpus, mmsa_corpus, cache_dir, payload):
    targets = [
        ("iemocap4", iemocap_corpus["dir"].parent, iemocap_corpus["dir"] / "IEMOCAP_features_raw_4way.pkl"),
        ("mosi", mosi_corpus["dir"].parent, mosi_corpus["dir"] / "CMUMOSI_features_raw_2way.pkl"),
        ("mosi", mmsa_corpus["path"].parent.parent.parent, mmsa_corpus["path"]),
    ]
    for name, data_dir, pickle_path in targets:
        pickle_path.write_bytes(payload)
        with pytest.raises(UnsafePickleError) as info:
            load_dataset(name, data_dir=data_dir, cache_dir=cache_dir)
        assert str(pickle_path) in str(info.value) and "\n" not in str(info.value)


def test_train_recipe_gives_one_line(tmp_path, iemocap_corpus):
    (iemocap_corpus["dir"] / "IEMOCAP_features_raw_4way.pkl").write_bytes(STR_BOMB)
    cmd = [
        sys.executable,
        "recipes/train.py",
        "--dataset",
        "iemocap4",
        "--data_dir",
        str(iemocap_corpus["dir"].parent),
        "--fold",
        "1",
        "--output_dir",
        str(tmp_path / "run"),
        "--epochs",
        "1",
        "--stage1_epochs",
        "0",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr[-2000:]
    assert "IEMOCAP_features_raw_4way.pkl" in lines[-1] and "builtins.str" in lines[-1], proc.stderr[-2000:]


def _rewrite(path, edit):
    with open(path, "rb") as handle:  # our own fixture file: the default unpickler is fine here
        obj = pickle.load(handle)
    edit(obj)
    path.write_bytes(pickle.dumps(obj, protocol=4))  # the pickler stores a shared object once, then references


def test_gcnet_strings_shared_many_times_are_not_copied_without_bound(iemocap_corpus, cache_dir):
    """Every transcript one reference to a 4 MiB string: cheap in the file, 40 copies in the Arrow table."""
    pickle_path = iemocap_corpus["dir"] / "IEMOCAP_features_raw_4way.pkl"
    long_text = "w" * (4 * MiB)
    _rewrite(pickle_path, lambda obj: obj[3].update({d: [long_text] * len(v) for d, v in obj[3].items()}))
    assert pickle_path.stat().st_size < 5 * MiB
    with pytest.raises(DatasetFormatError, match=r"strings add up to more characters than the file") as info:
        load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)
    assert str(pickle_path) in str(info.value) and "\n" not in str(info.value)


def test_gcnet_non_string_ids_are_refused_without_formatting_them(iemocap_corpus, cache_dir):
    """An utterance id that is a list of a million references to one long string: named, never formatted."""
    pickle_path = iemocap_corpus["dir"] / "IEMOCAP_features_raw_4way.pkl"
    huge = ["x" * MiB] * 1_000_000

    def edit(obj):
        first = sorted(obj[0])[0]
        obj[0][first] = [huge] + obj[0][first][1:]

    _rewrite(pickle_path, edit)
    with pytest.raises(
        DatasetFormatError, match=r"videoIDs\['Ses01F_impro01'\]\[0\] should be a string, got list"
    ) as info:
        load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("raw_text", lambda n: np.array(["t" * (4 * MiB)] * n, dtype=object), r"strings add up"),
        ("id", lambda n: [["a"] * 3] * n, r"\['id'\]\[0\] should be a string, got list"),
        ("audio_lengths", lambda n: ["9" * MiB] * n, r"\['audio_lengths'\]\[0\] = '9999.*' is not a number"),
        ("text", lambda n: [[[0.0] * 4] * 6] * n, r"\['text'\] should be a numpy array, got list"),
    ],
)
def test_mmsa_fields_are_checked_before_they_are_copied(mmsa_corpus, cache_dir, field, value, match):
    def edit(obj):
        for part in obj.values():
            part[field] = value(len(part["id"]))

    _rewrite(mmsa_corpus["path"], edit)
    with pytest.raises(DatasetFormatError, match=match) as info:
        load_dataset("mosi", data_dir=mmsa_corpus["path"].parent.parent.parent, cache_dir=cache_dir)
    assert str(mmsa_corpus["path"]) in str(info.value) and "\n" not in str(info.value)
    assert len(str(info.value)) < 600


def test_python2_byte_strings_still_build_arrays_and_scalars(tmp_path):
    """Python 2 wrote array data and scalars as 8-bit strings (BINSTRING), read back as latin-1 text."""
    raw = np.array([1.5, -2.0]).tobytes()
    py2 = lambda data: b"T" + struct.pack("<i", len(data)) + data  # noqa: E731 - BINSTRING
    body = list_of(
        empty_array() + array_state((2,), dtype("f8"), py2(raw)),
        call(g("numpy.core.multiarray", "scalar"), dtype("f8"), py2(np.float64(0.25).tobytes())),
        call(g("__builtin__", "set"), list_of(py2(b"Ses01F_impro01"))),
    )
    path = tmp_path / "py2.pkl"
    path.write_bytes(proto(body))
    array, scalar, ids = safe_load_pickle(path)
    np.testing.assert_array_equal(array, [1.5, -2.0])
    assert scalar == 0.25 and isinstance(scalar, np.float64) and ids == {"Ses01F_impro01"}
