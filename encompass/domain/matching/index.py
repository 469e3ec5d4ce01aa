"""The roster index: columns, blocking keys and name frequencies, built once per roster.

``RosterIndex.from_pupils(iterable)`` streams pupils into columns (see ``columns.py``), files
every row under its blocking keys (see ``blocking.py``) and counts name frequencies for the
term-frequency weights. ``candidates(query)`` is the blocking step, ``match(query)`` the whole
decision. A worker keeps one index in a ``RosterHolder`` and rebuilds it when the roster's
version changes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date

import numpy as np
import numpy.typing as npt

from encompass.domain.directory import Pupil
from encompass.domain.matching import blocking as bk
from encompass.domain.matching.columns import (
    EPOCH,
    RosterColumns,
    columns_from_pupils,
)
from encompass.domain.matching.fit import (
    FIT_MIN_POPULATION,
    FittedModel,
    model_weights,
    random_pair_levels,
    roster_weights,
)
from encompass.domain.matching.model import ChildQuery, MatchResult
from encompass.domain.matching.names import name_tokens, skeleton
from encompass.domain.matching.nicknames import related_names
from encompass.domain.matching.postcodes import normalise_postcode
from encompass.domain.matching.scoring import PreparedQuery, TermFrequencies, prepare, score

MAX_BLOCK = 400
"""A blocking key shared by more pupils than this says too little to be worth scoring."""
INDEX_RANDOM_PAIRS = 20_000
"""Random roster pairs behind the roster's own date and postcode weights (about a second)."""
TF_MIN_POPULATION = 10_000
"""Below this many pupils name frequencies are noise: the default weights are used."""


def _family_parts(tokens: tuple[str, ...]) -> tuple[str, ...]:
    """Blocking parts of a family name: each part, and the whole when it has several."""
    return tokens if len(tokens) < 2 else (*tokens, "".join(tokens))


def prepare_query(query: ChildQuery) -> PreparedQuery:
    """Normalise a reported child once for blocking and scoring."""
    return prepare(
        query.given_name,
        query.family_name,
        query.date_of_birth,
        query.postcode,
        query.upn,
        query.gender,
        query.school_hint,
    )


class _KeyList:
    """The blocking keys of one reported child, gathered as columns then mixed at once."""

    def __init__(self) -> None:
        self.kinds: list[int] = []
        self.cols: tuple[list[int], list[int], list[int]] = ([], [], [])

    def add(self, kind: int, a: int, b: int = 0, c: int = 0) -> None:
        self.kinds.append(kind)
        self.cols[0].append(a)
        self.cols[1].append(b)
        self.cols[2].append(c)

    def postcode(self, pid: int, family_ids: list[int], skeletons: list[int]) -> None:
        """Postcode with each family part, and with each first-name skeleton."""
        for fid in family_ids:
            self.add(bk.POSTCODE_FAMILY, pid, fid)
        for sid in skeletons:
            self.add(bk.POSTCODE_GIVEN, pid, sid)

    def dob(self, dob: date, pid: int | None, family_ids: list[int], skeletons: list[int]) -> None:
        """Date of birth with each name, each name pair with the year and the day of the
        year, and the date with the postcode."""
        day = dob.toordinal() - EPOCH
        mday = dob.month * 32 + dob.day
        for fid in family_ids:
            self.add(bk.DOB_FAMILY, day, fid)
            for sid in skeletons:
                self.add(bk.FAMILY_YEAR, fid, sid, dob.year)
                self.add(bk.FAMILY_DAY, fid, sid, mday)
        for sid in skeletons:
            self.add(bk.DOB_GIVEN, day, sid)
        if pid is not None:
            self.add(bk.DOB_POSTCODE, day, pid)

    def names(self, family_ids: list[int], skeletons: list[int]) -> None:
        """Each family part with each first-name skeleton."""
        for fid in family_ids:
            for sid in skeletons:
                self.add(bk.FAMILY_GIVEN, fid, sid)

    def mixed(self) -> bk.KeyArray:
        return bk.mix3(
            np.array(self.kinds, dtype=np.int64),
            *(np.array(c, dtype=np.int64) for c in self.cols),
        )


class RosterIndex:
    """A roster of any size, held as arrays, with its blocking keys and name frequencies."""

    def __init__(
        self,
        columns: RosterColumns,
        postcodes: Iterable[str] | None = None,
        model: FittedModel | None = None,
    ) -> None:
        """Index ``columns``; ``postcodes`` is every real postcode (e.g. the ONS Postcode
        Directory), so that a reported postcode which does not exist is known to be a slip;
        ``model``: the Fellegi-Sunter model fitted for this roster (``fit.fit_roster``), whose
        m and u weigh every level; without one, the hand-set m with the u of dates and
        postcodes measured on the roster."""
        self.columns = columns
        self._directory = (
            None if postcodes is None else frozenset(normalise_postcode(p) for p in postcodes)
        )
        n = len(columns)
        given_first = [name_tokens(g)[:1] for g in columns.given_names]
        self._skeleton_ids: dict[str, int] = {}
        self._family_ids: dict[str, int] = {}
        skel_of_given = np.array(
            [self._skeleton_id(t[0]) if t else -1 for t in given_first], dtype=np.int64
        )
        # family vocabulary id -> its blocking parts, flattened into (family id, part id) pairs
        pair_family: list[int] = []
        pair_part: list[int] = []
        for fid, name in enumerate(columns.family_names):
            for part in _family_parts(name_tokens(name)):
                pair_family.append(fid)
                pair_part.append(self._family_ids.setdefault(part, len(self._family_ids)))
        pf, pp = np.array(pair_family, dtype=np.int64), np.array(pair_part, dtype=np.int64)
        per_family = np.bincount(pf, minlength=len(columns.family_names))
        starts = np.concatenate(([0], np.cumsum(per_family)[:-1]))
        rows = np.arange(n, dtype=np.int32)
        fam = columns.family.astype(np.int64)
        repeat = per_family[fam]
        f_rows = np.repeat(rows, repeat)
        offset = np.arange(f_rows.shape[0]) - np.repeat(np.cumsum(repeat) - repeat, repeat)
        f_part = pp[starts[fam[f_rows]] + offset]
        dob = columns.dob_days.astype(np.int64)
        years, mdays = bk.dob_parts(columns.dob_days)
        postcode_norm: dict[str, int] = {}
        pc_ids = np.array(
            [
                postcode_norm.setdefault(normalise_postcode(p), len(postcode_norm))
                for p in columns.postcodes
            ],
            dtype=np.int64,
        )
        self._postcode_ids = postcode_norm
        gskel = skel_of_given[columns.given]
        pc_row = pc_ids[columns.postcode]
        has_upn = columns.upn != b""
        zero = np.zeros(n, dtype=np.int64)
        fzero = np.zeros(f_rows.shape[0], dtype=np.int64)

        def kind(k: int, size: int) -> npt.NDArray[np.int64]:
            return np.full(size, k, dtype=np.int64)

        upn_codes = bk.upn_codes(columns.upn[has_upn]).view(np.int64)
        parts: list[tuple[bk.KeyArray, npt.NDArray[np.int32]]] = [
            (
                bk.mix3(
                    kind(bk.UPN_KEY, upn_codes.shape[0]), upn_codes, zero[has_upn], zero[has_upn]
                ),
                rows[has_upn],
            ),
            (bk.mix3(kind(bk.DOB_FAMILY, f_rows.shape[0]), dob[f_rows], f_part, fzero), f_rows),
            (bk.mix3(kind(bk.DOB_GIVEN, n), dob, gskel, zero)[gskel >= 0], rows[gskel >= 0]),
            (
                bk.mix3(kind(bk.POSTCODE_FAMILY, f_rows.shape[0]), pc_row[f_rows], f_part, fzero),
                f_rows,
            ),
            (
                bk.mix3(kind(bk.POSTCODE_GIVEN, n), pc_row, gskel, zero)[gskel >= 0],
                rows[gskel >= 0],
            ),
            (
                bk.mix3(
                    kind(bk.FAMILY_YEAR, f_rows.shape[0]), f_part, gskel[f_rows], years[f_rows]
                ),
                f_rows,
            ),
            (
                bk.mix3(kind(bk.FAMILY_DAY, f_rows.shape[0]), f_part, gskel[f_rows], mdays[f_rows]),
                f_rows,
            ),
            (bk.mix3(kind(bk.DOB_POSTCODE, n), dob, pc_row, zero), rows),
            (bk.mix3(kind(bk.FAMILY_GIVEN, f_rows.shape[0]), f_part, gskel[f_rows], fzero), f_rows),
        ]
        self._keys = bk.SortedKeys(
            np.concatenate([k for k, _ in parts]), np.concatenate([r for _, r in parts])
        )
        self.frequencies = self._frequencies(given_first, f_part, n)
        if model is not None:
            self.weights = model_weights(model, n)
        else:
            # the prior and the chance agreement of dates and postcodes, measured here
            self.weights = roster_weights(
                random_pair_levels(
                    self.columns.pupil,
                    n if n >= FIT_MIN_POPULATION else 0,
                    pairs=INDEX_RANDOM_PAIRS,
                ),
                n,
            )
        self._names_max = self.weights.names_max()

    def _skeleton_id(self, token: str) -> int:
        return self._skeleton_ids.setdefault(skeleton(token), len(self._skeleton_ids))

    def _frequencies(
        self, given_first: list[tuple[str, ...]], f_part: npt.NDArray[np.int64], n: int
    ) -> TermFrequencies:
        if n < TF_MIN_POPULATION:
            return TermFrequencies()
        given: Counter[str] = Counter()
        for gid, count in enumerate(
            np.bincount(self.columns.given, minlength=len(given_first)).tolist()
        ):
            if given_first[gid]:
                given[given_first[gid][0]] += count
        part_names = list(self._family_ids)
        family = {part_names[i]: c for i, c in enumerate(np.bincount(f_part).tolist()) if c}
        return TermFrequencies(given=dict(given), family=family, population=n)

    @classmethod
    def from_pupils(
        cls,
        pupils: Iterable[Pupil],
        postcodes: Iterable[str] | None = None,
        model: FittedModel | None = None,
    ) -> RosterIndex:
        """Build from any iterable of pupils, streamed (a generator is fine); ``postcodes``
        and ``model`` as for the constructor."""
        return cls(columns_from_pupils(pupils), postcodes, model)

    def __len__(self) -> int:
        return len(self.columns)

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns and the blocking index (arrays only)."""
        return self.columns.nbytes + self._keys.nbytes

    def _name_ids(self, q: PreparedQuery) -> tuple[list[int], list[int]]:
        """The family-name parts and first-name skeletons (with the diminutives' and full
        forms') of a reported child known to this roster, read straight and swapped."""
        family_ids: list[int] = []
        skeletons: list[int] = []
        for first, family in ((q.given[:1], q.family), (q.family[:1], q.given)):
            for part in _family_parts(family):
                fid = self._family_ids.get(part)
                if fid is not None and fid not in family_ids:
                    family_ids.append(fid)
            for name in (*first, *(related_names(first[0]) if first else ())):
                sid = self._skeleton_ids.get(skeleton(name))
                if sid is not None and sid not in skeletons:
                    skeletons.append(sid)
        return family_ids, skeletons

    def _query_keys(self, q: PreparedQuery) -> bk.KeyArray:
        """Every blocking key of a reported child, its UPN's first (exempt from the block
        size limit)."""
        family_ids, skeletons = self._name_ids(q)
        pid = self._postcode_ids.get(q.postcode) if q.postcode else None
        keys = _KeyList()
        if pid is not None:
            keys.postcode(pid, family_ids, skeletons)
        if q.dob is not None:
            keys.dob(q.dob, pid, family_ids, skeletons)
        else:  # no date: the names alone (common names give blocks too large, and are skipped)
            keys.names(family_ids, skeletons)
        mixed = keys.mixed()
        if not q.upn:
            return mixed
        upn = bk.mix3(
            np.array([bk.UPN_KEY]),
            np.array([bk.upn_code(q.upn)]),
            np.zeros(1, np.int64),
            np.zeros(1, np.int64),
        )
        return np.concatenate((upn, mixed))

    def prepare(self, query: ChildQuery) -> PreparedQuery:
        """Normalise a reported child, noting whether its postcode exists."""
        q = prepare_query(query)
        if not q.postcode:
            return q
        if q.postcode in self._postcode_ids:
            return replace(q, postcode_exists=True)
        if self._directory is not None:
            return replace(q, postcode_exists=q.postcode in self._directory)
        return q

    def candidate_rows(self, query: ChildQuery | PreparedQuery) -> npt.NDArray[np.int32]:
        """The rows blocking finds for a reported child (distinct, ascending)."""
        q = self.prepare(query) if isinstance(query, ChildQuery) else query
        return self._keys.lookup(self._query_keys(q), MAX_BLOCK, exempt=1 if q.upn else 0)

    def candidates(self, query: ChildQuery) -> list[Pupil]:
        """The blocking step: the pupils worth scoring for this child."""
        return [self.columns.pupil(r) for r in self.candidate_rows(query).tolist()]

    def match(self, query: ChildQuery) -> MatchResult:
        """Block, score every candidate with this roster's name frequencies, and decide."""
        from encompass.domain.matching.decision import PRUNE_BELOW, result_of

        q = self.prepare(query)
        scored = (
            score(
                q,
                self.columns.pupil(r),
                self.frequencies,
                floor=PRUNE_BELOW,
                weights=self.weights,
                names_max=self._names_max,
            )
            for r in self.candidate_rows(q).tolist()
        )
        return result_of(q, [s for s in scored if s is not None])


class RosterHolder:
    """One index per worker process, rebuilt only when the roster's version changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: str | None = None
        self._index: RosterIndex | None = None

    def get(self, version: str, load: Callable[[], Iterable[Pupil]]) -> RosterIndex:
        """The index for ``version``, loading it with ``load()`` if it is not the current one."""
        with self._lock:
            if self._index is None or self._version != version:
                self._index = RosterIndex.from_pupils(load())
                self._version = version
            return self._index


def days_of(d: date) -> int:
    """Days since 1970 of a date, as the columns store it."""
    return d.toordinal() - EPOCH
