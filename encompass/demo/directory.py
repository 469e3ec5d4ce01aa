"""The demo's small directory: three settings and a local authority's contact for children
on no roll, their calendars, Key Adults and rosters.

Written as the same CSV files a council would import, with fresh Key Adult keys made at
run time (the private halves stay in the demo's temporary folder, as with a real Key Adult).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from encompass.adapters.key_files import (
    generate_key_adult_keys,
    private_keys_pem,
    public_keys_pem,
    write_secret_file,
)

SETTINGS = """\
setting_id,name,kind,nation,postcode,day_starts,day_ends,dispatch_at,calendar_id,\
holiday_policy,la_code
URN100001,Oakfield Primary School,school,england,TF3 4NT,08:45,15:30,07:30,telford-2026,hold,\
E06000020
EY200002,Little Acorns Nursery,early_years,england,TF3 4NX,08:00,18:00,07:00,weekdays,hold,\
E06000020
URN100003,Ysgol Glan Afon,school,wales,LL11 1AA,08:50,15:20,07:30,wrexham-2026,\
holiday_contact,W06000006
LA-E06000020,Telford and Wrekin Council (children missing education),local_authority,\
england,TF3 4JA,08:30,17:00,08:30,weekdays,hold,E06000020
"""

CALENDARS = """calendar_id,first_day,last_day,kind
telford-2026,2026-09-03,2026-10-23,term
telford-2026,2026-11-02,2026-12-18,term
telford-2026,2026-11-23,2026-11-23,closed
telford-2027,2027-01-05,2027-02-12,term
wrexham-2026,2026-09-02,2026-10-23,term
wrexham-2026,2026-11-02,2026-12-18,term
"""

KEY_ADULTS = [
    ("KA-OAK-1", "URN100001", "Ms Key Adult Oakfield", "key_adult"),
    ("KA-OAK-2", "URN100001", "Mr Deputy Oakfield", "deputy"),
    ("KA-ACORN-1", "EY200002", "Ms Key Adult Acorns", "key_adult"),
    ("KA-GLAN-1", "URN100003", "Mrs Key Adult Glan Afon", "key_adult"),
    ("KA-GLAN-H", "URN100003", "Holiday contact Wrexham", "holiday_contact"),
    ("KA-TWC-1", "LA-E06000020", "Children missing education officer", "key_adult"),
]

PUPILS = """setting_id,upn,given_name,family_name,date_of_birth,postcode,gender
URN100001,,Amelia,Smith,2015-03-02,TF3 4NT,F
URN100001,,Oliver,Smith,2017-07-19,TF3 4NT,M
URN100001,,Isla,Patel,2016-05-11,TF3 4QQ,F
URN100001,,Isaac,Patel,2016-05-11,TF3 4QQ,M
URN100001,,Noah,Jones,2018-01-30,TF3 5AB,M
EY200002,,Freddie,Smith,2022-02-14,TF3 4NT,M
EY200002,,Noah,Jones,2018-01-30,TF3 5AB,M
URN100003,,Cerys,Evans,2014-10-09,LL11 1AB,F
"""


class DirectoryFiles(TypedDict):
    """The four CSV files of a directory, named as ``import_directory`` takes them."""

    settings: Path
    calendars: Path
    key_adults: Path
    pupils: Path


def write_directory(
    folder: Path, webhook_base: str | None = None, email_only: frozenset[str] = frozenset()
) -> DirectoryFiles:
    """Write the four CSV files (and a key pair per Key Adult) into ``folder``; with
    ``webhook_base``, each Key Adult but those in ``email_only`` receives by webhook at
    ``webhook_base/ID``."""
    keys = folder / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    rows = ["key_adult_id,setting_id,name,role,email,webhook_url,public_key"]
    for key_adult_id, setting_id, name, role in KEY_ADULTS:
        # The Key Adult in the Wrexham school holds a post-quantum hybrid key.
        pair = generate_key_adult_keys(post_quantum=key_adult_id == "KA-GLAN-1")
        write_secret_file(keys / f"{key_adult_id}.private.pem", private_keys_pem(pair))
        (keys / f"{key_adult_id}.public.pem").write_bytes(public_keys_pem(pair.public_keys()))
        email = f"{key_adult_id.lower()}@settings.example"
        hook = (
            f"{webhook_base}/{key_adult_id}"
            if webhook_base and key_adult_id not in email_only
            else ""
        )
        rows.append(
            f"{key_adult_id},{setting_id},{name},{role},{email},{hook},"
            f"keys/{key_adult_id}.public.pem"
        )
    files = {
        "settings": SETTINGS,
        "calendars": CALENDARS,
        "key_adults": "\n".join(rows) + "\n",
        "pupils": PUPILS,
    }
    paths = {}
    for label, text in files.items():
        path = folder / f"{label}.csv"
        path.write_text(text, encoding="utf-8")
        paths[label] = path
    return DirectoryFiles(
        settings=paths["settings"],
        calendars=paths["calendars"],
        key_adults=paths["key_adults"],
        pupils=paths["pupils"],
    )
