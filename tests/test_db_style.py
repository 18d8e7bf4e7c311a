"""One way to touch the database (issue 22, item 5) and refusals without HTTP in them (item 4): rows become values
by column name, ``write_transaction`` refuses changes made outside it, the audit chain is appended by the app's
session only, and domain errors carry a kind that the web edge maps to a status."""
import importlib
import pkgutil
from dataclasses import dataclass, fields
from typing import NamedTuple

import pytest
from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

import dingqiao.services
from dingqiao.db import PendingChanges, row_as, rows_as, run, write_transaction
from dingqiao.extensions import db
from dingqiao.models import AuditLog, Category, StockLevel, StockMovement, StockReason
from dingqiao.services import (
    Conflict,
    DomainError,
    Forbidden,
    NeedsHigherRole,
    NotAuthenticated,
    NotFound,
    TooManyAttempts,
    catalog,
)
from dingqiao.services.audit import record_audit, verify_audit_chain
from dingqiao.services.catalog import ProductCard, ProductDetail
from dingqiao.services.stock import add_stock, take_stock
from dingqiao.web import domain_error_status
from tests.factories import make_outlet, make_product, make_user, stock


# ---------------------------------------------------------------- rows as values, by column name

@dataclass(frozen=True)
class Prices:
    member_price_fen: int
    outlet_price_fen: int


class Pair(NamedTuple):
    low: int
    high: int


def test_rows_become_values_by_column_name_not_by_position(app):
    with app.app_context():
        # The columns come in the opposite order to the fields: by position the two prices would swap.
        result = db.session.execute(select(literal(8_000).label("outlet_price_fen"),
                                           literal(10_000).label("member_price_fen"), literal(1).label("extra")))
        assert rows_as(Prices, result) == [Prices(member_price_fen=10_000, outlet_price_fen=8_000)]
        row = db.session.execute(select(literal(9).label("high"), literal(2).label("low"))).one()
        assert row_as(Pair, row) == Pair(low=2, high=9)
        assert rows_as(Pair, []) == []
        with pytest.raises(KeyError, match="outlet_price_fen"):  # a field without its column is never guessed
            row_as(Prices, db.session.execute(select(literal(1).label("member_price_fen"))).one())


@dataclass(frozen=True)
class CardReversed:
    """ProductCard's fields in the opposite order, to show that the shop's statement is read by name."""

    cover_thumb_path: str | None
    factory_price_fen: int
    outlet_price_fen: int
    member_price_fen: int
    subtitle: str
    name: str
    category_id: int
    id: int


def test_the_shop_reads_each_price_into_its_own_field(app):
    assert [f.name for f in fields(CardReversed)] == [f.name for f in fields(ProductCard)][::-1]
    with app.app_context():
        owner = make_user("店主")
        outlet = make_outlet(owner)
        product = make_product(10_000)  # member ¥100, outlet ¥80, factory ¥65: three different prices
        stock(outlet, product, 5)
        [card] = catalog.list_products(db.session).products
        detail = catalog.get_product(db.session, product.id)
        assert (card.member_price_fen, card.outlet_price_fen, card.factory_price_fen) == (10_000, 8_000, 6_500)
        assert (detail.member_price_fen, detail.outlet_price_fen, detail.factory_price_fen) == (10_000, 8_000, 6_500)
        assert (detail.available, detail.most_at_one_outlet, card.id, detail.id) == (5, 5, product.id, product.id)
        # The same statement read into the reversed class gives the same values field by field.
        [reversed_card] = rows_as(CardReversed, run(db.session, catalog._PAGE, {"offset": 0, "limit": 10}))
        assert {f.name: getattr(reversed_card, f.name) for f in fields(CardReversed)} == {
            f.name: getattr(card, f.name) for f in fields(ProductCard)}
        assert isinstance(detail, ProductDetail)


# ---------------------------------------------------------------- write_transaction refuses pending changes

def categories() -> list[str]:
    return sorted(db.session.scalars(select(Category.name)))


def test_write_transaction_refuses_changes_made_outside_it_and_commits_none_of_them(app):
    with app.app_context():
        with write_transaction(db.session):
            category = Category(name="原名")
            db.session.add(category)
        before = categories()

        db.session.add(Category(name="旁路写入"))  # new, outside any write transaction
        with pytest.raises(PendingChanges, match="Category"):
            with write_transaction(db.session):
                db.session.add(Category(name="本事务写入"))
        db.session.rollback()
        assert categories() == before

        category.name = "悄悄改名"  # changed
        with pytest.raises(PendingChanges, match="1 changed"):
            with write_transaction(db.session):
                pass
        db.session.rollback()
        assert categories() == before

        db.session.delete(category)  # deleted
        with pytest.raises(PendingChanges, match="1 deleted"):
            with write_transaction(db.session):
                pass
        db.session.rollback()
        assert categories() == before


def test_a_clean_read_transaction_is_ended_and_the_write_goes_ahead(app):
    with app.app_context():
        categories()  # a read transaction, left open as a request leaves it
        assert db.session().in_transaction()
        with write_transaction(db.session):
            db.session.add(Category(name="干净的写入"))
            with write_transaction(db.session):  # a nested call joins, it refuses nothing
                db.session.add(Category(name="同一事务"))
        db.session.rollback()
        assert {"干净的写入", "同一事务"} <= set(categories())


# ---------------------------------------------------------------- the audit chain, appended by the app's session

def test_audit_rows_are_chained_by_the_apps_session_and_refused_anywhere_else(app):
    with app.app_context():
        with write_transaction(db.session):
            record_audit(db.session, actor_kind="system", actor_id=None, action="test.one")
            record_audit(db.session, actor_kind="system", actor_id=None, action="test.two")
        with pytest.raises(RuntimeError), write_transaction(db.session):
            record_audit(db.session, actor_kind="system", actor_id=None, action="test.rolled_back")
            raise RuntimeError("the transaction fails")
        rows = db.session.execute(select(AuditLog.action, AuditLog.prev_hash, AuditLog.row_hash)
                                  .where(AuditLog.action.like("test.%")).order_by(AuditLog.id)).all()
        assert [row.action for row in rows] == ["test.one", "test.two"]
        assert rows[1].prev_hash == rows[0].row_hash and verify_audit_chain(db.session) is None

        with pytest.raises(RuntimeError, match="write transaction"):  # outside one: never committed on the side
            record_audit(db.session, actor_kind="system", actor_id=None, action="test.outside")
        with Session(db.engine) as other, pytest.raises(RuntimeError, match="install_audit_chain"):
            with write_transaction(other):  # a session the app did not install the chain on
                record_audit(other, actor_kind="system", actor_id=None, action="test.elsewhere")
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(AuditLog)
                                 .where(AuditLog.action.in_(["test.outside", "test.elsewhere"]))) == 0


# ---------------------------------------------------------------- stock: levels and movements one way

def test_stock_moves_write_their_level_and_movement_rows(app):
    with app.app_context():
        outlet = make_outlet(make_user("店主"))
        product = make_product(5_000)
        with write_transaction(db.session):
            add_stock(db.session, location_id=outlet.location_id, product_id=product.id, quantity=7,
                      reason=StockReason.RESTOCK_IN, note="到货")  # the level row is made on first arrival
            take_stock(db.session, location_id=outlet.location_id, product_id=product.id, quantity=3,
                       reason=StockReason.RESTOCK_OUT, note="调出")
        with pytest.raises(Conflict, match="只有 4 件"), write_transaction(db.session):
            take_stock(db.session, location_id=outlet.location_id, product_id=product.id, quantity=5,
                       reason=StockReason.RESTOCK_OUT, product_name="洗衣液")
        level = db.session.scalar(select(StockLevel).where(StockLevel.location_id == outlet.location_id))
        moves = db.session.execute(select(StockMovement.on_hand_delta, StockMovement.note)
                                   .where(StockMovement.location_id == outlet.location_id)
                                   .order_by(StockMovement.id)).all()
        assert (level.on_hand, level.reserved) == (4, 0)
        assert [tuple(move) for move in moves] == [(7, "到货"), (-3, "调出")]


# ---------------------------------------------------------------- refusals: a kind, mapped to HTTP at the edge

def every_domain_error() -> set[type]:
    for module in pkgutil.iter_modules(dingqiao.services.__path__):
        importlib.import_module(f"dingqiao.services.{module.name}")
    importlib.import_module("dingqiao.uploads")
    found, todo = set(), [DomainError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def test_domain_errors_carry_no_http_status():
    assert sorted(cls.__qualname__ for cls in every_domain_error() if "status" in vars(cls)) == []
    # DomainError itself has none but the edge's transitional read-only one (dingqiao/web.py), computed by kind.
    assert getattr(vars(DomainError).get("status"), "fget", domain_error_status) is domain_error_status
    assert all("status" not in vars(error) for error in (DomainError("不行"), NotFound("没有")))


@pytest.mark.parametrize("kind, status", [
    (DomainError, 400), (NotFound, 404), (Forbidden, 403), (NeedsHigherRole, 403), (Conflict, 409),
    (NotAuthenticated, 401), (TooManyAttempts, 429),
])
def test_the_edge_maps_each_kind_to_its_status(kind, status):
    assert domain_error_status(kind("消息")) == status


def test_the_services_refusals_keep_their_statuses():
    from dingqiao.services.accounts import AccountDisabled, AccountLocked, InvalidCredentials
    from dingqiao.services.catalog import PriceChangeNeedsFinance
    from dingqiao.services.orders import OrderError
    from dingqiao.services.referrals import CorrectionRefused
    from dingqiao.services.setup import SetupLinkInvalid
    from dingqiao.services.stock import OutOfStock, StockError

    assert [domain_error_status(error) for error in (
        InvalidCredentials("x"), AccountDisabled("x"), AccountLocked("x"), OrderError("x"), OutOfStock("x"),
        StockError("x"), SetupLinkInvalid("x"), PriceChangeNeedsFinance("x"),
    )] == [401, 403, 429, 409, 409, 400, 404, 403]
    assert [(domain_error_status(CorrectionRefused.because(reason)), CorrectionRefused.because(reason).reason)
            for reason in ("self", "unknown_code", "cycle", "unchanged", "already_root")] == [
        (400, "self"), (400, "unknown_code"), (409, "cycle"), (409, "unchanged"), (409, "already_root")]
