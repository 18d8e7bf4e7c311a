"""One page of a list that can grow without bound (the admin queues), with what a pager needs to link the others
(``templates/admin/_pager.html``). Flask-SQLAlchemy's ``db.paginate`` hands back only the first entity of each
row; the queues show rows of several (a refund with its order), so they page here."""
from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

PAGE_SIZE = 50


@dataclass(frozen=True)
class Page:
    rows: list
    number: int  # from 1
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def page_of(session: Session, query: Select, number: int | None, *, size: int = PAGE_SIZE,
            scalars: bool = False) -> Page:
    """Page ``number`` of ``query`` (which must be ordered), counted first: a missing or zero number is the
    first page, one past the end the last, so any number typed into the URL shows a page."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    last = max(1, -(-total // size))
    number = min(max(number or 1, 1), last)
    result = session.execute(query.limit(size).offset((number - 1) * size))
    return Page(list(result.scalars() if scalars else result), number, size, total)
