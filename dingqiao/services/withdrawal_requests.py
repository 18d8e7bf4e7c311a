"""Members' withdrawal requests: the rules of an amount (minimum, fee, daily cap, WeChat's single-transfer ceiling,
the real name from ¥2,000), the quote 确认提现 shows, and the request itself — the amount leaves "available" for
"withdrawing" in one conditional update, never overdrawn whatever runs at once. What finance does with a request
is in ``withdrawal_review`` (reject, offline) and ``withdrawals`` (pay out through WeChat)."""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import LedgerEntry, LedgerKind, User, Wallet, Withdrawal, WithdrawalStatus
from ..models.base import utcnow
from ..money import format_yuan
from ..wechat.pay_v3 import REAL_NAME_FROM_FEN
from . import Conflict, Forbidden, submissions
from .orders import new_number
from .periods import china_midnight, china_today
from .wallet import post_entry

BPS = 10_000
MAX_WITHDRAWAL_FEN = 20_000_00  # WeChat's single-transfer ceiling for 企业付款 is ¥20,000


class WithdrawalError(Conflict):
    pass


@dataclass(frozen=True)
class WithdrawalRules:
    min_fen: int = 100
    fee_bps: int = 0
    daily_cap_fen: int = 500_000

    @classmethod
    def from_config(cls, config) -> "WithdrawalRules":
        return cls(config["WITHDRAWAL_MIN_FEN"], config["WITHDRAWAL_FEE_BPS"], config["WITHDRAWAL_DAILY_CAP_FEN"])

    def fee_for(self, amount_fen: int) -> int:
        return amount_fen * self.fee_bps // BPS


def parse_yuan(raw: str | None) -> int:
    """"12.3" → 1230 fen, exactly (no float): at most two decimals, digits only."""
    text = (raw or "").strip().replace("¥", "").replace(",", "")
    whole, _, cents = text.partition(".")
    if (not text.isascii() or not whole.isdigit() or len(whole) > 9
            or (cents and (not cents.isdigit() or len(cents) > 2))):
        raise WithdrawalError("请输入正确的金额（最多两位小数）。")
    return int(whole) * 100 + int(cents.ljust(2, "0") if cents else 0)


@dataclass(frozen=True)
class WithdrawalQuote:
    """What 确认提现 shows before anything moves."""

    amount_fen: int
    fee_fen: int

    @property
    def payout_fen(self) -> int:
        return self.amount_fen - self.fee_fen


def _check_amount(amount_fen: int, rules: WithdrawalRules, payee_name: str) -> int:
    """The rules of one request's amount that need no database; returns its fee."""
    if amount_fen >= REAL_NAME_FROM_FEN and not 2 <= len(payee_name) <= 30:
        raise WithdrawalError(f"单笔 {format_yuan(REAL_NAME_FROM_FEN)} 及以上的提现，微信要求填写收款人的真实姓名。")
    if amount_fen < rules.min_fen:
        raise WithdrawalError(f"单笔提现至少 {format_yuan(rules.min_fen)}。")
    if amount_fen > MAX_WITHDRAWAL_FEN:
        raise WithdrawalError(f"单笔提现最多 {format_yuan(MAX_WITHDRAWAL_FEN)}。")
    fee = rules.fee_for(amount_fen)
    if fee >= amount_fen:
        raise WithdrawalError("提现金额不足以支付手续费。")
    return fee


def _requested_today(session: Session, user_id: int, now: datetime) -> int:
    """Today's (China's day) requests that still count against the daily cap."""
    return session.scalar(
        select(func.coalesce(func.sum(Withdrawal.amount_fen), 0)).where(
            Withdrawal.user_id == user_id, Withdrawal.created_at >= china_midnight(china_today(now)),
            Withdrawal.status.not_in([WithdrawalStatus.REJECTED, WithdrawalStatus.FAILED]))
    )


def withdrawable_fen(session: Session, user_id: int, rules: WithdrawalRules, now: datetime | None = None) -> int:
    """The most one request may take now (全部提现): the available balance, within the single-transfer ceiling
    and what is left of today's cap."""
    available = session.scalar(select(Wallet.available_fen).where(Wallet.user_id == user_id)) or 0
    left_today = rules.daily_cap_fen - _requested_today(session, user_id, now or utcnow())
    return max(min(available, MAX_WITHDRAWAL_FEN, left_today), 0)


def quote_withdrawal(session: Session, user_id: int, amount_fen: int | None, rules: WithdrawalRules,
                     now: datetime | None = None, payee_name: str = "") -> WithdrawalQuote:
    """The amount (None: the withdrawable maximum) and its fee for the member to confirm, refused for the reasons
    ``request_withdrawal`` would refuse it now. Writes nothing; the request checks everything again."""
    most = withdrawable_fen(session, user_id, rules, now)
    if amount_fen is None:
        if most < rules.min_fen:
            raise WithdrawalError(f"可提现金额不足 {format_yuan(rules.min_fen)}，暂不能提现。")
        amount_fen = most
    fee = _check_amount(amount_fen, rules, " ".join((payee_name or "").split()))
    if amount_fen > most:
        raise WithdrawalError(f"本次最多可提现 {format_yuan(most)}。")
    return WithdrawalQuote(amount_fen, fee)


def request_withdrawal(session: Session, user_id: int, amount_fen: int, rules: WithdrawalRules,
                       now: datetime | None = None, payee_name: str = "",
                       submission_key: str | None = None) -> Withdrawal:
    """Move the amount from available to withdrawing and queue the request for finance. A repeat of
    ``submission_key`` (a double tap) answers with the first request and moves nothing."""
    now = now or utcnow()
    payee_name = " ".join((payee_name or "").split())
    fee = _check_amount(amount_fen, rules, payee_name)
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"member:{user_id}", action="withdraw")
        if earlier is not None:
            return _as_it_stands(session, earlier)
        user = session.get(User, user_id)
        if user is None or not user.is_active:
            raise Forbidden("账户不可用。")
        withdrawal = Withdrawal(withdrawal_no=new_number("WD", now), user_id=user_id,
                                wallet_id=0, amount_fen=amount_fen, fee_fen=fee, created_at=now,
                                payee_name=payee_name if amount_fen >= REAL_NAME_FROM_FEN else None)
        # The balance moves first: the wallet row update is the lock that serialises this user's requests.
        posted = post_entry(session, user_id, LedgerKind.WITHDRAWAL_REQUESTED, available=-amount_fen,
                            withdrawing=amount_fen, needs_available=amount_fen, memo="申请提现")
        withdrawal.wallet_id = posted.wallet_id
        today = _requested_today(session, user_id, now)
        if today + amount_fen > rules.daily_cap_fen:
            raise WithdrawalError(f"今日提现额度剩余 {format_yuan(max(rules.daily_cap_fen - today, 0))}。")
        session.add(withdrawal)
        session.flush()
        session.execute(update(LedgerEntry).where(LedgerEntry.id == posted.entry_id)
                        .values(withdrawal_id=withdrawal.id))
        submissions.remember(session, submission_key, withdrawal.id)
    return withdrawal


def _as_it_stands(session: Session, withdrawal_id: int) -> Withdrawal:
    return submissions.first_result(session, Withdrawal, withdrawal_id)
