"""The roster port: who a reported child could be, decided by the domain matcher."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from encompass.adapters.db.directory_repo import candidate_pupils
from encompass.domain.match import ChildQuery, MatchResult, decide


class Roster(Protocol):
    async def match(self, session: AsyncSession, query: ChildQuery) -> MatchResult:
        """Decide which roster entries (if any) the child is."""
        ...


class DatabaseRoster:
    """Blocks in the database (UPN, date of birth, postcode), decides in the domain."""

    async def match(self, session: AsyncSession, query: ChildQuery) -> MatchResult:
        pupils = await candidate_pupils(session, upn=query.upn,
                                        date_of_birth=query.date_of_birth,
                                        postcode=query.postcode,
                                        family_name=query.family_name)
        return decide(query, pupils)
