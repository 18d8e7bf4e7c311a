"""The commission engine: fees on one order, to people fixed on that order when it is paid.

Compliance guard rails (禁止传销条例 art. 7 and WeChat's ban on multi-level distribution), enforced here and
refused at configuration time:
- every line is a fee on one item of one order, paid to that order's buyer's uplines (at most three levels,
  two by default), its pickup outlet or its region's factory store — never a share of anyone's aggregate
  "team performance", and nothing for recruiting as such (there is no kind of line for it);
- the buyer earns nothing from their own purchase;
- earning needs no purchase, fee or product: anyone with a referral code earns the direct reward;
- the total of an order's lines never exceeds the version's payout cap, itself at most MAX_PAYOUT_CAP_BPS;
- amounts are floored to the fen; the remainder stays with the platform.
"""
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..db import write_transaction
from ..models import (
    AdminUser,
    CommissionKind,
    CommissionLine,
    CommissionRuleVersion,
    CommissionStatus,
    LedgerKind,
    Order,
)
from ..models.base import utcnow
from ..money import format_yuan
from . import DomainError
from . import commission_queries as queries
from .audit import record_audit
from .commission_queries import Line
from .messages import enqueue_rows, message_row
from .policy import Duty, require
from .wallet import post_entry

MAX_REFERRAL_DEPTH = 3
DEFAULT_REFERRAL_DEPTH = 2
MAX_PAYOUT_CAP_BPS = 4000  # no rule version may pay out more than 40% of an order
MAX_COOLING_DAYS = 30
BPS = 10_000


class RuleError(DomainError):
    pass


@dataclass(frozen=True)
class RuleInput:
    referral_depth: int
    direct_bps: int
    team_bps: int
    third_level_bps: int
    service_fee_bps: int
    regional_bps: int
    payout_cap_bps: int
    cooling_days: int = 0
    note: str = ""


# A rule's rates as people type and read them: percent with up to two decimals (12.5 → 1250 basis points).
PERCENT_FIELDS = ("direct", "team", "third_level", "service_fee", "regional", "payout_cap")
PERCENT_REFUSED = "比例需为 0 到 100 之间、最多两位小数的百分数（如 12.5）。"


def percent_to_bps(value: "str | Decimal | None") -> int:
    """"12.5", "12.5%" or Decimal("12.5") → 1250; anything else (negative, over 100, a third decimal, text)
    is refused in Chinese."""
    if isinstance(value, Decimal):
        percent = value
    else:
        text = (value or "").strip().removesuffix("%").removesuffix("％").strip()
        try:
            percent = Decimal(text) if 0 < len(text) <= 12 else None
        except InvalidOperation:
            percent = None
    if percent is None or not percent.is_finite() or not 0 <= percent <= 100 or (percent * 100) % 1:
        raise RuleError(PERCENT_REFUSED)
    return int(percent * 100)


def percent_text(bps: int) -> str:
    """1250 → "12.5", 1000 → "10", 5 → "0.05": what a percent field shows."""
    return f"{Decimal(bps) / 100:f}"


def format_percent(bps: int | None) -> str:
    return "" if bps is None else f"{percent_text(bps)}%"


def _whole_number(raw: str | None, message: str) -> int:
    text = (raw or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 4:
        raise RuleError(message)
    return int(text)


def parse_rule(form: Mapping[str, str], note: str = "") -> RuleInput:
    """A rule as typed: the depth and cooling days as whole numbers, every rate in percent (``PERCENT_FIELDS``)."""
    return RuleInput(
        referral_depth=_whole_number(form.get("referral_depth"), "推荐层级需填写 1 到 3 的整数。"),
        cooling_days=_whole_number(form.get("cooling_days"), "售后冷静期需填写整数天数。"),
        note=note.strip()[:200],
        **{f"{name}_bps": percent_to_bps(form.get(name)) for name in PERCENT_FIELDS},
    )


def validate_rule(rule: RuleInput) -> None:
    """Refuse any configuration that breaks the guard rails, with the reason in Chinese."""
    if not 1 <= rule.referral_depth <= MAX_REFERRAL_DEPTH:
        raise RuleError(f"推荐层级最多 {MAX_REFERRAL_DEPTH} 级（合规要求），至少 1 级。")
    rates = [rule.direct_bps, rule.team_bps, rule.third_level_bps, rule.service_fee_bps, rule.regional_bps]
    if any(rate < 0 for rate in rates):
        raise RuleError("比例不能为负数。")
    if rule.referral_depth < 2 and rule.team_bps:
        raise RuleError("推荐层级为 1 时团队奖励必须为 0。")
    if rule.referral_depth < 3 and rule.third_level_bps:
        raise RuleError("推荐层级小于 3 时第三级奖励必须为 0。")
    if not 0 <= rule.payout_cap_bps <= MAX_PAYOUT_CAP_BPS:
        raise RuleError(f"单笔订单总佣金上限不能超过 {MAX_PAYOUT_CAP_BPS / 100:g}%。")
    if sum(rates) > rule.payout_cap_bps:
        raise RuleError(f"各项比例合计 {sum(rates) / 100:g}% 超过单笔上限 {rule.payout_cap_bps / 100:g}%。")
    if not 0 <= rule.cooling_days <= MAX_COOLING_DAYS:
        raise RuleError(f"售后冷静期需在 0 到 {MAX_COOLING_DAYS} 天之间。")


_CURRENT_RULE = select(CommissionRuleVersion).order_by(CommissionRuleVersion.id.desc()).limit(1)


def current_rule(session: Session) -> CommissionRuleVersion | None:
    return session.execute(_CURRENT_RULE).scalar()


def rule_published(session: Session) -> bool:
    """Whether the shop may sell: a commission rule has been published (orders.NOT_OPEN_YET says why not). Asked by
    every order, so one prebuilt read of an id rather than loading the rule."""
    return queries.any_rule(session)


def create_rule_version(session: Session, admin: AdminUser, rule: RuleInput) -> CommissionRuleVersion:
    """Rules are never edited: a change is a new version; paid orders keep the version they were paid under."""
    require(admin, Duty.MONEY, "只有财务或超级管理员可以修改佣金规则。")
    validate_rule(rule)
    with write_transaction(session):
        version = CommissionRuleVersion(**rule.__dict__, created_by_admin_id=admin.id)
        session.add(version)
        session.flush()
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="commission_rule.create",
                     target_type="commission_rule_version", target_id=version.id, detail=dict(rule.__dict__))
    return version


def preview(rule: RuleInput, order_total_fen: int = 10_000, depth_available: int = MAX_REFERRAL_DEPTH) -> dict:
    """What an order of ``order_total_fen`` would pay per kind under ``rule`` (for the admin's preview)."""
    return {
        "direct": order_total_fen * rule.direct_bps // BPS,
        "team": (order_total_fen * rule.team_bps // BPS if rule.referral_depth >= 2 else 0)
        + (order_total_fen * rule.third_level_bps // BPS if rule.referral_depth >= 3 and depth_available >= 3 else 0),
        "service_fee": order_total_fen * rule.service_fee_bps // BPS,
        "regional": order_total_fen * rule.regional_bps // BPS,
    }


def upline_chain(session: Session, user_id: int, depth: int) -> list[int]:
    """The user's uplines, nearest first, at most ``depth`` of them."""
    chain: list[int] = []
    current = user_id
    while len(chain) < depth:
        upline = queries.upline_of(session, current)
        if upline is None or upline == user_id or upline in chain:
            break
        chain.append(upline)
        current = upline
    return chain


def write_order_lines(session: Session, order, rule: CommissionRuleVersion | None) -> list[Line]:
    """At payment, inside the PAID transition: compute the order's lines under ``rule`` (the one in force,
    which the caller has stamped on the order), write them FROZEN and credit each beneficiary's frozen
    balance. ``order``: anything with the order's ``id``, ``user_id`` and ``outlet_id``."""
    if rule is None:
        return []
    outlet_owner, factory_owner = queries.payees(session, order.outlet_id)
    beneficiaries: list[tuple[str, int, int, int | None]] = []  # kind, level, rate, user
    for level, upline in enumerate(upline_chain(session, order.user_id, rule.referral_depth), start=1):
        kind = CommissionKind.DIRECT if level == 1 else CommissionKind.TEAM
        rate = {1: rule.direct_bps, 2: rule.team_bps, 3: rule.third_level_bps}[level]
        beneficiaries.append((kind, level, rate, upline))
    beneficiaries.append((CommissionKind.SERVICE_FEE, 0, rule.service_fee_bps, outlet_owner))
    beneficiaries.append((CommissionKind.REGIONAL, 0, rule.regional_bps, factory_owner))
    active = queries.active_user_ids(session, [b[3] for b in beneficiaries if b[3]])

    lines = []
    for item_id, subtotal in queries.item_subtotals(session, order.id):
        for kind, level, rate, user_id in beneficiaries:
            amount = subtotal * rate // BPS
            if user_id is None or user_id == order.user_id or user_id not in active or amount <= 0:
                continue
            line_id = queries.add_line(session, order_id=order.id, order_item_id=item_id, kind=kind, level=level,
                                       beneficiary_user_id=user_id, rule_version_id=rule.id, base_fen=subtotal,
                                       rate_bps=rate, amount_fen=amount)
            lines.append(Line(line_id, order.id, user_id, amount, kind))
    # Wallet rows are locked in user-id order by every writer, so two orders never deadlock on Postgres.
    for line in sorted(lines, key=lambda line: (line.beneficiary_user_id, line.id)):
        post_entry(session, line.beneficiary_user_id, LedgerKind.COMMISSION_FROZEN, frozen=line.amount_fen,
                   commission_line_id=line.id, order_id=order.id, memo=CommissionKind(line.kind).label)
    return lines


def settle_order_lines(session: Session, order, now: datetime | None = None) -> int:
    """At redemption: the order's frozen lines become available — now, or after the version's cooling period
    (then ``settle_due_lines`` finishes the job). Returns how many lines were settled now. ``order``: anything
    with the order's ``id`` and ``rule_version_id``."""
    now = now or utcnow()
    cooling_days = queries.cooling_days(session, order.rule_version_id) if order.rule_version_id else 0
    # Every frozen line gets its date first: a line the next statement cannot settle now (the order is not
    # COMPLETED, or after-sales is open) is left for settle_due_lines instead of being forgotten.
    queries.schedule_frozen(session, order.id, now + timedelta(days=cooling_days))
    if cooling_days:
        return 0
    return _settle(queries.settle_due(session, now, order.id), session)


def settle_due_lines(session: Session, now: datetime | None = None) -> int:
    """For cron: lines of picked-up orders whose cooling period has ended become available."""
    now = now or utcnow()
    with write_transaction(session):
        return _settle(queries.settle_due(session, now), session)


def reverse_order_lines(session: Session, order: Order, now: datetime | None = None) -> None:
    """At refund: frozen lines are reversed; settled ones are clawed back from available — which may go
    negative, a receivable that the beneficiary's next earnings pay off first.

    Two conditional UPDATE … RETURNING passes rather than read-then-branch: on Postgres a concurrent
    settlement (the cooling cron) can move a line FROZEN → SETTLED between a read and a write; the second
    pass, a new statement, sees that and claws the line back instead of missing it.
    """
    now = now or utcnow()
    for expected, new, kind, memo in (
        (CommissionStatus.FROZEN, CommissionStatus.REVERSED, LedgerKind.COMMISSION_REVERSED, "订单退款，佣金撤销"),
        (CommissionStatus.SETTLED, CommissionStatus.CLAWED_BACK, LedgerKind.COMMISSION_CLAWED_BACK, "售后退款，佣金追回"),
    ):
        moved = session.execute(
            update(CommissionLine)
            .where(CommissionLine.order_id == order.id, CommissionLine.status == expected)
            .values(status=new, reversed_at=now)
            .returning(CommissionLine.id, CommissionLine.beneficiary_user_id, CommissionLine.amount_fen)
            .execution_options(synchronize_session=False)
        ).all()
        for line in sorted(moved, key=lambda row: (row.beneficiary_user_id, row.id)):
            amount = line.amount_fen
            if new == CommissionStatus.REVERSED:
                post_entry(session, line.beneficiary_user_id, kind, frozen=-amount, commission_line_id=line.id,
                           order_id=order.id, memo=memo)
            else:
                post_entry(session, line.beneficiary_user_id, kind, available=-amount, earned=-amount,
                           commission_line_id=line.id, order_id=order.id, memo=memo)


def _settle(settled: list[Line], session: Session) -> int:
    """Credit what ``queries.settle_due`` settled. A line a concurrent refund moved first no longer matched
    (Postgres re-checks the row), so it is neither settled nor credited."""
    _credit_settled(session, settled)
    return len(settled)


def _credit_settled(session: Session, lines: list[Line]) -> None:
    """Settled lines move from frozen to available, wallets in user-id order; one "收益已到账" message per order
    and beneficiary."""
    credited: dict[tuple[int, int], int] = defaultdict(int)  # (order, beneficiary) → fen
    for line in sorted(lines, key=lambda line: (line.beneficiary_user_id, line.id)):
        post_entry(session, line.beneficiary_user_id, LedgerKind.COMMISSION_SETTLED, available=line.amount_fen,
                   frozen=-line.amount_fen, earned=line.amount_fen, commission_line_id=line.id,
                   order_id=line.order_id, memo=CommissionKind(line.kind).label)
        credited[line.order_id, line.beneficiary_user_id] += line.amount_fen
    ordered = {order_id for order_id, _ in credited}
    numbers = dict(session.execute(select(Order.id, Order.order_no).where(Order.id.in_(ordered))).all()) if ordered else {}
    enqueue_rows(session, [
        message_row(user_id=user_id, event="commission_settled", object_id=f"{order_id}:{user_id}", title="收益已到账",
                    body=f"一笔 {format_yuan(amount)} 的收益已结算到可用余额，可申请提现。", link="/wallet/",
                    template_data={"order_no": numbers.get(order_id, ""), "amount": amount})
        for (order_id, user_id), amount in credited.items()
    ], once=True)
