"""Mutation fuzzing of the .pth reader: valid files of both formats, mutated by hypothesis.

Every input must end in a state dict of numpy arrays or ``TorchFileError``; another exception,
a crash, a hang (over ``--input_seconds``) or an allocation over the address-space limit
fails the run, leaving the input in ``OUT/failure.pth`` (a crash leaves it in
``OUT/current.pth``). Mutations act on the pieces of a file (each pickle and storage of the
legacy stream, each member of the zip, rebuilt with valid CRCs so the reader sees the damage)
or on its raw bytes: flipped bytes, pickle opcodes written in, spans deleted or duplicated,
extreme integers, truncation.

    python tests/fuzz_torch_files.py --minutes 30            # the long run
    python tests/fuzz_torch_files.py --examples 300          # what the test suite runs
"""

from __future__ import annotations

import argparse
import collections
import io
import itertools
import json
import os
import pickletools
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import zipfile

import hypothesis
import numpy as np
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_files as tf_  # noqa: E402

from instagan_jax.torch_pickle import TorchFileError, load_state_dict  # noqa: E402

_OPCODES = sorted({op.code.encode("latin-1") for op in pickletools.opcodes})
_EXTREMES = [0, 1, -1, 255, 1 << 15, 1 << 31, (1 << 31) - 1, 1 << 62, -(1 << 63)]


def _seeds() -> list[tuple[str, list]]:
    """(format, pieces) of the valid files that mutations start from."""
    arrays = tf_.sample_arrays()
    s = tf_.Storage("0", np.arange(24, dtype=np.float32))
    views = collections.OrderedDict(t=tf_.tensor(s, 0, (4, 6), (1, 4)), x=tf_.tensor(s, 23, (), ()))
    seeds = []
    for state, storages in (tf_.state_dict(arrays), (views, [s])):
        legacy = tf_.legacy_file(state, storages)
        pickles = [tf_.dumps(x) for x in (tf_.LEGACY_MAGIC, 1001, tf_.SYS_INFO, state, [t.key for t in storages])]
        blobs = [struct.pack("<q", t.numel) + t.data.tobytes() for t in storages]
        assert b"".join(pickles + blobs) == legacy
        seeds.append(("legacy", pickles + blobs))
        with zipfile.ZipFile(io.BytesIO(tf_.zip_file(state, storages))) as archive:
            seeds.append(("zip", [(n, archive.read(n)) for n in archive.namelist()]))
    return seeds


SEEDS = _seeds()

_mutation = st.tuples(
    st.sampled_from(["flip", "opcode", "delete", "duplicate", "integer", "truncate"]),
    st.floats(0, 1, exclude_max=True),  # where, as a fraction of the piece
    st.integers(0, 255),
    st.integers(1, 64),  # span length
)


def _mutate(data: bytes, mutation) -> bytes:
    kind, where, value, span = mutation
    if not data:
        return bytes([value])
    i = int(where * len(data))
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ (value or 1)]) + data[i + 1 :]
    if kind == "opcode":
        return data[:i] + _OPCODES[value % len(_OPCODES)] + data[i + 1 :]
    if kind == "delete":
        return data[:i] + data[i + span :]
    if kind == "duplicate":
        return data[: i + span] + data[i : i + span] + data[i + span :]
    if kind == "integer":
        width = (1, 2, 4, 8)[value % 4]
        number = _EXTREMES[span % len(_EXTREMES)] & ((1 << (8 * width)) - 1)
        return data[:i] + number.to_bytes(width, "little") + data[i + width :]
    return data[:i]


def assemble(seed: int, mutations: list, raw: bool) -> bytes:
    """The seed file with ``mutations`` applied to one piece each, or to the whole file if ``raw``."""
    fmt, pieces = SEEDS[seed % len(SEEDS)]
    pieces = list(pieces)
    if not raw:
        for mutation in mutations:
            k = int(mutation[1] * 997) % len(pieces)
            if fmt == "zip":
                pieces[k] = (pieces[k][0], _mutate(pieces[k][1], mutation))
            else:
                pieces[k] = _mutate(pieces[k], mutation)
    if fmt == "zip":
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            for name, payload in pieces:
                archive.writestr(name, payload)
        data = out.getvalue()
    else:
        data = b"".join(pieces)
    if raw:
        for mutation in mutations:
            data = _mutate(data, mutation)
    return data


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout("reading one input took too long (a hang)")


def run(out_dir: str, examples_per_batch: int, deadline: float, input_seconds: int, seed: int) -> collections.Counter:
    """Fuzzes in batches until ``deadline`` (at least one batch) from hypothesis's ``seed`` (batch k
    from seed + k, so a run with the same seed and flags draws the same inputs); returns the outcome counts."""
    outcomes = collections.Counter()
    current = os.path.join(out_dir, "current.pth")
    signal.signal(signal.SIGALRM, _on_alarm)
    unraisable = []  # errors Python can only print (e.g. in a destructor) count as failures too
    sys.unraisablehook = lambda info: unraisable.append(f"{info.exc_type.__name__}: {info.exc_value}")

    @hypothesis.settings(
        max_examples=examples_per_batch,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.generate, hypothesis.Phase.shrink],
    )
    @hypothesis.given(
        seed=st.integers(0, len(SEEDS) - 1), mutations=st.lists(_mutation, min_size=1, max_size=6), raw=st.booleans()
    )
    def one_input(seed, mutations, raw):
        data = assemble(seed, mutations, raw)
        with open(current, "wb") as f:
            f.write(data)
        signal.alarm(input_seconds)
        try:
            state = load_state_dict(current)
        except TorchFileError as e:
            outcomes["TorchFileError"] += 1
            assert current in str(e), f"the error does not name the file: {e}"
            assert "MemoryError" not in str(e), f"the reader tried to allocate more than the file justifies: {e}"
        except BaseException:
            with open(os.path.join(out_dir, "failure.pth"), "wb") as f:
                f.write(data)
            raise
        else:
            outcomes["state dict"] += 1
            assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items())
        finally:
            signal.alarm(0)
        assert not unraisable, f"an error was swallowed while reading: {unraisable.pop()}"

    for batch in itertools.count():
        hypothesis.seed(seed + batch)(one_input)()
        if time.time() >= deadline:
            return outcomes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=0, help="fuzz for this long (0: one batch)")
    parser.add_argument("--examples", type=int, default=2000, help="inputs per hypothesis batch")
    parser.add_argument("--input_seconds", type=int, default=10, help="longer than this per input is a hang")
    parser.add_argument("--out", default=None, help="folder for current.pth / failure.pth (default: a temp dir)")
    parser.add_argument("--memory_gib", type=float, default=3, help="address-space limit of this process")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis's seed (default: drawn, and printed)")
    args = parser.parse_args()
    limit = int(args.memory_gib * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out_dir = args.out or tempfile.mkdtemp(prefix="fuzz_torch_files_")
    os.makedirs(out_dir, exist_ok=True)
    seed = random.randrange(2**32) if args.seed is None else args.seed
    print(f"fuzzing with --seed {seed}; a failing input is kept as {os.path.join(out_dir, 'failure.pth')}", flush=True)
    start = time.time()
    outcomes = run(out_dir, args.examples, start + 60 * args.minutes, args.input_seconds, seed)
    summary = {"inputs": sum(outcomes.values()), **outcomes, "seed": seed, "seconds": round(time.time() - start, 1)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
