"""Commissions, wallets and their append-only ledger, withdrawals.

Invariant (checked by a CLI command): each wallet's balances equal the sums of its ledger entries' deltas.
"""
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import one_of, utcnow


class CommissionRuleVersion(db.Model):
    """A rule set, never edited: admins create a new version; orders keep the one they were settled with.

    The compliance guard rails (depth <= 3, capped total, no negative rate) are checked by the service that
    creates versions and backed here by CHECK constraints.
    """

    __tablename__ = "commission_rule_versions"
    __table_args__ = (
        CheckConstraint("referral_depth BETWEEN 1 AND 3", name="depth_at_most_3"),
        CheckConstraint(
            "direct_bps >= 0 AND team_bps >= 0 AND third_level_bps >= 0 AND service_fee_bps >= 0 "
            "AND regional_bps >= 0",
            name="rates_not_negative",
        ),
        CheckConstraint("payout_cap_bps BETWEEN 0 AND 10000", name="cap_range"),
        CheckConstraint(
            "direct_bps + team_bps + third_level_bps + service_fee_bps + regional_bps <= payout_cap_bps",
            name="within_cap",
        ),
        CheckConstraint("cooling_days >= 0", name="cooling_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    referral_depth: Mapped[int] = mapped_column(default=2)
    direct_bps: Mapped[int]
    team_bps: Mapped[int]
    third_level_bps: Mapped[int] = mapped_column(default=0)
    service_fee_bps: Mapped[int]
    regional_bps: Mapped[int]
    payout_cap_bps: Mapped[int]
    cooling_days: Mapped[int] = mapped_column(default=0)
    note: Mapped[str] = mapped_column(String(256), default="")
    created_by_admin_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CommissionKind(StrEnum):
    DIRECT = "direct"  # 直推: the buyer's upline
    TEAM = "team"  # 团队: the upline's upline (level 2, or 3 where the depth allows)
    SERVICE_FEE = "service_fee"  # 核销服务费: the redeeming outlet
    REGIONAL = "regional"  # 区域奖励: the factory store of the outlet's region

    @property
    def label(self) -> str:
        return {"direct": "直推奖励", "team": "团队奖励", "service_fee": "核销服务费", "regional": "区域奖励"}[
            self.value
        ]


class CommissionStatus(StrEnum):
    FROZEN = "frozen"
    SETTLED = "settled"
    REVERSED = "reversed"  # refund before pickup
    CLAWED_BACK = "clawed_back"  # refund after pickup

    @property
    def label(self) -> str:
        return {"frozen": "待结算", "settled": "已结算", "reversed": "已撤销", "clawed_back": "已追回"}[self.value]


# Lines that earned money (frozen until the pickup window ends, then settled); reversed and clawed-back ones did not.
EARNING_COMMISSION_STATES = (CommissionStatus.FROZEN, CommissionStatus.SETTLED)


class CommissionLine(db.Model):
    """A fee on one item of one order, to one person fixed on that order. Never a share of aggregate sales."""

    __tablename__ = "commission_lines"
    __table_args__ = (
        UniqueConstraint("order_item_id", "kind", "level"),
        one_of("kind", CommissionKind, "kind"),
        one_of("status", CommissionStatus, "status"),
        CheckConstraint("amount_fen >= 0 AND base_fen >= 0 AND rate_bps >= 0", name="amounts_not_negative"),
        CheckConstraint("level BETWEEN 0 AND 3", name="level_range"),
        Index("ix_commission_lines_created_at", "created_at"),  # exports by date
        Index("ix_commission_lines_beneficiary_created", "beneficiary_user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    order_item_id: Mapped[int] = mapped_column(ForeignKey("order_items.id"))
    kind: Mapped[str] = mapped_column(String(16))
    level: Mapped[int] = mapped_column(default=0)  # referral level 1..3; 0 for outlet and regional lines
    beneficiary_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    rule_version_id: Mapped[int] = mapped_column(ForeignKey("commission_rule_versions.id"))
    base_fen: Mapped[int]
    rate_bps: Mapped[int]
    amount_fen: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default=CommissionStatus.FROZEN)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime | None]  # end of the after-sales cooling period
    settled_at: Mapped[datetime | None]
    reversed_at: Mapped[datetime | None]


class Wallet(db.Model):
    """Balances in fen. ``available_fen`` may go negative only through a documented clawback (a receivable
    that later earnings pay off first); the other buckets never do."""

    __tablename__ = "wallets"
    __table_args__ = (
        CheckConstraint("frozen_fen >= 0", name="frozen_not_negative"),
        CheckConstraint("withdrawing_fen >= 0", name="withdrawing_not_negative"),
        CheckConstraint("total_earned_fen >= 0 AND withdrawn_fen >= 0", name="totals_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    available_fen: Mapped[int] = mapped_column(default=0)
    frozen_fen: Mapped[int] = mapped_column(default=0)
    withdrawing_fen: Mapped[int] = mapped_column(default=0)
    total_earned_fen: Mapped[int] = mapped_column(default=0)
    withdrawn_fen: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LedgerKind(StrEnum):
    COMMISSION_FROZEN = "commission_frozen"
    COMMISSION_SETTLED = "commission_settled"
    COMMISSION_REVERSED = "commission_reversed"
    COMMISSION_CLAWED_BACK = "commission_clawed_back"
    WITHDRAWAL_REQUESTED = "withdrawal_requested"
    WITHDRAWAL_PAID = "withdrawal_paid"
    WITHDRAWAL_RETURNED = "withdrawal_returned"

    @property
    def label(self) -> str:
        return {"commission_frozen": "佣金入账（冻结）", "commission_settled": "佣金结算",
                "commission_reversed": "佣金撤销", "commission_clawed_back": "佣金追回",
                "withdrawal_requested": "申请提现", "withdrawal_paid": "提现已打款",
                "withdrawal_returned": "提现退回"}[self.value]


class LedgerEntry(db.Model):
    """Append-only. One row per movement, with the change to each balance bucket of the wallet."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        one_of("kind", LedgerKind, "kind"),
        Index("ix_ledger_entries_wallet_created", "wallet_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    wallet_id: Mapped[int] = mapped_column(ForeignKey("wallets.id"))
    kind: Mapped[str] = mapped_column(String(24))
    available_delta_fen: Mapped[int] = mapped_column(default=0)
    frozen_delta_fen: Mapped[int] = mapped_column(default=0)
    withdrawing_delta_fen: Mapped[int] = mapped_column(default=0)
    commission_line_id: Mapped[int | None] = mapped_column(ForeignKey("commission_lines.id"), index=True)
    withdrawal_id: Mapped[int | None] = mapped_column(ForeignKey("withdrawals.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    memo: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WithdrawalStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"  # transfer in flight
    PAID = "paid"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return {"requested": "待审核", "approved": "打款中", "paid": "已打款", "rejected": "已拒绝",
                "failed": "打款失败"}[self.value]


WITHDRAWALS_PAYING_OUT = (WithdrawalStatus.APPROVED, WithdrawalStatus.PAID)  # money has left, or is leaving


class Withdrawal(db.Model):
    __tablename__ = "withdrawals"
    __table_args__ = (
        one_of("status", WithdrawalStatus, "status"),
        CheckConstraint("amount_fen > 0 AND fee_fen >= 0 AND fee_fen < amount_fen", name="amounts"),
        Index("ix_withdrawals_status_created", "status", "created_at"),
        Index("ix_withdrawals_created_at", "created_at"),  # exports by date
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Also the transfer's out_trade_no at WeChat: retrying a transfer can never pay twice.
    withdrawal_no: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    wallet_id: Mapped[int] = mapped_column(ForeignKey("wallets.id"))
    amount_fen: Mapped[int]
    fee_fen: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default=WithdrawalStatus.REQUESTED)
    payout_method: Mapped[str] = mapped_column(String(16), default="wechat")
    reviewed_by_admin_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    reject_reason: Mapped[str] = mapped_column(String(256), default="")
    failure_reason: Mapped[str] = mapped_column(String(256), default="")
    payment_no: Mapped[str | None] = mapped_column(String(64))
    # 商家转账 (payout_method "wechat_bill"): WeChat's state of the bill (WAIT_USER_CONFIRM, …) and, while the
    # member has to confirm it, the package_info their phone hands to requestMerchantTransfer.
    transfer_state: Mapped[str | None] = mapped_column(String(24))
    transfer_package: Mapped[str | None] = mapped_column(String(1024))
    # The payee's real name, which WeChat requires (encrypted) on transfers from ¥2,000 up; asked with the request.
    payee_name: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reviewed_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]


class RefusedNotifyReason(StrEnum):
    BAD_SIGNATURE = "bad_signature"  # not signed with our merchant key
    MALFORMED = "malformed"  # not a notify's XML, or its fields missing or out of range
    DTD = "dtd"
    TOO_LARGE = "too_large"
    STALE = "stale"  # a v3 notify signed outside the time window: a replay, or a clock to fix


class RefusedNotify(db.Model):
    """Pay notifies refused before a word of them was believed, one row per source address and reason, counted:
    a flood of junk stays one row instead of burying the signed notifies a person must look at (those stay
    ``PaymentEvent`` rows)."""

    __tablename__ = "refused_notifies"
    __table_args__ = (
        UniqueConstraint("source", "reason"),
        one_of("reason", RefusedNotifyReason, "reason"),
        CheckConstraint("count > 0", name="count_positive"),
        Index("ix_refused_notifies_last_seen_at", "last_seen_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(45))  # the sender's IP address, as the rate limit sees it
    reason: Mapped[str] = mapped_column(String(16))
    count: Mapped[int]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    last_detail: Mapped[str] = mapped_column(Text, default="")  # what was wrong, and the start of the body
