"""Blocking keys: which pupils are worth comparing with a reported child.

Every pupil is filed under a few integer keys; a reported child is looked up under the keys its
own record (and its likely errors) produces, and only the pupils found are scored. The keys
together tolerate any one of the errors children's records carry, and most pairs of them:

=====================  =========================================  ============================
key                    filed under                                still finds the child when
=====================  =========================================  ============================
UPN                    the UPN                                    everything else is wrong
DOB + family part      date of birth, each family-name part       given name differs, moved
DOB + given sound      date of birth, skeleton of the first name  surname changed, moved
postcode + family      full postcode, each family-name part       date of birth wrong
postcode + given       full postcode, skeleton of the first name  date wrong, surname changed
family + given + year  family part, first-name skeleton, year     day or month wrong, moved
family + given + day   family part, first-name skeleton, day      year wrong, moved
DOB + postcode         date of birth, full postcode               both names mistyped
family + given         family part, first-name skeleton           date missing (queried only
                                                                  then)
=====================  =========================================  ============================

The query side adds the diminutives and full forms of the reported given name (their
skeletons) and, for swapped names, reads the given name as a family name and vice versa.
Keys are 64-bit mixes of small integers; a collision only adds a candidate that scoring then
rejects. Every key of every pupil sits in one sorted array (``keys``, ``rows``): a lookup is a
binary search, and a million pupils cost about 110 MB of index.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

KeyArray = npt.NDArray[np.uint64]

UPN_KEY, DOB_FAMILY, DOB_GIVEN, POSTCODE_FAMILY, FAMILY_YEAR, FAMILY_DAY = range(1, 7)
POSTCODE_GIVEN, DOB_POSTCODE, FAMILY_GIVEN = 7, 8, 9

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _round(h: KeyArray) -> KeyArray:
    h *= _M1
    h ^= h >> _S30
    h *= _M2
    h ^= h >> _S27
    h *= _M3
    h ^= h >> _S31
    return h


def mix3(
    kind: npt.NDArray[np.int64],
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    c: npt.NDArray[np.int64],
) -> KeyArray:
    """A 64-bit key per element from a key kind and three integer columns (0 when unused)."""
    with np.errstate(over="ignore"):
        h = _round(kind.astype(np.uint64))
        for part in (a, b, c):
            h ^= part.astype(np.uint64)
            h = _round(h)
    return h


def upn_codes(upn: npt.NDArray[np.bytes_]) -> KeyArray:
    """Each 13-character UPN folded into one 64-bit integer (0 when absent); the fold wraps
    around, so two UPNs may share an integer: that only adds a candidate."""
    raw = upn.view(np.uint8).reshape(-1, 13).astype(np.uint64)
    code = np.zeros(raw.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in range(13):
            code = code * np.uint64(37) + raw[:, column]
    return code


def upn_code(upn: str) -> int:
    """The integer of one compact UPN, as ``upn_codes`` computes it (as a signed int64)."""
    padded = np.array([upn.encode("ascii")[:13].ljust(13, b"\0")], dtype="S13")
    return int(upn_codes(padded).view(np.int64)[0])


def dob_parts(days: npt.NDArray[np.int32]) -> tuple[npt.NDArray[np.int64], ...]:
    """Year and month*32+day of days since 1970, element-wise."""
    dt = days.astype("datetime64[D]")
    years = dt.astype("datetime64[Y]").astype(np.int64) + 1970
    months = dt.astype("datetime64[M]").astype(np.int64) % 12 + 1
    mday = (dt - dt.astype("datetime64[M]")).astype(np.int64) + 1
    return years, months * 32 + mday


class SortedKeys:
    """Keys and the rows filed under them, sorted by key: lookup by binary search."""

    def __init__(self, keys: KeyArray, rows: npt.NDArray[np.int32]) -> None:
        order = np.argsort(keys, kind="stable")
        self.keys: KeyArray = keys[order]
        self.rows: npt.NDArray[np.int32] = rows[order].astype(np.int32)

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.rows.nbytes)

    def lookup(self, keys: KeyArray, max_block: int, exempt: int = 0) -> npt.NDArray[np.int32]:
        """The distinct rows filed under any of ``keys``; a key holding more than
        ``max_block`` rows is skipped (too common to tell anything), except the first
        ``exempt`` keys."""
        if keys.shape[0] == 0:
            return np.empty(0, dtype=np.int32)
        left = np.searchsorted(self.keys, keys, side="left")
        right = np.searchsorted(self.keys, keys, side="right")
        sizes = right - left
        keep = sizes <= max_block
        keep[:exempt] = True
        spans = [
            self.rows[a:b]
            for a, b in zip(left[keep].tolist(), right[keep].tolist(), strict=True)
            if b > a
        ]
        if not spans:
            return np.empty(0, dtype=np.int32)
        return np.unique(np.concatenate(spans))
