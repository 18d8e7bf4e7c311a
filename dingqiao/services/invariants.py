"""Invariants over the whole database, for `flask check-money` and for tests after every step.

Each check returns human-readable problems; an empty list means the money is consistent.
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
    OrderStatus,
    Wallet,
    Withdrawal,
    WithdrawalStatus,
)

EXPECTED_LINE_STATES = {
    OrderStatus.PENDING_PAYMENT: set(),
    OrderStatus.CANCELLED: set(),
    OrderStatus.PAID: {CommissionStatus.FROZEN},
    # Picked up: settled, or still frozen during the after-sales cooling period.
    OrderStatus.COMPLETED: {CommissionStatus.SETTLED, CommissionStatus.FROZEN},
    OrderStatus.REFUNDED: {CommissionStatus.REVERSED, CommissionStatus.CLAWED_BACK},
}


def check_money(session: Session) -> list[str]:
    return _wallets_match_ledger(session) + _wallets_match_lines_and_withdrawals(session) + _orders_match_lines(session)


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
