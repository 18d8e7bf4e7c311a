"""Read-only views for the admin pages: one order with everything that happened to it, the stock locations,
the rule versions and the product list the queues name. (The queues themselves are services/queues.py.) One query per section, people loaded together, so a page costs the same for any order."""
from dataclasses import dataclass

from sqlalchemy import and_, case, or_, select
from sqlalchemy.orm import Session

from ..models import (
    AdminUser,
    AuditLog,
    CommissionLine,
    CommissionRuleVersion,
    IdentityRuleVersion,
    LedgerEntry,
    LocationKind,
    Order,
    OrderItem,
    OutboxMessage,
    Outlet,
    Payment,
    PaymentEvent,
    Product,
    Refund,
    ServiceCase,
    StockLocation,
    StockMovement,
    User,
    Wallet,
)
from . import NotFound

# Outbox rows have no order column: they are linked by their dedup key, "event:object_id"
# (messages.enqueue_message). These are the events whose object is an order — "order_paid:<order id>" — or an
# order and a beneficiary — "commission_frozen:<order id>:<user id>" (settlement.py, commissions.py). Exact
# keys and prefixes ending in ":" so that order 12 never picks up the messages of order 123.
ORDER_EVENTS = ("order_paid", "order_redeemed", "order_refunded")
ORDER_BENEFICIARY_EVENTS = ("commission_frozen", "commission_settled")


@dataclass(frozen=True)
class OrderDetail:
    order: Order
    member: User
    outlet: Outlet
    items: list[OrderItem]
    payments: list[Payment]
    payment_events: list[PaymentEvent]
    commission_lines: list[CommissionLine]
    ledger: list[tuple[LedgerEntry, int]]  # (entry, the wallet owner's user id)
    stock_movements: list[tuple[StockMovement, str, str]]  # (movement, product name, location name)
    messages: list[OutboxMessage]
    refunds: list[Refund]
    cases: list[ServiceCase]
    audit: list[AuditLog]
    people: dict[int, User]  # everyone the sections name: beneficiaries, recipients, the redeeming staff
    admins: dict[int, AdminUser]  # the admins in the audit rows and refund reviews

    @property
    def masked_pickup_code(self) -> str:
        """Enough for staff to tell a buyer which code they mean, never enough to redeem with."""
        code = self.order.pickup_code or ""
        return "•" * (len(code) - 2) + code[-2:] if code else ""


def order_detail(session: Session, order_id: int) -> OrderDetail:
    found = session.execute(
        select(Order, User, Outlet).join(User, User.id == Order.user_id).join(Outlet, Outlet.id == Order.outlet_id)
        .where(Order.id == order_id)
    ).first()
    if found is None:
        raise NotFound("订单不存在。")
    order, member, outlet = found
    items = list(session.scalars(select(OrderItem).where(OrderItem.order_id == order.id).order_by(OrderItem.id)))
    payments = list(session.scalars(select(Payment).where(Payment.order_id == order.id).order_by(Payment.id)))
    # Notifies carry the out_trade_no only; one may arrive for an order that never got a Payment row.
    trade_numbers = {order.order_no, *(payment.out_trade_no for payment in payments)}
    payment_events = list(session.scalars(
        select(PaymentEvent).where(PaymentEvent.out_trade_no.in_(trade_numbers)).order_by(PaymentEvent.id)))
    lines = list(session.scalars(
        select(CommissionLine).where(CommissionLine.order_id == order.id)
        .order_by(CommissionLine.order_item_id, CommissionLine.id)))
    ledger = session.execute(
        select(LedgerEntry, Wallet.user_id).join(Wallet, Wallet.id == LedgerEntry.wallet_id)
        .where(LedgerEntry.order_id == order.id).order_by(LedgerEntry.id)).all()
    movements = session.execute(
        select(StockMovement, Product.name, StockLocation.name)
        .join(Product, Product.id == StockMovement.product_id)
        .join(StockLocation, StockLocation.id == StockMovement.location_id)
        .where(StockMovement.order_id == order.id).order_by(StockMovement.id)).all()
    messages = list(session.scalars(select(OutboxMessage).where(_messages_of(order.id)).order_by(OutboxMessage.id)))
    refunds = list(session.scalars(select(Refund).where(Refund.order_id == order.id).order_by(Refund.id)))
    cases = list(session.scalars(select(ServiceCase).where(ServiceCase.order_id == order.id).order_by(ServiceCase.id)))
    audit = list(session.scalars(select(AuditLog).where(_audit_of(order, payment_events, refunds, cases)).order_by(AuditLog.id)))

    user_ids = {line.beneficiary_user_id for line in lines} | {message.user_id for message in messages}
    user_ids.update(owner for _entry, owner in ledger)
    user_ids.update(row.actor_id for row in audit if row.actor_kind == "user")
    user_ids.add(order.redeemed_by_user_id)
    people = {user.id: user for user in session.scalars(select(User).where(User.id.in_(user_ids - {None})))}
    admin_ids = {row.actor_id for row in audit if row.actor_kind == "admin"}
    admin_ids.update(refund.reviewed_by_admin_id for refund in refunds)
    admins = {admin.id: admin for admin in session.scalars(
        select(AdminUser).where(AdminUser.id.in_(admin_ids - {None})))}
    return OrderDetail(order, member, outlet, items, payments, payment_events, lines, ledger, movements, messages,
                       refunds, cases, audit, people, admins)


def _messages_of(order_id: int):
    return or_(
        OutboxMessage.dedup_key.in_([f"{event}:{order_id}" for event in ORDER_EVENTS]),
        *(OutboxMessage.dedup_key.startswith(f"{event}:{order_id}:", autoescape=True)
          for event in ORDER_BENEFICIARY_EVENTS),
    )


def _audit_of(order: Order, payment_events: list[PaymentEvent], refunds: list[Refund], cases: list[ServiceCase]):
    """Services name an order by its order_no, a payment event or a refund by its id and a case by its case_no
    (grep record_audit); what was done to the order's payments, refunds and cases is part of its story."""
    targets = [and_(AuditLog.target_type == "order", AuditLog.target_id == order.order_no)]
    for target_type, ids in (("payment_event", [str(event.id) for event in payment_events]),
                             ("refund", [str(refund.id) for refund in refunds]),
                             ("service_case", [case.case_no for case in cases])):
        if ids:
            targets.append(and_(AuditLog.target_type == target_type, AuditLog.target_id.in_(ids)))
    return or_(*targets)


# ---------------------------------------------------------------- stock locations

def stock_locations(session: Session) -> list[StockLocation]:
    """Every place that holds goods for the picker: the platform warehouse first, then factory stores, then
    outlets, each by name."""
    kind_order = case({LocationKind.PLATFORM.value: 0, LocationKind.FACTORY.value: 1}, value=StockLocation.kind,
                      else_=2)
    return list(session.scalars(select(StockLocation).order_by(kind_order, StockLocation.name, StockLocation.id)))


# ---------------------------------------------------------------- rule versions, products

RULE_VERSIONS_SHOWN = 20


def commission_rule_versions(session: Session, limit: int = RULE_VERSIONS_SHOWN) -> list[CommissionRuleVersion]:
    """The latest commission rule versions, newest (the one in force) first."""
    return list(session.scalars(select(CommissionRuleVersion).order_by(CommissionRuleVersion.id.desc()).limit(limit)))


def identity_rule_versions(session: Session, limit: int = RULE_VERSIONS_SHOWN) -> list[IdentityRuleVersion]:
    return list(session.scalars(select(IdentityRuleVersion).order_by(IdentityRuleVersion.id.desc()).limit(limit)))


def products_by_id(session: Session) -> dict[int, Product]:
    """Every product by id, for the pages that name the products of many rows (restock orders)."""
    return {product.id: product for product in session.scalars(select(Product))}
