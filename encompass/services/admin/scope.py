"""An admin's area: the one filter every admin read and action goes through.

An admin is registered for one local authority (its ONS code, ``--area E06000020``) or for
``all``. Settings carry their ``la_code``; everything else an admin sees hangs off a setting:

* a notice (and its alerts, transitions, delivery attempts) belongs to its setting's area;
* a child waiting for review belongs to the areas of its candidate settings (the matcher's
  best guesses): a child with no candidate at all is seen by admins of ``all`` only;
* an alert that names no notice is seen by admins of ``all`` only.

Use cases take an :class:`Area` and apply :meth:`Area.notices` / :meth:`Area.settings` to
their queries (or :meth:`Area.covers` to one setting), so a route cannot forget it: the
scoping lives here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

from sqlalchemy import Select, select, true
from sqlalchemy.sql.elements import ColumnElement

from encompass.adapters.db.tables import Admin, Alert, Notice, SettingRow

EVERYWHERE: Final = "all"
_S = TypeVar("_S", bound=Select)  # type: ignore[type-arg]


@dataclass(frozen=True)
class Area:
    """``code`` is an ONS local authority code, or ``all``."""

    code: str

    @classmethod
    def of(cls, admin: Admin) -> Area:
        return cls(admin.area)

    @property
    def everywhere(self) -> bool:
        return self.code == EVERYWHERE

    def setting_clause(self) -> ColumnElement[bool]:
        """True for the settings rows of this area (to filter a query over ``settings``)."""
        return true() if self.everywhere else SettingRow.la_code == self.code

    def notice_clause(self) -> ColumnElement[bool]:
        """True for the notices of this area's settings."""
        if self.everywhere:
            return true()
        return Notice.setting_id.in_(self._setting_ids())

    def alert_clause(self) -> ColumnElement[bool]:
        """True for the alerts about this area's notices (alerts with no notice: ``all``)."""
        if self.everywhere:
            return true()
        return Alert.notice_id.in_(
            select(Notice.notice_id)
            .where(Notice.setting_id.in_(self._setting_ids()))
            .correlate(None)
        )

    def _setting_ids(self) -> Select[str]:
        # Never correlated: the outer query may itself join ``settings`` or ``notices``.
        return select(SettingRow.setting_id).where(SettingRow.la_code == self.code).correlate(None)

    def settings(self, query: _S) -> _S:
        return query.where(self.setting_clause())

    def notices(self, query: _S) -> _S:
        return query.where(self.notice_clause())

    def alerts(self, query: _S) -> _S:
        return query.where(self.alert_clause())

    def covers(self, setting: SettingRow | None) -> bool:
        """Whether one setting lies in the area (None, an unknown setting, does not)."""
        return setting is not None and (self.everywhere or setting.la_code == self.code)

    def covers_any(self, la_codes: Iterable[str | None]) -> bool:
        """Whether any of these settings' codes lies in the area (a child's candidates)."""
        return self.everywhere or any(code == self.code for code in la_codes)


ALL: Final = Area(EVERYWHERE)
