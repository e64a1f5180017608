"""The restricted unpickler: malicious pickles are refused before anything runs; corpus pickles load."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from hub_datasets import DatasetFormatError, UnsafePickleError, load_dataset, safe_load_pickle


class _Exploit:
    """Unpickling this with the default unpickler would run a shell command that creates a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([{"a": 1}, _Exploit(marker)]))
    with pytest.raises(UnsafePickleError, match=r"system") as info:
        safe_load_pickle(path)
    assert str(path) in str(info.value)
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize(
    "payload",
    [
        b"cbuiltins\neval\n(V__import__('os').system('true')\ntR.",
        b"cbuiltins\ngetattr\n(cbuiltins\nobject\nV__subclasses__\ntR.",
        b"csubprocess\nPopen\n(Vtrue\ntR.",
        b"cnumpy\nload\n(V/etc/passwd\ntR.",
    ],
)
def test_globals_outside_the_allow_list_are_refused(tmp_path, payload):
    path = tmp_path / "bad.pkl"
    path.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match="refusing to unpickle"):
        safe_load_pickle(path)


def test_malicious_label_pickle_inside_a_corpus(tmp_path, iemocap_corpus, cache_dir):
    marker = tmp_path / "pwned"
    (iemocap_corpus["dir"] / "IEMOCAP_features_raw_4way.pkl").write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(UnsafePickleError, match="IEMOCAP_features_raw_4way.pkl"):
        load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)
    assert not marker.exists()


def test_numpy_typed_pickles_load_in_every_spelling(tmp_path):
    obj = [{"v": [np.float64(1.25), np.float64(-3.0)]}, {"s": np.array(["a", "bc"])}, {"v"}, np.arange(4.0)]
    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        back = safe_load_pickle(path)
        assert back[0]["v"] == [1.25, -3.0] and isinstance(back[0]["v"][0], np.float64)
        assert back[1]["s"].tolist() == ["a", "bc"] and back[2] == {"v"}
        np.testing.assert_array_equal(back[3], np.arange(4.0))
    # numpy 1.x wrote ``numpy.core.multiarray``; Python 2 wrote ``__builtin__`` (protocol 2 spells globals as text).
    legacy = pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    legacy = legacy.replace(b"cbuiltins\nset", b"c__builtin__\nset")
    assert b"numpy.core.multiarray" in legacy and b"__builtin__" in legacy
    path = tmp_path / "legacy.pkl"
    path.write_bytes(legacy)
    back = safe_load_pickle(path)
    assert back[1]["s"].tolist() == ["a", "bc"] and back[2] == {"v"}


def test_truncated_or_missing_pickles_name_the_file(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps(list(range(100)))[:20])
    with pytest.raises(DatasetFormatError, match="cut.pkl"):
        safe_load_pickle(path)
    with pytest.raises(DatasetFormatError, match="not found"):
        safe_load_pickle(tmp_path / "absent.pkl")


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (b"cbuiltins\nbytearray\n(L3000000000L\ntR.", r"bytearray called with 3000000000"),
        (b"cbuiltins\nlist\n(cbuiltins\nrange\n(L3000000000L\ntRtR.", r"global 'builtins.list'"),
        (b"cnumpy\nndarray\n((L3000000000L\ntVf8\ntR.", r"calls numpy.ndarray"),
        (
            b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(L3000000000L\ntc_codecs\nencode\n(Vb\nVlatin1\ntRtR.",
            r"_reconstruct\(shape=\(3000000000,\)\) would produce 3,000,000,128 bytes",
        ),
    ],
)
def test_size_driven_allocations_are_bounded(tmp_path, payload, named):
    path = tmp_path / "labels.pkl"
    path.write_bytes(payload)  # a few dozen bytes asking for gigabytes
    with pytest.raises(UnsafePickleError, match=named) as info:
        safe_load_pickle(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
