"""A roster held as columns: a million pupils in a few numpy arrays, not a million objects.

Strings that repeat (given names, family names, postcodes, setting ids, genders) are stored
once in a vocabulary and referenced by an ``int32`` per pupil; dates are ``int32`` days since
1970; UPNs are fixed-width 13-byte strings. A pupil is rebuilt as a ``Pupil`` only when it is
a candidate for a reported child.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

from encompass.domain.directory import Pupil

EPOCH = date(1970, 1, 1).toordinal()
UPN_WIDTH = 13

IntArray = npt.NDArray[np.int32]


class _Vocabulary:
    """Strings to dense ids, in order of first appearance."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.values: list[str] = []

    def id(self, value: str) -> int:
        found = self.ids.get(value)
        if found is None:
            found = self.ids[value] = len(self.values)
            self.values.append(value)
        return found


@dataclass(frozen=True, slots=True)
class RosterColumns:
    """The roster's columns and vocabularies: row ``i`` is one pupil at one setting."""

    setting: IntArray
    given: IntArray
    family: IntArray
    postcode: IntArray
    gender: IntArray
    dob_days: IntArray
    upn: npt.NDArray[np.bytes_]
    settings: tuple[str, ...]
    given_names: tuple[str, ...]
    family_names: tuple[str, ...]
    postcodes: tuple[str, ...]
    genders: tuple[str | None, ...]

    def __len__(self) -> int:
        return int(self.setting.shape[0])

    def pupil(self, row: int) -> Pupil:
        """Rebuild one pupil from its row."""
        upn = bytes(self.upn[row]).decode("ascii")
        return Pupil(
            setting_id=self.settings[self.setting[row]],
            upn=upn or None,
            given_name=self.given_names[self.given[row]],
            family_name=self.family_names[self.family[row]],
            date_of_birth=date.fromordinal(int(self.dob_days[row]) + EPOCH),
            postcode=self.postcodes[self.postcode[row]],
            gender=self.genders[self.gender[row]],
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (vocabulary strings not counted)."""
        return sum(
            int(a.nbytes)
            for a in (
                self.setting,
                self.given,
                self.family,
                self.postcode,
                self.gender,
                self.dob_days,
                self.upn,
            )
        )


class ColumnBuilder:
    """Appends pupils one at a time into compact arrays (no per-pupil object is kept)."""

    def __init__(self) -> None:
        self._settings, self._given, self._family = _Vocabulary(), _Vocabulary(), _Vocabulary()
        self._postcodes, self._genders = _Vocabulary(), _Vocabulary()
        self._cols = {
            name: array("i") for name in ("setting", "given", "family", "postcode", "gender", "dob")
        }
        self._upn = bytearray()

    def add(
        self,
        setting_id: str,
        upn: str | None,
        given_name: str,
        family_name: str,
        date_of_birth: date,
        postcode: str,
        gender: str | None,
    ) -> None:
        """Append one pupil."""
        cols = self._cols
        cols["setting"].append(self._settings.id(setting_id))
        cols["given"].append(self._given.id(given_name))
        cols["family"].append(self._family.id(family_name))
        cols["postcode"].append(self._postcodes.id(postcode))
        cols["gender"].append(self._genders.id(gender or ""))
        cols["dob"].append(date_of_birth.toordinal() - EPOCH)
        code = (upn or "").replace(" ", "").upper().encode("ascii", "ignore")[:UPN_WIDTH]
        self._upn += code.ljust(UPN_WIDTH, b"\0")

    def build(self) -> RosterColumns:
        """Freeze the columns into numpy arrays."""

        def col(name: str) -> IntArray:
            return np.frombuffer(self._cols[name], dtype=np.int32).copy()

        upn = np.frombuffer(bytes(self._upn), dtype=f"S{UPN_WIDTH}").copy()
        return RosterColumns(
            setting=col("setting"),
            given=col("given"),
            family=col("family"),
            postcode=col("postcode"),
            gender=col("gender"),
            dob_days=col("dob"),
            upn=upn,
            settings=tuple(self._settings.values),
            given_names=tuple(self._given.values),
            family_names=tuple(self._family.values),
            postcodes=tuple(self._postcodes.values),
            genders=tuple(g or None for g in self._genders.values),
        )


def columns_from_pupils(pupils: Iterable[Pupil]) -> RosterColumns:
    """Stream pupils into columns: the iterable may be a generator over a million rows."""
    builder = ColumnBuilder()
    for p in pupils:
        builder.add(
            p.setting_id, p.upn, p.given_name, p.family_name, p.date_of_birth, p.postcode, p.gender
        )
    return builder.build()


def columns_from_sequences(
    setting_id: Sequence[str],
    upn: Sequence[str | None],
    given_name: Sequence[str],
    family_name: Sequence[str],
    date_of_birth: Sequence[date],
    postcode: Sequence[str],
    gender: Sequence[str | None],
) -> RosterColumns:
    """Columns from parallel sequences (e.g. the columns of a database query)."""
    builder = ColumnBuilder()
    for row in zip(
        setting_id, upn, given_name, family_name, date_of_birth, postcode, gender, strict=True
    ):
        builder.add(*row)
    return builder.build()
