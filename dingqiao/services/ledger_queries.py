"""The ledger aggregate's statements (wallet balances and their ledger entries), prebuilt once and run through
``db.run`` behind named functions: every money movement runs them. services/wallet.py decides (post_entry: the
rules, the refusal, the audit row); this module only reads and writes. A Wallet object loaded earlier in the same
transaction is not updated by these writes: read the balance again after posting."""
from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm import Session

from ..db import run
from ..models import LedgerEntry, Wallet


def _move_balances(covered: bool):
    statement = (
        update(Wallet)
        .where(Wallet.user_id == bindparam("owner"))
        .values(
            available_fen=Wallet.available_fen + bindparam("available"),
            frozen_fen=Wallet.frozen_fen + bindparam("frozen"),
            withdrawing_fen=Wallet.withdrawing_fen + bindparam("withdrawing"),
            total_earned_fen=Wallet.total_earned_fen + bindparam("earned"),
            withdrawn_fen=Wallet.withdrawn_fen + bindparam("withdrawn"),
        )
        .returning(Wallet.id)
    )
    return statement.where(Wallet.available_fen >= bindparam("needs_available")) if covered else statement


_MOVE = _move_balances(covered=False)
_MOVE_IF_COVERED = _move_balances(covered=True)
_ADD_ENTRY = insert(LedgerEntry).returning(LedgerEntry.id)


def move_balances(session: Session, user_id: int, *, available: int, frozen: int, withdrawing: int, earned: int,
                  withdrawn: int, needs_available: int | None = None) -> int | None:
    """Add the deltas to the user's wallet in one UPDATE; its id, or None when the user has no wallet yet or (with
    ``needs_available``) its available balance does not cover that much."""
    deltas = {"owner": user_id, "available": available, "frozen": frozen, "withdrawing": withdrawing,
              "earned": earned, "withdrawn": withdrawn}
    if needs_available is None:
        return run(session, _MOVE, deltas).scalar()
    return run(session, _MOVE_IF_COVERED, {**deltas, "needs_available": needs_available}).scalar()


def add_entry(session: Session, *, wallet_id: int, kind: str, available: int, frozen: int, withdrawing: int,
              commission_line_id: int | None, withdrawal_id: int | None, order_id: int | None, memo: str) -> int:
    """The ledger row of one movement; its id."""
    return run(session, _ADD_ENTRY, {
        "wallet_id": wallet_id, "kind": kind, "available_delta_fen": available, "frozen_delta_fen": frozen,
        "withdrawing_delta_fen": withdrawing, "commission_line_id": commission_line_id,
        "withdrawal_id": withdrawal_id, "order_id": order_id, "memo": memo,
    }).scalar_one()
