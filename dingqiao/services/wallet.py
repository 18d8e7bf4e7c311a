"""Wallets and their ledger. Every change to a balance is one conditional UPDATE of the wallet row plus one
append-only ledger entry, in the caller's transaction; nothing else writes balances."""
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..china_time import CHINA_TIME
from ..models import (EARNING_COMMISSION_STATES, CommissionKind, CommissionLine, Order, User, Wallet,
                      Withdrawal)
from ..models.base import utcnow
from . import Conflict, NotFound
from . import ledger_queries as ledger
from .audit import record_audit
from .periods import bucket_sums, last_months, to_utc


class InsufficientBalance(Conflict):
    pass


def wallet_for(session: Session, user_id: int) -> Wallet:
    """The user's wallet, created empty on first use (a savepoint absorbs a concurrent creation)."""
    wallet = session.scalar(select(Wallet).where(Wallet.user_id == user_id))
    if wallet is not None:
        return wallet
    try:
        with session.begin_nested():
            session.add(Wallet(user_id=user_id))
    except IntegrityError:
        pass
    return session.scalar(select(Wallet).where(Wallet.user_id == user_id))


def wallet_view(session: Session, user_id: int) -> Wallet:
    """The wallet for display; an unsaved empty one when the user has never earned (reads never write)."""
    wallet = session.scalar(select(Wallet).where(Wallet.user_id == user_id))
    return wallet or Wallet(user_id=user_id, available_fen=0, frozen_fen=0, withdrawing_fen=0, total_earned_fen=0,
                            withdrawn_fen=0)


class Posted(NamedTuple):
    entry_id: int
    wallet_id: int


def post_entry(session: Session, user_id: int, kind: str, *, available: int = 0, frozen: int = 0,
               withdrawing: int = 0, earned: int = 0, withdrawn: int = 0, needs_available: int | None = None,
               commission_line_id: int | None = None, withdrawal_id: int | None = None,
               order_id: int | None = None, memo: str = "") -> Posted:
    """Apply the deltas to the user's wallet and record them: a ledger entry, and an audit row in the same
    transaction (every money movement is in the hash-chained log). With ``needs_available``, the change only
    happens while the available balance covers that much — checked by the UPDATE itself, so concurrent
    withdrawals can never overdraw. A Wallet object loaded earlier in the same transaction is not updated
    (db.run): read the balance again after posting."""
    deltas = {"available": available, "frozen": frozen, "withdrawing": withdrawing, "earned": earned,
              "withdrawn": withdrawn}
    if needs_available is not None:
        wallet_id = ledger.move_balances(session, user_id, **deltas, needs_available=needs_available)
        if wallet_id is None:  # not enough in it (no wallet is a balance of nothing)
            raise InsufficientBalance("可用余额不足。")
    else:
        wallet_id = ledger.move_balances(session, user_id, **deltas)
        if wallet_id is None:
            # Its first movement: make the wallet. Another transaction may be making it right now (committed
            # after our UPDATE looked), so this is no reason to refuse: wallet_for absorbs the race.
            wallet_for(session, user_id)
            wallet_id = ledger.move_balances(session, user_id, **deltas)
            if wallet_id is None:
                raise RuntimeError(f"user {user_id}'s wallet was not made")
    entry_id = ledger.add_entry(session, wallet_id=wallet_id, kind=kind, available=available, frozen=frozen,
                                withdrawing=withdrawing, commission_line_id=commission_line_id,
                                withdrawal_id=withdrawal_id, order_id=order_id, memo=memo)
    record_audit(session, actor_kind="system", actor_id=None, action=f"ledger.{kind}", target_type="wallet",
                 target_id=wallet_id, detail={
                     "entry": entry_id, "user": user_id, "available": available, "frozen": frozen,
                     "withdrawing": withdrawing, "order": order_id, "commission_line": commission_line_id,
                     "withdrawal": withdrawal_id})
    return Posted(entry_id, wallet_id)


def month_choices(now: datetime | None = None, count: int = 12) -> list[tuple[str, str]]:
    """The earnings filter's months, newest first: ("2026-12", "2026年12月"), the last ``count`` China-time months."""
    labels = last_months(now or utcnow(), count).labels
    return [(label, f"{label[:4]}年{int(label[5:])}月") for label in reversed(labels)]


def parse_month(raw: str | None) -> tuple[int, int] | None:
    """"2026-11" → (2026, 11); anything else → None."""
    if not raw or len(raw) != 7 or raw[4] != "-" or not (raw[:4] + raw[5:]).isdigit() or not raw.isascii():
        return None
    year, month = int(raw[:4]), int(raw[5:])
    return (year, month) if 2000 <= year <= 2999 and 1 <= month <= 12 else None


def earnings(session: Session, user_id: int, *, kind: str | None = None, month: tuple[int, int] | None = None,
             limit: int = 100) -> list[CommissionLine]:
    """The member's commission lines, newest first, optionally of one kind and one (China-time) month."""
    query = select(CommissionLine).where(CommissionLine.beneficiary_user_id == user_id)
    if kind in set(CommissionKind):
        query = query.where(CommissionLine.kind == kind)
    if month:
        year, number = month
        start = datetime(year, number, 1, tzinfo=CHINA_TIME)
        end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=CHINA_TIME)
        query = query.where(CommissionLine.created_at >= to_utc(start), CommissionLine.created_at < to_utc(end))
    return list(session.scalars(query.order_by(CommissionLine.created_at.desc(), CommissionLine.id.desc()).limit(limit)))




def earnings_overview(session: Session, user_id: int, now: datetime | None = None, months: int = 6) -> dict:
    """Chart data for the wallet: earnings by kind (all time) and by month and kind (China-time months).
    Lines a refund reversed or clawed back are left out."""
    mine = (CommissionLine.beneficiary_user_id == user_id, CommissionLine.status.in_(EARNING_COMMISSION_STATES))
    totals = dict(session.execute(
        select(CommissionLine.kind, func.sum(CommissionLine.amount_fen)).where(*mine).group_by(CommissionLine.kind)
    ).all())
    buckets = last_months(now or utcnow(), months)
    by_month = [
        {"label": kind.label, "data": bucket_sums(session, buckets, CommissionLine.created_at, CommissionLine.amount_fen,
                                                  *mine, CommissionLine.kind == kind)}
        for kind in CommissionKind
    ]
    return {
        "by_kind": {"labels": [kind.label for kind in CommissionKind],
                    "series": [{"label": "收益", "data": [int(totals.get(kind, 0)) for kind in CommissionKind]}],
                    "unit": "fen"},
        "by_month": {"labels": buckets.labels, "series": [s for s in by_month if any(s["data"])] or by_month[:1],
                     "unit": "fen"},
    }


def recent_withdrawals(session: Session, user_id: int, limit: int = 20) -> list[Withdrawal]:
    """The member's latest withdrawal requests, newest first (the wallet's 提现记录)."""
    return list(session.scalars(
        select(Withdrawal).where(Withdrawal.user_id == user_id).order_by(Withdrawal.id.desc()).limit(limit)))


class EarningDetail(NamedTuple):
    line: CommissionLine
    order: Order
    buyer_nickname: str  # the caller masks it: a beneficiary never sees who bought in full


def earning_detail(session: Session, user_id: int, line_id: int) -> EarningDetail:
    """One line of 收益明细 with its order. Someone else's line is NotFound, like a missing one, so ids cannot
    be probed."""
    line = session.scalar(select(CommissionLine).where(CommissionLine.id == line_id,
                                                       CommissionLine.beneficiary_user_id == user_id))
    if line is None:
        raise NotFound("收益记录不存在。")
    order = session.get(Order, line.order_id)
    return EarningDetail(line, order, session.scalar(select(User.nickname).where(User.id == order.user_id)) or "")
