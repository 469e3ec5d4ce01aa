"""The CSV boundary: each bad row is refused with one line naming the file, line and reason."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import BaseModel

from encompass.domain.postcode import canonical_postcode
from encompass.services.directory.csv_rows import (
    CalendarSpanIn,
    DirectoryImportError,
    KeyAdultIn,
    PupilIn,
    SettingIn,
    read_rows,
)
from tests.fixtures.directory.sample import HERE, public_pem

SETTINGS = (
    "setting_id,name,kind,nation,postcode,day_starts,day_ends,dispatch_at,calendar_id,"
    "holiday_policy"
)
GOOD_SETTING = "S1,Example School,school,england,TF3 4NT,08:45,15:15,07:30,weekdays,hold"
CALENDARS = "calendar_id,first_day,last_day,kind"
KEY_ADULTS = "key_adult_id,setting_id,name,role,email,webhook_url,public_key"
PUPILS = "setting_id,upn,given_name,family_name,date_of_birth,postcode,gender"
GOOD_PUPIL = "S1,A801200001001,Amelia,Example,2015-03-02,TF3 4NT,F"


def _rows(
    tmp_path: Path,
    model: type[BaseModel],
    text: str,
    *,
    name: str = "f.csv",
    encoding: str = "utf-8",
) -> list[tuple[int, BaseModel]]:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return list(read_rows(path, model, label=name))


def _refusal(tmp_path: Path, model: type[BaseModel], text: str) -> str:
    with pytest.raises(DirectoryImportError) as caught:
        _rows(tmp_path, model, text)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (
            GOOD_SETTING.replace("school,", "primary,"),
            "kind must be school, college, early_years or local_authority",
        ),
        (
            GOOD_SETTING.replace("england", "france"),
            "nation must be england, wales, scotland or northern_ireland",
        ),
        (
            GOOD_SETTING.replace("07:30", "7.30"),
            "dispatch_at must be a time HH:MM (24-hour, local)",
        ),
        (GOOD_SETTING.replace("15:15", "25:00"), "day_ends must be a time HH:MM (24-hour, local)"),
        (
            GOOD_SETTING.replace("08:45,15:15", "15:15,08:45"),
            "day_starts must come before day_ends",
        ),
        (GOOD_SETTING.replace("07:30", "16:00"), "dispatch_at must come before day_ends"),
        (
            GOOD_SETTING.replace("TF3 4NT", "12345"),
            "postcode must be a UK postcode such as TF3 4NT",
        ),
        (GOOD_SETTING.replace("Example School", ""), "name is empty"),
        (
            GOOD_SETTING.replace("S1,", "S 1,"),
            "setting_id must be an id of letters, digits and "
            "_ . : / - (at most 64, starting with a letter or digit)",
        ),
        (
            GOOD_SETTING.replace(",hold", ",sometimes"),
            "holiday_policy must be hold or holiday_contact",
        ),
    ],
)
def test_bad_setting_rows(tmp_path: Path, row: str, reason: str) -> None:
    # Given a good row on line 2, the bad one on line 3
    text = f"{SETTINGS}\n{GOOD_SETTING}\n{row}\n{GOOD_SETTING}\n"
    assert _refusal(tmp_path, SettingIn, text) == f"f.csv:3: {reason}"


def test_good_setting_row_is_typed(tmp_path: Path) -> None:
    [(line, row)] = _rows(tmp_path, SettingIn, f"{SETTINGS}\n{GOOD_SETTING.lower()}\n")
    assert line == 2
    assert isinstance(row, SettingIn)
    assert (row.day_starts, row.postcode, row.kind) == (time(8, 45), "TF3 4NT", "school")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("T1,2026-09-02,2026-09-01,term", "last_day comes before first_day"),
        ("T1,2026-13-01,2026-12-18,term", "first_day must be a real date YYYY-MM-DD"),
        ("T1,02/09/2026,2026-12-18,term", "first_day must be a date YYYY-MM-DD"),
        ("T1,2026-09-02,1767225600,term", "last_day must be a date YYYY-MM-DD"),
        ("T1,2026-09-02,2026-12-18,holiday", "kind must be term or closed"),
        (
            "weekdays,2026-09-02,2026-12-18,term",
            "calendar_id 'weekdays' is built in and cannot be redefined",
        ),
    ],
)
def test_bad_calendar_rows(tmp_path: Path, row: str, reason: str) -> None:
    assert _refusal(tmp_path, CalendarSpanIn, f"{CALENDARS}\n{row}\n") == f"f.csv:2: {reason}"


def _key_adult(public_key: str, webhook: str = "", email: str = "dsl@school.example.org") -> str:
    return f'KA1,S1,Alex Example,key_adult,{email},{webhook},"{public_key}"'


def _pem_file(folder: Path, name: str, text: str) -> str:
    (folder / name).write_text(text, encoding="ascii")
    return name


def _ed25519_pem() -> str:
    return (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _private_pem() -> str:
    return (
        X25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda d: "keys/missing.pem",
            "public_key file keys/missing.pem cannot be read (No such file or directory)",
        ),
        (
            lambda d: _pem_file(d, "private.pem", _private_pem()),
            "public_key holds a PRIVATE key: give only the Key Adult's public key",
        ),
        (lambda d: _pem_file(d, "ed.pem", _ed25519_pem()), "public_key holds no X25519 public key"),
        (lambda d: _pem_file(d, "empty.pem", "no key here\n"), "public_key holds no PEM block"),
        (
            lambda d: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            "public_key holds no X25519 public key",
        ),
    ],
)
def test_bad_public_keys(tmp_path: Path, make: object, reason: str) -> None:
    assert callable(make)
    text = f"{KEY_ADULTS}\n{_key_adult(make(tmp_path))}\n"
    assert _refusal(tmp_path, KeyAdultIn, text) == f"f.csv:2: {reason}"


@pytest.mark.parametrize(
    ("webhook", "email", "reason"),
    [
        (
            "http://school.example.org/hook",
            "a@b.org",
            "webhook_url must be an https:// URL (plain http only to localhost), or empty",
        ),
        ("", "not-an-address", "email must be an e-mail address"),
    ],
)
def test_bad_key_adult_contacts(tmp_path: Path, webhook: str, email: str, reason: str) -> None:
    key = _pem_file(tmp_path, "k.pem", public_pem())
    text = f"{KEY_ADULTS}\n{_key_adult(key, webhook, email)}\n"
    assert _refusal(tmp_path, KeyAdultIn, text) == f"f.csv:2: {reason}"


def test_key_file_relative_to_csv_with_several_blocks(tmp_path: Path) -> None:
    # A file holding an unparseable block (say, a future algorithm) beside an X25519 key.
    (tmp_path / "keys").mkdir()
    other = "-----BEGIN FUTURE KEY-----\nAAAA\n-----END FUTURE KEY-----"
    key = public_pem()
    _pem_file(tmp_path / "keys", "ka.pem", f"# Alex's key\n{other}\n{key}")
    rows = _rows(
        tmp_path,
        KeyAdultIn,
        f"{KEY_ADULTS}\n{_key_adult('keys/ka.pem', 'http://127.0.0.1:8099/hook')}\n",
    )
    row = rows[0][1]
    assert isinstance(row, KeyAdultIn)
    assert row.public_key == f"{other}\n{key.strip()}\n"
    assert row.webhook_url == "http://127.0.0.1:8099/hook"


def test_inline_pem_accepted(tmp_path: Path) -> None:
    key = public_pem()
    [(_, row)] = _rows(tmp_path, KeyAdultIn, f"{KEY_ADULTS}\n{_key_adult(key)}\n")
    assert isinstance(row, KeyAdultIn)
    assert row.public_key == key
    assert row.webhook_url is None


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (
            GOOD_PUPIL.replace("A801200001001", "A80120000100"),
            "upn must be a UPN of 13 letters and digits",
        ),
        (GOOD_PUPIL.replace("2015-03-02", "02/03/2015"), "date_of_birth must be a date YYYY-MM-DD"),
        (GOOD_PUPIL.replace("Example", ""), "family_name is empty"),
        (GOOD_PUPIL[:-1] + "F" * 21, "gender: String should have at most 20 characters"),
        (
            GOOD_PUPIL.replace("TF3 4NT", "somewhere"),
            "postcode must be a UK postcode such as TF3 4NT",
        ),
        ("S1,A801200001001,Amelia", "family_name is empty"),
    ],
)
def test_bad_pupil_rows(tmp_path: Path, row: str, reason: str) -> None:
    message = _refusal(tmp_path, PupilIn, f"{PUPILS}\n{GOOD_PUPIL}\n{GOOD_PUPIL}\n{row}\n")
    assert message == f"f.csv:4: {reason}"
    # A pupil's personal data never appears in the message: the line number is enough.
    assert "02/03/2015" not in message and "somewhere" not in message


def test_pupil_optional_fields_and_normalising(tmp_path: Path) -> None:
    [(_, row)] = _rows(
        tmp_path, PupilIn, f"{PUPILS}\n S1 , ,Zoë,O'Example-Smith,2016-11-30, tf29ft , \n"
    )
    assert isinstance(row, PupilIn)
    assert (row.setting_id, row.upn, row.gender) == ("S1", None, None)
    assert (row.date_of_birth, row.postcode) == (date(2016, 11, 30), "TF2 9FT")


def test_bom_extra_columns_any_order_blank_and_multiline_rows(tmp_path: Path) -> None:
    # Given a BOM, shuffled columns with an extra one, a blank line and a quoted field that
    # spans two lines, then line numbers still count as a person reads the file.
    text = (
        "notes,postcode,family_name,given_name,date_of_birth,setting_id\n"
        '"two\nlines",TF3 4NT,Example,Amelia,2015-03-02,S1\n'
        "\n"
        ",,,,,\n"
        "x,TF3 4NT,Example,Oliver,2015-13-02,S1\n"
    )
    with pytest.raises(DirectoryImportError) as caught:
        _rows(tmp_path, PupilIn, text, encoding="utf-8-sig")
    assert str(caught.value) == "f.csv:6: date_of_birth must be a real date YYYY-MM-DD"
    rows = _rows(tmp_path, PupilIn, text.rsplit("x,", 1)[0], encoding="utf-8-sig")
    assert [line for line, _ in rows] == [2]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "f.csv:1: the file is empty (no header row)"),
        (
            "setting_id,given_name,date_of_birth\n",
            "f.csv:1: the header lacks column(s) family_name, postcode",
        ),
        (f"{PUPILS},upn\n", "f.csv:1: column upn appears twice in the header"),
        (f'{PUPILS}\n"S1,unterminated\n', "f.csv:2: not valid CSV (unexpected end of data)"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, reason: str) -> None:
    assert _refusal(tmp_path, PupilIn, text) == reason


def test_strict_csv_errors(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(f"{PUPILS}\n{GOOD_PUPIL}\n".encode() + b"S1,,Zo\xeb,X,2015-03-02,TF3 4NT,\n")
    with pytest.raises(DirectoryImportError, match=r"^f\.csv:3: not UTF-8 text$"):
        list(read_rows(path, PupilIn, label="f.csv"))
    with pytest.raises(DirectoryImportError, match=r"^nowhere\.csv: cannot read the file"):
        list(read_rows(tmp_path / "nowhere.csv", PupilIn, label="nowhere.csv"))


def test_optional_columns_may_be_left_out(tmp_path: Path) -> None:
    rows = _rows(
        tmp_path,
        PupilIn,
        "setting_id,given_name,family_name,date_of_birth,postcode\n"
        "S1,Amelia,Example,2015-03-02,TF3 4NT\n",
    )
    assert len(rows) == 1


@pytest.mark.parametrize("name", ["calendars", "settings", "pupils"])
def test_sample_files_are_valid(name: str) -> None:
    models: dict[str, type[BaseModel]] = {
        "calendars": CalendarSpanIn,
        "settings": SettingIn,
        "pupils": PupilIn,
    }
    model = models[name]
    assert list(read_rows(HERE / f"{name}.csv", model))


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("tf34nt", "TF3 4NT"),
        (" TF3  4NT ", "TF3 4NT"),
        ("sw1a1aa", "SW1A 1AA"),
        ("b11aa", "B1 1AA"),
    ],
)
def test_canonical_postcode(given: str, canonical: str) -> None:
    assert canonical_postcode(given) == canonical


def test_a_setting_may_name_its_local_authority(tmp_path: Path) -> None:
    text = f"{SETTINGS},la_code\n{GOOD_SETTING},e06000020\n"
    [(_, row)] = _rows(tmp_path, SettingIn, text)
    assert isinstance(row, SettingIn) and row.la_code == "E06000020"
    # The column is optional: a setting without it belongs to no area
    [(_, row)] = _rows(tmp_path, SettingIn, f"{SETTINGS}\n{GOOD_SETTING}\n")
    assert isinstance(row, SettingIn) and row.la_code is None


def test_a_local_authority_contact_needs_its_code(tmp_path: Path) -> None:
    contact = GOOD_SETTING.replace(",school,", ",local_authority,")
    [(_, row)] = _rows(tmp_path, SettingIn, f"{SETTINGS},la_code\n{contact},W06000006\n")
    assert isinstance(row, SettingIn) and row.kind == "local_authority"
    assert _refusal(tmp_path, SettingIn, f"{SETTINGS},la_code\n{contact},\n") == (
        "f.csv:2: la_code is needed for a setting of kind local_authority"
    )
    assert _refusal(tmp_path, SettingIn, f"{SETTINGS},la_code\n{GOOD_SETTING},Telford\n") == (
        "f.csv:2: la_code must be an ONS local authority code such as E06000020"
    )
