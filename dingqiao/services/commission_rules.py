"""The commission rule's guard rails, each named by the field it is about, so a form can show every problem next
to the field that has it. The same checks, in the same order, as ``commissions.validate_rule`` (which raises the
first one; it should call ``rule_problems`` once services/commissions.py is free to change — see issue 22)."""
from .commissions import MAX_COOLING_DAYS, MAX_PAYOUT_CAP_BPS, MAX_REFERRAL_DEPTH, RuleError, RuleInput

RATE_FIELDS = ("direct", "team", "third_level", "service_fee", "regional")


def rule_problems(rule: RuleInput) -> dict[str, str]:
    """Field name (a form field: ``referral_depth``, ``direct`` … ``payout_cap``, ``cooling_days``) → what is wrong
    with it, in Chinese; empty when the rule may be published. One message per field, the first check's."""
    problems: dict[str, str] = {}

    def refuse(field: str, message: str) -> None:
        problems.setdefault(field, message)

    if not 1 <= rule.referral_depth <= MAX_REFERRAL_DEPTH:
        refuse("referral_depth", f"推荐层级最多 {MAX_REFERRAL_DEPTH} 级（合规要求），至少 1 级。")
    rates = {name: getattr(rule, f"{name}_bps") for name in RATE_FIELDS}
    for name, rate in rates.items():
        if rate < 0:
            refuse(name, "比例不能为负数。")
    if rule.referral_depth < 2 and rule.team_bps:
        refuse("team", "推荐层级为 1 时团队奖励必须为 0。")
    if rule.referral_depth < 3 and rule.third_level_bps:
        refuse("third_level", "推荐层级小于 3 时第三级奖励必须为 0。")
    if not 0 <= rule.payout_cap_bps <= MAX_PAYOUT_CAP_BPS:
        refuse("payout_cap", f"单笔订单总佣金上限不能超过 {MAX_PAYOUT_CAP_BPS / 100:g}%。")
    total = sum(rates.values())
    if total > rule.payout_cap_bps:
        refuse("payout_cap", f"各项比例合计 {total / 100:g}% 超过单笔上限 {rule.payout_cap_bps / 100:g}%。")
    if not 0 <= rule.cooling_days <= MAX_COOLING_DAYS:
        refuse("cooling_days", f"售后冷静期需在 0 到 {MAX_COOLING_DAYS} 天之间。")
    return problems


def check_rule(rule: RuleInput) -> None:
    """Refuse a rule that breaks a guard rail with the first problem (what ``validate_rule`` says)."""
    problems = rule_problems(rule)
    if problems:
        raise RuleError(next(iter(problems.values())))
