"""Reading the directory CSV files (docs/directory.md) into validated rows.

One pydantic boundary model per file. Reading is pure (files in, rows out, no database):
:func:`read_rows` yields ``(line, row)`` and stops at the first bad row with a
:class:`DirectoryImportError` whose message is one line, ``FILE:LINE: reason``, counting
lines as a person does (the header is line 1). Messages never repeat a pupil's or a Key
Adult's personal data: the line number is enough to find the row.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Generator, Iterator
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails

from encompass.domain.directory import (
    WEEKDAYS_CALENDAR,
    HolidayPolicy,
    KeyAdultRole,
    Nation,
    SettingKind,
    SpanKind,
)
from encompass.domain.postcode import canonical_postcode, is_uk_postcode
from encompass.services.directory.public_keys import public_key_pem

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
# ONS local authority codes: E06000020 (England), W06…, S12…, N09….
LA_CODE = re.compile(r"^[EWSN][0-9]{8}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class DirectoryImportError(Exception):
    """A directory file or row refused; ``str()`` is one line: ``FILE:LINE: reason``."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        # Line 0: the file as a whole (it cannot be read); then there is no line to name.
        super().__init__(f"{file}:{line}: {reason}" if line else f"{file}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


def _postcode(value: str) -> str:
    if not is_uk_postcode(value):
        raise ValueError("must be a UK postcode such as TF3 4NT")
    return canonical_postcode(value)


def _date(value: object) -> object:
    # pydantic alone would also take timestamps and datetimes; the format says YYYY-MM-DD.
    if isinstance(value, str):
        if not _DATE.match(value):
            raise ValueError("must be a date YYYY-MM-DD")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError("must be a real date YYYY-MM-DD") from None
    return value


def _time(value: object) -> object:
    if isinstance(value, str):
        found = _TIME.match(value)
        if not found or int(found[1]) > 23 or int(found[2]) > 59:
            raise ValueError("must be a time HH:MM (24-hour, local)")
        return time(int(found[1]), int(found[2]))
    return value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("must be an e-mail address")
    return value


def _la_code(value: str) -> str:
    code = value.strip().upper()
    if not LA_CODE.match(code):
        raise ValueError("must be an ONS local authority code such as E06000020")
    return code


def _optional_la_code(value: str | None) -> str | None:
    return None if value is None else _la_code(value)


def _upn(value: str) -> str:
    value = value.upper()
    if len(value) != 13 or not value.isascii() or not value.isalnum():
        raise ValueError("must be a UPN of 13 letters and digits")
    return value


def _webhook(value: str) -> str:
    # Webhooks carry sealed notices and are signed, but an open channel still leaks who
    # receives what, and when: plain HTTP only to this machine (tests, a local relay).
    loopback = ("http://localhost", "http://127.0.0.1", "http://[::1]")
    ok = value.startswith("https://") or any(
        value == host or value.startswith((f"{host}:", f"{host}/")) for host in loopback
    )
    if not ok or len(value) > 2000 or any(c.isspace() for c in value):
        raise ValueError("must be an https:// URL (plain http only to localhost), or empty")
    return value


def _key(value: str, info: ValidationInfo) -> str:
    base = info.context.get("base") if isinstance(info.context, dict) else None
    return public_key_pem(value, base if isinstance(base, Path) else Path.cwd())


def _calendar(value: str) -> str:
    if value == WEEKDAYS_CALENDAR:
        raise ValueError(f"'{WEEKDAYS_CALENDAR}' is built in and cannot be redefined")
    return value


_ID = "an id of letters, digits and _ . : / - (at most 64, starting with a letter or digit)"
Id = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$", max_length=64, description=_ID)
]
Name = Annotated[str, Field(max_length=200, description="at most 200 characters")]
Day = Annotated[date, BeforeValidator(_date), Field(description="a date YYYY-MM-DD")]
ClockTime = Annotated[time, BeforeValidator(_time), Field(description="a time HH:MM")]
Postcode = Annotated[str, AfterValidator(_postcode)]


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", use_enum_values=True)


class SettingIn(_Row):
    """A row of ``settings.csv``."""

    setting_id: Id
    name: Name
    kind: Annotated[
        SettingKind,
        BeforeValidator(_lower),
        Field(description="school, college, early_years or local_authority"),
    ]
    nation: Annotated[
        Nation,
        BeforeValidator(_lower),
        Field(description="england, wales, scotland or northern_ireland"),
    ]
    postcode: Postcode
    day_starts: ClockTime
    day_ends: ClockTime
    dispatch_at: ClockTime
    calendar_id: Id
    holiday_policy: Annotated[
        HolidayPolicy, BeforeValidator(_lower), Field(description="hold or holiday_contact")
    ]
    # Optional column: the local authority the setting belongs to (its admins' area).
    la_code: Annotated[str | None, AfterValidator(_optional_la_code)] = None

    @model_validator(mode="after")
    def _day(self) -> Self:
        if self.kind == SettingKind.LOCAL_AUTHORITY and not self.la_code:
            raise ValueError("la_code is needed for a setting of kind local_authority")
        if not self.day_starts < self.day_ends:
            raise ValueError("day_starts must come before day_ends")
        if not self.dispatch_at < self.day_ends:
            raise ValueError("dispatch_at must come before day_ends")
        return self


class CalendarSpanIn(_Row):
    """A row of ``calendars.csv``."""

    calendar_id: Annotated[Id, AfterValidator(_calendar)]
    first_day: Day
    last_day: Day
    kind: Annotated[SpanKind, BeforeValidator(_lower), Field(description="term or closed")]

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.last_day < self.first_day:
            raise ValueError("last_day comes before first_day")
        return self


class KeyAdultIn(_Row):
    """A row of ``key_adults.csv``; ``public_key`` becomes the PEM text itself."""

    key_adult_id: Id
    setting_id: Id
    name: Name
    role: Annotated[
        KeyAdultRole,
        BeforeValidator(_lower),
        Field(description="key_adult, deputy or holiday_contact"),
    ]
    email: Annotated[str, Field(max_length=254), AfterValidator(_email)]
    webhook_url: Annotated[str, AfterValidator(_webhook)] | None = None
    public_key: Annotated[str, AfterValidator(_key)]


class PupilIn(_Row):
    """A row of ``pupils.csv``."""

    setting_id: Id
    upn: Annotated[str, AfterValidator(_upn)] | None = None
    given_name: Name
    family_name: Name
    date_of_birth: Day
    postcode: Postcode
    gender: Annotated[str, Field(max_length=20)] | None = None


Row = TypeVar("Row", bound=BaseModel)


def _reason(model: type[BaseModel], error: ErrorDetails) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "missing":
        return f"{field} is empty"
    if error["type"] == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"{field} {message}" if field else message
    info = model.model_fields.get(field)
    described = info.description if info is not None else None
    if described is None:  # pydantic's own words, which do not quote the value
        return f"{field}: {error['msg']}"
    return f"{field} must be {described}"


def _columns(model: type[BaseModel], cells: list[str], label: str) -> dict[str, int]:
    names = [cell.strip().lower() for cell in cells]
    for name in names:
        if name and names.count(name) > 1:
            raise DirectoryImportError(label, 1, f"column {name} appears twice in the header")
    missing = [
        name
        for name, info in model.model_fields.items()
        if info.is_required() and name not in names
    ]
    if missing:
        raise DirectoryImportError(label, 1, "the header lacks column(s) " + ", ".join(missing))
    return {name: names.index(name) for name in model.model_fields if name in names}


def _text_lines(handle: BinaryIO, label: str) -> Iterator[str]:
    # Decoded line by line (not by the 8 kB block a text file would use) so that a byte
    # that is not UTF-8 is reported on its own line.
    for number, raw in enumerate(handle, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DirectoryImportError(label, number, "not UTF-8 text") from None
        yield text.removeprefix("\ufeff") if number == 1 else text


def read_rows(
    path: Path, model: type[Row], *, label: str | None = None
) -> Generator[tuple[int, Row], None, None]:
    """Yield ``(line, row)`` for each data row of the CSV at ``path``, validated by ``model``.

    UTF-8 with or without a BOM; the header names the columns in any order; unknown columns
    are ignored, a missing optional column reads as empty; blank rows are skipped. The first
    bad row (or a bad header, or a file that is not UTF-8 CSV) raises
    :class:`DirectoryImportError` naming ``label`` (default: ``path`` as given) and the line.
    """
    label = label or str(path)
    context = {"base": path.parent}
    line = 1
    try:
        with path.open("rb") as handle:
            # strict: a stray quote must stop the import, not shift a value into the next column.
            reader = csv.reader(_text_lines(handle, label), strict=True)
            header = next(reader, None)
            if header is None:
                raise DirectoryImportError(label, 1, "the file is empty (no header row)")
            columns = _columns(model, header, label)
            line = reader.line_num + 1
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    # An empty cell is left out, so a required column reports "is empty" and
                    # an optional one takes its default.
                    data: dict[str, Any] = {}
                    for name, index in columns.items():
                        if index < len(cells) and (value := cells[index].strip()):
                            data[name] = value
                    try:
                        row = model.model_validate(data, context=context)
                    except ValidationError as exc:
                        raise DirectoryImportError(
                            label, line, _reason(model, exc.errors()[0])
                        ) from None
                    yield line, row
                line = reader.line_num + 1
    except OSError as exc:
        raise DirectoryImportError(label, 0, f"cannot read the file ({exc.strerror})") from None
    except csv.Error as exc:
        raise DirectoryImportError(label, line, f"not valid CSV ({exc})") from None
