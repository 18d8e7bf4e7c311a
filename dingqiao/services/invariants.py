"""Invariants over the whole database, for `flask check-money` / `flask check-stock` and for tests after every
step.

Each check returns human-readable problems; an empty list means the money (or the stock) is consistent.
"""
from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import (
    CommissionLine,
    CommissionRuleVersion,
    CommissionStatus,
    LedgerEntry,
    LedgerKind,
    Order,
    OrderItem,
    OrderStatus,
    Outlet,
    Refund,
    RefundStatus,
    RestockItem,
    RestockOrder,
    StockLevel,
    StockMovement,
    StockReason,
    Wallet,
    Withdrawal,
    WithdrawalStatus,
)
from .queues import REFUNDS_WAITING

EXPECTED_LINE_STATES = {
    OrderStatus.PENDING_PAYMENT: set(),
    OrderStatus.CANCELLED: set(),
    OrderStatus.PAID: {CommissionStatus.FROZEN},
    # Picked up: settled, or still frozen during the after-sales cooling period.
    OrderStatus.COMPLETED: {CommissionStatus.SETTLED, CommissionStatus.FROZEN},
    OrderStatus.REFUNDED: {CommissionStatus.REVERSED, CommissionStatus.CLAWED_BACK},
}


def check_money(session: Session) -> list[str]:
    return (_wallets_match_ledger(session) + _wallets_match_lines_and_withdrawals(session)
            + _orders_match_lines(session) + _orders_match_refunds(session))


def _wallets_match_ledger(session: Session) -> list[str]:
    sums = {
        wallet_id: (a, f, w)
        for wallet_id, a, f, w in session.execute(
            select(LedgerEntry.wallet_id, func.sum(LedgerEntry.available_delta_fen),
                   func.sum(LedgerEntry.frozen_delta_fen), func.sum(LedgerEntry.withdrawing_delta_fen))
            .group_by(LedgerEntry.wallet_id)
        )
    }
    clawed = set(session.scalars(
        select(LedgerEntry.wallet_id).where(LedgerEntry.kind == LedgerKind.COMMISSION_CLAWED_BACK).distinct()
    ))
    problems = []
    for wallet in session.scalars(select(Wallet).order_by(Wallet.id)):
        a, f, w = (int(x or 0) for x in sums.get(wallet.id, (0, 0, 0)))
        if (wallet.available_fen, wallet.frozen_fen, wallet.withdrawing_fen) != (a, f, w):
            problems.append(
                f"wallet {wallet.id} (user {wallet.user_id}): balances available/frozen/withdrawing "
                f"{wallet.available_fen}/{wallet.frozen_fen}/{wallet.withdrawing_fen} != ledger {a}/{f}/{w}"
            )
        if wallet.frozen_fen < 0 or wallet.withdrawing_fen < 0:
            problems.append(f"wallet {wallet.id}: negative frozen or withdrawing balance")
        if wallet.available_fen < 0 and wallet.id not in clawed:
            problems.append(f"wallet {wallet.id}: negative available balance without a clawback")
    return problems


def _wallets_match_lines_and_withdrawals(session: Session) -> list[str]:
    frozen, earned = defaultdict(int), defaultdict(int)
    for user_id, status, amount in session.execute(
        select(CommissionLine.beneficiary_user_id, CommissionLine.status, func.sum(CommissionLine.amount_fen))
        .group_by(CommissionLine.beneficiary_user_id, CommissionLine.status)
    ):
        if status == CommissionStatus.FROZEN:
            frozen[user_id] += int(amount)
        elif status == CommissionStatus.SETTLED:
            earned[user_id] += int(amount)
    in_flight, paid = defaultdict(int), defaultdict(int)
    for user_id, status, amount in session.execute(
        select(Withdrawal.user_id, Withdrawal.status, func.sum(Withdrawal.amount_fen))
        .group_by(Withdrawal.user_id, Withdrawal.status)
    ):
        if status in (WithdrawalStatus.REQUESTED, WithdrawalStatus.APPROVED):
            in_flight[user_id] += int(amount)
        elif status == WithdrawalStatus.PAID:
            paid[user_id] += int(amount)
    problems = []
    for wallet in session.scalars(select(Wallet).order_by(Wallet.id)):
        u = wallet.user_id
        expected = {
            "frozen": frozen[u], "total earned": earned[u], "withdrawing": in_flight[u], "withdrawn": paid[u],
            "available": earned[u] - in_flight[u] - paid[u],
        }
        actual = {
            "frozen": wallet.frozen_fen, "total earned": wallet.total_earned_fen,
            "withdrawing": wallet.withdrawing_fen, "withdrawn": wallet.withdrawn_fen,
            "available": wallet.available_fen,
        }
        for name, value in expected.items():
            if actual[name] != value:
                problems.append(f"wallet {wallet.id} (user {u}): {name} {actual[name]} != {value} from lines/withdrawals")
    return problems


def _orders_match_lines(session: Session) -> list[str]:
    problems = []
    caps = dict(session.execute(select(CommissionRuleVersion.id, CommissionRuleVersion.payout_cap_bps)).all())
    lines_by_order = defaultdict(list)
    for line in session.scalars(select(CommissionLine)):
        lines_by_order[line.order_id].append(line)
    for order in session.scalars(select(Order).where(Order.id.in_(lines_by_order))):
        lines = lines_by_order[order.id]
        states = {line.status for line in lines}
        if not states <= EXPECTED_LINE_STATES[OrderStatus(order.status)]:
            problems.append(f"order {order.order_no} is {order.status} but has lines {sorted(states)}")
        if any(line.beneficiary_user_id == order.user_id for line in lines):
            problems.append(f"order {order.order_no}: the buyer earns from their own purchase")
        cap = caps.get(order.rule_version_id)
        if cap is not None and sum(line.amount_fen for line in lines) > order.total_fen * cap // 10_000:
            problems.append(f"order {order.order_no}: lines exceed the payout cap")
    return problems


def _orders_match_refunds(session: Session) -> list[str]:
    """A refund's effects follow WeChat's result only: an order is REFUNDED exactly when one of its refunds
    succeeded, and its after-sales flag is up exactly while one refund is open (asked, sent, at WeChat, or failed
    and waiting for finance)."""
    def per_order(condition) -> defaultdict[int, int]:
        return defaultdict(int, session.execute(
            select(Refund.order_id, func.count()).where(condition).group_by(Refund.order_id)).all())

    succeeded, still_open = per_order(Refund.status == RefundStatus.SUCCEEDED), per_order(REFUNDS_WAITING)
    problems = []
    for order_id, order_no, status, after_sales_open in session.execute(
        select(Order.id, Order.order_no, Order.status, Order.after_sales_open)
        .where((Order.status == OrderStatus.REFUNDED) | Order.after_sales_open
               | Order.id.in_(select(Refund.order_id)))
    ):
        if succeeded[order_id] != (status == OrderStatus.REFUNDED):
            problems.append(f"order {order_no} is {status} with {succeeded[order_id]} succeeded refund(s)")
        if still_open[order_id] != int(after_sales_open):
            problems.append(
                f"order {order_no}: after-sales open {after_sales_open}, {still_open[order_id]} open refund(s)")
    return problems


def check_stock(session: Session) -> list[str]:
    """Stock invariants, for `flask check-stock`: no goods created or lost.

    - every level (on hand, reserved) is the sum of its movements;
    - what is reserved at an outlet is exactly what its unpaid and paid-not-collected orders hold;
    - what left outlets with buyers is exactly what collected orders contained;
    - every restock line shipped exactly what left the supplier for it, and received exactly what arrived;
      so, over the whole network, on hand + in transit = initial + adjustments − handed to buyers.
    """
    return _levels_match_movements(session) + _reservations_match_orders(session) + _restocks_match_movements(session)


def _levels_match_movements(session: Session) -> list[str]:
    moved = {
        (location_id, product_id): (int(on_hand), int(reserved))
        for location_id, product_id, on_hand, reserved in session.execute(
            select(StockMovement.location_id, StockMovement.product_id, func.sum(StockMovement.on_hand_delta),
                   func.sum(StockMovement.reserved_delta))
            .group_by(StockMovement.location_id, StockMovement.product_id)
        )
    }
    problems = []
    for level in session.scalars(select(StockLevel)):
        expected = moved.pop((level.location_id, level.product_id), (0, 0))
        if (level.on_hand, level.reserved) != expected:
            problems.append(f"stock at location {level.location_id}, product {level.product_id}: level "
                            f"{level.on_hand} on hand / {level.reserved} reserved, movements say {expected[0]} / {expected[1]}")
    for (location_id, product_id), (on_hand, reserved) in moved.items():
        if on_hand or reserved:
            problems.append(f"stock at location {location_id}, product {product_id}: movements without a level row")
    return problems


def _reservations_match_orders(session: Session) -> list[str]:
    holding = (OrderStatus.PENDING_PAYMENT, OrderStatus.PAID)
    expected_reserved = _order_quantities(session, Order.status.in_(holding))
    expected_redeemed = _order_quantities(session, Order.redeemed_at.is_not(None))
    reserved = dict(((loc, prod), int(r)) for loc, prod, r in session.execute(
        select(StockLevel.location_id, StockLevel.product_id, StockLevel.reserved).where(StockLevel.reserved != 0)))
    redeemed = dict(((loc, prod), -int(q)) for loc, prod, q in session.execute(
        select(StockMovement.location_id, StockMovement.product_id, func.sum(StockMovement.on_hand_delta))
        .where(StockMovement.reason == StockReason.REDEEM)
        .group_by(StockMovement.location_id, StockMovement.product_id)))
    problems = []
    for key in set(expected_reserved) | set(reserved):
        if expected_reserved.get(key, 0) != reserved.get(key, 0):
            problems.append(f"stock at location {key[0]}, product {key[1]}: {reserved.get(key, 0)} reserved, "
                            f"open orders hold {expected_reserved.get(key, 0)}")
    for key in set(expected_redeemed) | set(redeemed):
        if expected_redeemed.get(key, 0) != redeemed.get(key, 0):
            problems.append(f"stock at location {key[0]}, product {key[1]}: {redeemed.get(key, 0)} handed over, "
                            f"collected orders contained {expected_redeemed.get(key, 0)}")
    return problems


def _order_quantities(session: Session, condition) -> dict[tuple[int, int], int]:
    return {
        (location_id, product_id): int(quantity)
        for location_id, product_id, quantity in session.execute(
            select(Outlet.location_id, OrderItem.product_id, func.sum(OrderItem.quantity))
            .join(Order, Order.id == OrderItem.order_id).join(Outlet, Outlet.id == Order.outlet_id)
            .where(condition).group_by(Outlet.location_id, OrderItem.product_id)
        )
    }


def _restocks_match_movements(session: Session) -> list[str]:
    moved = defaultdict(lambda: [0, 0])  # (restock order, product) → [out of the supplier, into the buyer]
    for restock_id, product_id, reason, quantity in session.execute(
        select(StockMovement.restock_order_id, StockMovement.product_id, StockMovement.reason,
               func.sum(StockMovement.on_hand_delta))
        .where(StockMovement.restock_order_id.is_not(None))
        .group_by(StockMovement.restock_order_id, StockMovement.product_id, StockMovement.reason)
    ):
        if reason == StockReason.RESTOCK_OUT:
            moved[(restock_id, product_id)][0] -= int(quantity)
        elif reason == StockReason.RESTOCK_IN:
            moved[(restock_id, product_id)][1] += int(quantity)
    problems = []
    for item, order in session.execute(select(RestockItem, RestockOrder)
                                       .join(RestockOrder, RestockOrder.id == RestockItem.restock_order_id)):
        out, into = moved.pop((order.id, item.product_id), [0, 0])
        if (out, into) != (item.shipped_quantity, item.received_quantity):
            problems.append(f"restock {order.restock_no}, product {item.product_id}: shipped {item.shipped_quantity} / "
                            f"received {item.received_quantity}, movements say {out} / {into}")
    for (restock_id, product_id), _quantities in moved.items():
        problems.append(f"restock {restock_id}, product {product_id}: stock moved without a restock line")
    return problems
