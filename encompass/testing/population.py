"""A seeded, synthetic but realistic population of UK children, with ground truth.

Households get a postcode (about eight children share one), a surname (British surnames by
their real frequencies, a long tail of other origins, one in ten double-barrelled), one to four
children spaced like siblings, twins at the real rate, half-siblings with another surname and,
in some households, cousins with the same surname. Children get first names from real
frequency lists (so "Jack Smith" born on one day at two addresses happens), a middle name for
about half, and enrolments: nursery (2-3), primary (4-10), secondary (11-17), some not on any
roll, some on two (nursery wrap-around, dual registration).

Queries are police reports of some of these children, with the errors of ``errors.py``, and of
children on no roster: unenrolled children, an absent twin of an enrolled one, a namesake born
the same day elsewhere. Each query knows its truth: the settings (and roster rows) it must
match, or none.

The roster is generated twice (once to pick queries, once streamed into an index) instead of
being held, so a million-pupil roster never exists as a million objects.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from stdnum.gb import upn as stdnum_upn

from encompass.domain.directory import Pupil
from encompass.domain.match import ChildQuery
from encompass.domain.matching.names import normalise_name, skeleton
from encompass.domain.matching.nicknames import related_names
from encompass.testing import errors as err
from encompass.testing.name_data import NameData, name_data

TODAY = date(2025, 11, 10)
_AREAS = (
    "B",
    "BD",
    "BL",
    "BN",
    "BS",
    "CF",
    "CV",
    "DE",
    "DN",
    "E",
    "EX",
    "HU",
    "L",
    "LE",
    "LS",
    "LU",
    "M",
    "ME",
    "MK",
    "N",
    "NE",
    "NG",
    "NN",
    "NR",
    "OL",
    "OX",
    "PL",
    "PO",
    "PR",
    "RG",
    "S",
    "SE",
    "SO",
    "SR",
    "ST",
    "SW",
    "TS",
    "W",
    "WF",
    "WS",
    "WV",
    "YO",
)
_LA = (
    201,
    202,
    206,
    301,
    305,
    330,
    331,
    335,
    341,
    350,
    370,
    380,
    383,
    800,
    801,
    803,
    821,
    831,
    850,
    855,
    860,
    873,
    878,
    881,
    886,
    891,
    925,
    931,
    936,
    938,
)
_UNIT = "ABDEFGHJLNPQRSTUWXYZ"


@dataclass(frozen=True)
class LabelledQuery:
    """A report of one child and what the matcher must answer."""

    query: ChildQuery
    truth: frozenset[str]  # settings the child is enrolled at; empty: on no roster
    truth_rows: frozenset[int]  # their row numbers in ``Population.pupils()``
    kind: str  # enrolled | unenrolled | absent_twin | namesake
    errors: tuple[str, ...]


@dataclass
class _Child:
    given: str
    middle: str | None
    family: str
    dob: date
    gender: str
    postcode: str
    twin_of: _Child | None = None
    settings: tuple[str, ...] = ()


def _distinct_names(a: _Child, b: _Child) -> bool:
    """Names parents give twins: not one name twice, in two spellings, or as a short form,
    and not one twin's first name as the other's middle name."""
    ga, gb = a.given.lower(), b.given.lower()
    return (
        ga != gb
        and skeleton(normalise_name(ga)) != skeleton(normalise_name(gb))
        and gb not in related_names(ga)
        and a.middle != b.given
        and b.middle != a.given
    )


class Population:
    """A seeded world: ``pupils()`` streams the roster, ``queries`` are the labelled reports."""

    def __init__(
        self,
        seed: int,
        roster_size: int = 20_000,
        n_queries: int = 2_000,
        off_roster_share: float = 0.25,
        rates: err.Rates = err.RATES,
    ) -> None:
        self.seed, self.roster_size, self.n_queries = seed, roster_size, n_queries
        self.off_roster_share, self.rates = off_roster_share, rates
        self.queries: list[LabelledQuery] = []
        self._collect = True
        for _ in self._world():
            pass
        self._collect = False

    @property
    def postcodes(self) -> list[str]:
        """Every postcode of this world: its postcode directory (the ONS Postcode Directory's
        part in a real deployment)."""
        return self._postcodes(random.Random(self.seed))

    def pupils(self) -> Iterator[Pupil]:
        """The roster, regenerated from the seed: every pupil at every setting, in row order."""
        yield from self._world()

    # -- the world -------------------------------------------------------------------------
    def _postcodes(self, rng: random.Random) -> list[str]:
        count = max(40, self.roster_size // 8)
        districts = max(4, count // 400)
        codes: set[str] = set()
        while len(codes) < count:
            area = rng.choice(_AREAS)
            outward = f"{area}{rng.randrange(1, districts // len(_AREAS) + 3)}"
            codes.add(f"{outward} {rng.randrange(10)}{rng.choice(_UNIT)}{rng.choice(_UNIT)}")
        return sorted(codes)

    def _world(self) -> Iterator[Pupil]:
        rng = random.Random(self.seed)
        qrng = random.Random(self.seed * 7919 + 1)
        data = name_data()
        postcodes = self._postcodes(rng)
        by_outward: dict[str, list[str]] = {}
        for pc in postcodes:
            by_outward.setdefault(pc.split()[0], []).append(pc)
        share_q = self.n_queries * (1 - self.off_roster_share) / self.roster_size
        self._serial = 0
        row = 0
        while row < self.roster_size:
            postcode = rng.choice(postcodes)
            for child in self._household(rng, data, postcode):
                # twins go to the same settings (a co-twin on no roll is a query of its own)
                settings = (
                    list(child.twin_of.settings) if child.twin_of else self._enrol(rng, child)
                )
                child.settings = tuple(settings)
                upn = self._upn(rng) if any(not s.startswith("EY") for s in settings) else None
                rows: list[int] = []
                for i, setting in enumerate(settings):
                    given = child.given
                    if i and rng.random() < 0.15:  # the nursery knows the child by a short form
                        short = sorted(
                            n for n in related_names(given.lower()) if len(n) < len(given)
                        )
                        given = short[0].title() if short else given
                    elif child.middle and rng.random() < 0.2:
                        given = f"{child.given} {child.middle}"
                    yield Pupil(
                        setting,
                        upn if not setting.startswith("EY") else None,
                        given,
                        child.family,
                        child.dob,
                        child.postcode,
                        child.gender,
                    )
                    rows.append(row)
                    row += 1
                if self._collect:
                    self._maybe_query(
                        qrng, data, child, settings, rows, upn, by_outward, postcodes, share_q
                    )

    def _household(self, rng: random.Random, data: NameData, postcode: str) -> list[_Child]:
        family = self._surname(rng, data)
        size = rng.choices((1, 2, 3, 4), weights=(40, 38, 15, 7))[0]
        age = rng.uniform(2.0, 17.9)
        children: list[_Child] = []
        units = [family] if rng.random() > 0.03 else [family, family]  # cousins at one address
        for unit_family in units:
            for _ in range(size):
                if age < 2.0:
                    break
                dob = TODAY - timedelta(days=int(age * 365.25))
                surname = unit_family if rng.random() > 0.1 else self._surname(rng, data)
                child = self._child(rng, data, surname, dob, postcode)
                for _ in range(5):  # brothers and sisters are not given one name twice
                    if all(_distinct_names(child, other) for other in children):
                        break
                    child = self._child(rng, data, surname, dob, postcode)
                children.append(child)
                if rng.random() < 0.016:  # twins
                    twin = self._child(rng, data, surname, dob, postcode)
                    if rng.random() < 0.3:  # alliterative twin names (Mia and Maya)
                        for _ in range(10):
                            twin = self._child(rng, data, surname, dob, postcode, child.gender)
                            if twin.given[0] == child.given[0]:
                                break
                    if _distinct_names(child, twin):
                        twin.twin_of = child
                        children.append(twin)
                age -= rng.uniform(1.2, 5.0)
            age = rng.uniform(2.0, 17.9)
        return children

    @staticmethod
    def _surname(rng: random.Random, data: NameData) -> str:
        roll = rng.random()
        if roll < 0.10:
            return f"{data.surnames_common.draw(rng)}-{data.surnames_common.draw(rng)}"
        if roll < 0.55:
            return data.surnames_common.draw(rng)
        return rng.choice(data.surnames_tail)

    @staticmethod
    def _child(
        rng: random.Random,
        data: NameData,
        family: str,
        dob: date,
        postcode: str,
        gender: str | None = None,
    ) -> _Child:
        gender = gender or ("M" if rng.random() < 0.51 else "F")
        names = data.boys if gender == "M" else data.girls
        given = names.draw(rng)
        middle = names.draw(rng) if rng.random() < 0.5 else None
        return _Child(given, middle if middle != given else None, family, dob, gender, postcode)

    def _enrol(self, rng: random.Random, child: _Child) -> list[str]:
        age = (TODAY - child.dob).days / 365.25
        district = child.postcode.split()[0]
        if age < 4:
            if rng.random() > 0.7:
                return []
            settings = [f"EY-{district}-{rng.randrange(3)}"]
            if age >= 3.5 and rng.random() < 0.1:
                settings.append(f"PRI-{district}-{rng.randrange(3)}")  # reception + nursery
            return settings
        if rng.random() < 0.03:  # home educated, missing education
            return []
        if age < 11:
            settings = [f"PRI-{district}-{rng.randrange(3)}"]
            if age < 5.5 and rng.random() < 0.08:
                settings.append(f"EY-{district}-{rng.randrange(3)}")
            return settings
        settings = [f"SEC-{district[:2].rstrip('0123456789')}-{rng.randrange(4)}"]
        if rng.random() < 0.01:
            settings.append(f"AP-{district}")  # dual registration with alternative provision
        return settings

    def _upn(self, rng: random.Random) -> str:
        self._serial += 1
        body = (
            f"{rng.choice(_LA)}{rng.randrange(2000, 7000)}{rng.randrange(10, 25)}"
            f"{self._serial % 1000:03d}"
        )
        return stdnum_upn.calc_check_digit(body) + body

    # -- queries ---------------------------------------------------------------------------
    def _maybe_query(
        self,
        rng: random.Random,
        data: NameData,
        child: _Child,
        settings: list[str],
        rows: list[int],
        upn: str | None,
        by_outward: dict[str, list[str]],
        postcodes: list[str],
        share_q: float,
    ) -> None:
        # off-roster reports per child: 40% unenrolled children (about 7% of all children),
        # 45% namesakes born the same day elsewhere, 15% absent twins of enrolled children
        n_off = self.n_queries * self.off_roster_share
        if not settings:
            if rng.random() < 0.4 * n_off / (0.07 * self.roster_size):
                self._report(rng, data, child, [], [], None, "unenrolled", by_outward, postcodes)
            return
        if rng.random() < share_q:
            self._report(rng, data, child, settings, rows, upn, "enrolled", by_outward, postcodes)
        roll = rng.random() * self.roster_size / n_off
        if roll < 0.15 and child.twin_of is None:
            twin = self._child(rng, data, child.family, child.dob, child.postcode)
            if _distinct_names(child, twin):
                self._report(
                    rng,
                    data,
                    twin,
                    [],
                    [],
                    None,
                    "absent_twin",
                    by_outward,
                    postcodes,
                    co_twin=child,
                )
        elif roll < 0.60:  # a fifth of namesakes live in the same district (Birmingham's Ali Khans)
            outward = child.postcode.split()[0]
            near = rng.random() < 0.2 and len(by_outward[outward]) > 1
            far = rng.choice(by_outward[outward] if near else postcodes)
            if far != child.postcode and (near or far.split()[0] != outward):
                namesake = _Child(child.given, None, child.family, child.dob, child.gender, far)
                self._report(
                    rng,
                    data,
                    namesake,
                    [],
                    [],
                    None,
                    "namesake",
                    by_outward,
                    postcodes,
                    avoid=child.postcode,
                )

    def _report(  # noqa: C901 (one draw per kind of reporting error)
        self,
        rng: random.Random,
        data: NameData,
        child: _Child,
        settings: list[str],
        rows: list[int],
        upn: str | None,
        kind: str,
        by_outward: dict[str, list[str]],
        postcodes: list[str],
        avoid: str | None = None,
        co_twin: _Child | None = None,
    ) -> None:
        """Report a child. A namesake's report keeps its true postcode when an error would put it
        on, or one character from, the enrolled child's (``avoid``): that report would be the
        enrolled child's own, and no matcher could tell them apart. Likewise a co-twin on no
        roll (``co_twin`` enrolled) is never reported under a form of the enrolled twin's name
        (Jackson reported as Jack, twin John): see the benchmark's limits."""
        r = self.rates
        given, errors = err.report_given(child.given, child.middle, rng, data.variants, r)
        if co_twin is not None:
            reported = _Child(given, None, child.family, child.dob, child.gender, "")
            if not _distinct_names(reported, co_twin):
                given, errors = child.given, []
        family, ferr = err.report_family(
            child.family, rng, self._surname(rng, data), data.surnames_common.draw(rng), r
        )
        errors += ferr
        if rng.random() < r.names_swapped:
            given, family, errors = family, given, [*errors, "names_swapped"]
        dob, derr = err.report_dob(child.dob, rng, r)
        errors += derr
        postcode, roll = child.postcode, rng.random()
        if roll < r.postcode_typo:
            postcode, errors = err.postcode_typo(postcode, rng), [*errors, "postcode_typo"]
        elif roll < r.postcode_typo + r.moved_nearby:
            nearby = [p for p in by_outward[postcode.split()[0]] if p != postcode]
            if nearby:
                postcode, errors = rng.choice(nearby), [*errors, "moved_nearby"]
        elif roll < r.postcode_typo + r.moved_nearby + r.moved_away:
            postcode, errors = rng.choice(postcodes), [*errors, "moved_away"]
        elif roll < r.postcode_typo + r.moved_nearby + r.moved_away + r.postcode_missing:
            postcode, errors = "", [*errors, "postcode_missing"]
        reported_upn: str | None = None
        roll = rng.random()
        if upn and roll < r.upn_reported:
            reported_upn = upn
        elif r.upn_reported <= roll < r.upn_reported + r.upn_conflicting:
            body = (
                f"{rng.choice(_LA)}{rng.randrange(2000, 7000)}{rng.randrange(10, 25)}"
                f"{rng.randrange(1000):03d}"
            )
            reported_upn = stdnum_upn.calc_check_digit(body) + body
            errors = [*errors, "upn_conflicting"]
        elif (
            upn
            and r.upn_reported + r.upn_conflicting
            <= roll
            < r.upn_reported + r.upn_conflicting + r.upn_invalid
        ):
            reported_upn, errors = (
                upn[:-1] + ("0" if upn[-1] != "0" else "1"),
                [*errors, "upn_invalid"],
            )
        if avoid and err.near(err.postcode_key(postcode), err.postcode_key(avoid)):
            postcode = child.postcode
        gender = child.gender if rng.random() < r.gender_reported else None
        ref = f"q{len(self.queries)}"
        self.queries.append(
            LabelledQuery(
                ChildQuery(
                    ref,
                    given,
                    family,
                    dob,
                    postcode.lower() if rng.random() < 0.1 else postcode,
                    reported_upn,
                    gender,
                ),
                frozenset(settings),
                frozenset(rows),
                kind,
                tuple(errors),
            )
        )
