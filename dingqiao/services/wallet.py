"""Wallets and their ledger. Every change to a balance is one conditional UPDATE of the wallet row plus one
append-only ledger entry, in the caller's transaction; nothing else writes balances."""
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import LedgerEntry, Wallet
from . import DomainError


class InsufficientBalance(DomainError):
    status = 409


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


def post_entry(session: Session, user_id: int, kind: str, *, available: int = 0, frozen: int = 0,
               withdrawing: int = 0, earned: int = 0, withdrawn: int = 0, needs_available: int | None = None,
               commission_line_id: int | None = None, withdrawal_id: int | None = None,
               order_id: int | None = None, memo: str = "") -> LedgerEntry:
    """Apply the deltas to the user's wallet and record them. With ``needs_available``, the change only
    happens while the available balance covers that much — checked by the UPDATE itself, so concurrent
    withdrawals can never overdraw."""
    wallet = wallet_for(session, user_id)
    statement = (
        update(Wallet)
        .where(Wallet.id == wallet.id)
        .values(
            available_fen=Wallet.available_fen + available,
            frozen_fen=Wallet.frozen_fen + frozen,
            withdrawing_fen=Wallet.withdrawing_fen + withdrawing,
            total_earned_fen=Wallet.total_earned_fen + earned,
            withdrawn_fen=Wallet.withdrawn_fen + withdrawn,
        )
    )
    if needs_available is not None:
        statement = statement.where(Wallet.available_fen >= needs_available)
    if session.execute(statement).rowcount != 1:
        raise InsufficientBalance("可用余额不足。")
    entry = LedgerEntry(
        wallet_id=wallet.id, kind=kind, available_delta_fen=available, frozen_delta_fen=frozen,
        withdrawing_delta_fen=withdrawing, commission_line_id=commission_line_id, withdrawal_id=withdrawal_id,
        order_id=order_id, memo=memo,
    )
    session.add(entry)
    return entry
