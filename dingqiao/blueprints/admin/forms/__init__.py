"""Every form the admin area's own views read (Flask-Admin's data pages and content have theirs): each only
parses — text as typed, picked rows as bounded ids, amounts and percentages by the rules already written once
(withdrawals.parse_yuan, commissions.percent_to_bps) — and the service says what is allowed. A refused field
carries its message in Chinese (``field.errors``, shown next to the field by templates/admin/_form.html), and the
page comes back with every value as typed.

The network's forms (services/network.py's arguments as typed) are shared by 网络 (network.py) and the 开店向导
(setup.py)."""
from collections.abc import Callable
from decimal import Decimal

from flask_wtf import FlaskForm
from wtforms import Field, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import AnyOf, InputRequired, StopValidation

from ....models import CommissionRuleVersion, CountsAt
from ....services.accounts import MIN_ADMIN_PASSWORD_LENGTH
from ....services.commission_rules import rule_problems
from ....services.commissions import PERCENT_FIELDS, RuleInput, percent_text, percent_to_bps
from ....services.setup import DEFAULT_SHOP_NAME, PROPOSED_COMMISSION_RULE
from ....services.withdrawals import parse_yuan
from ....forms import RuleField, first_error
from ....web import parse_id, parse_signed_int


def _stripped(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An admin's typed number with the spaces around it ignored (pasted from a spreadsheet)."""
    return lambda text: parse(text.strip())


def _whole_number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 4 else None


class _AdminRuleField(RuleField):
    """A RuleField as the admin's forms declare it: label, then the refusal in the field's words, then what to say
    when it is empty."""

    rule: Callable[[str], object] = staticmethod(str)

    def __init__(self, label: str, message: str = "", empty: str = "", **kwargs):
        super().__init__(label, _stripped(self.rule), message=message, empty=empty, **kwargs)


class IdField(_AdminRuleField):
    """A row picked from a list, or a member's id typed: ASCII digits (web.parse_id), else the field's message."""

    rule = staticmethod(parse_id)


class WholeNumberField(_AdminRuleField):
    """A count typed as ASCII digits (at most four)."""

    rule = staticmethod(_whole_number)


class SignedNumberField(_AdminRuleField):
    """"+5", "-2", "7": a change of a quantity (web.parse_signed_int)."""

    rule = staticmethod(parse_signed_int)


class PercentField(_AdminRuleField):
    """A rate in percent, at most two decimals ("12.5" → 1250 basis points: commissions.percent_to_bps)."""

    rule = staticmethod(percent_to_bps)


class YuanField(_AdminRuleField):
    """An amount in yuan, at most two decimals, as fen (withdrawals.parse_yuan)."""

    rule = staticmethod(parse_yuan)


class IdListField(Field):
    """Every row ticked in a list (``name`` repeated): the ids that parse, at most ``limit``."""

    def __init__(self, label: str = "", limit: int = 100, **kwargs):
        super().__init__(label, **kwargs)
        self.limit = limit

    def process_formdata(self, valuelist) -> None:
        self.data = [i for i in (parse_id(raw) for raw in valuelist) if i is not None][:self.limit]

    def _value(self) -> str:
        return ""


class NetworkForm(FlaskForm):
    """Fields are named as the service's arguments, so ``values()`` is the call."""

    def values(self) -> dict:
        return {field.short_name: parse_id(field.data) if isinstance(field, IdField) else field.data or ""
                for field in self if field.short_name != "csrf_token"}

    def first_error(self) -> str:
        return first_error(self)


OWNER_REFUSAL = "请填写店主的会员 ID：输入手机号、昵称或推广码，从提示中选择。"


class WarehouseForm(NetworkForm):
    name = StringField("仓库名称")


class RegionForm(NetworkForm):
    code = StringField("区域编号")
    name = StringField("区域名称")


class FactoryStoreForm(NetworkForm):
    region_id = IdField("独家区域", "请选择区域。")
    owner_user_id = IdField("店主", OWNER_REFUSAL)
    name = StringField("店名")
    address = StringField("地址")
    phone = StringField("电话")


class OutletForm(NetworkForm):
    region_id = IdField("区域", "请选择区域。")
    owner_user_id = IdField("店主", OWNER_REFUSAL)
    name = StringField("店名")
    address = StringField("地址")
    phone = StringField("电话")
    opening_hours = StringField("营业时间")
    latitude = StringField("纬度")
    longitude = StringField("经度")


class MoveForm(NetworkForm):
    region_id = IdField("划入区域", "请选择要划入的区域。")


class IdentityForm(NetworkForm):
    user_id = IdField("会员", "请填写会员 ID：输入手机号、昵称或推广码，从提示中选择。")
    identity = StringField("身份")
    reason = TextAreaField("原因")


# ---------------------------------------------------------------- login, decisions, queues

class LoginForm(FlaskForm):
    """Whether the name and password match, and lockouts, are accounts.authenticate_admin's to say."""

    username = StringField("用户名")
    password = PasswordField("密码")


class ReasonForm(FlaskForm):
    """A decision with a reason: rejecting a refund or an application, cancelling a restock order. The service
    refuses a missing or too long reason."""

    reason = TextAreaField("原因")


class WithdrawalReviewForm(FlaskForm):
    """One action on the withdrawals ticked (at most 100): approve, paid offline, reject or cancel a transfer."""

    ACTIONS = ("approve", "offline", "reject", "cancel_transfer")
    REFUSAL = "请选择提现申请和操作。"
    action = StringField("操作", validators=[AnyOf(ACTIONS, message=REFUSAL)])
    withdrawal_id = IdListField("提现申请", validators=[InputRequired(REFUSAL)])
    note = TextAreaField("备注")
    reason = TextAreaField("拒绝原因")

    def first_error(self) -> str:
        return first_error(self)


class CommissionRuleForm(FlaskForm):
    """A commission rule version as typed, rates in percent. Each number is parsed here; the guard rails
    (commission_rules.rule_problems) put their refusal next to the field they are about."""

    referral_depth = WholeNumberField("推荐层级（1–3）", "推荐层级需填写 1 到 3 的整数。", "请填写推荐层级。")
    direct = PercentField("直推奖励（%）", empty="请填写直推奖励。")
    team = PercentField("团队奖励·二级（%）", empty="请填写团队奖励。")
    third_level = PercentField("团队奖励·三级（%）", empty="请填写三级奖励（可为 0）。")
    service_fee = PercentField("核销服务费（%）", empty="请填写核销服务费。")
    regional = PercentField("区域奖励（%）", empty="请填写区域奖励。")
    payout_cap = PercentField("单笔总佣金上限（%，≤40）", empty="请填写上限。")
    cooling_days = WholeNumberField("售后冷静期（天）", "售后冷静期需填写整数天数。", "请填写冷静期天数。")
    note = StringField("说明")

    PERCENT_FIELDS = PERCENT_FIELDS
    WIZARD_NOTE = "开店向导发布"

    def validate(self, extra_validators=None) -> bool:
        if not super().validate(extra_validators):
            return False
        for name, message in rule_problems(self.rule()).items():
            self[name].errors = [*self[name].errors, message]
        return not self.errors

    def rule(self, note: str | None = None) -> RuleInput:
        """The rule as parsed (call after ``validate``)."""
        return RuleInput(referral_depth=self.referral_depth.value, cooling_days=self.cooling_days.value,
                         note=(self.note.data or "").strip()[:200] if note is None else note,
                         **{f"{name}_bps": self[name].value for name in PERCENT_FIELDS})

    def first_error(self) -> str:
        return first_error(self)

    @classmethod
    def of(cls, rule: "CommissionRuleVersion | RuleInput | None") -> "CommissionRuleForm":
        """A blank form showing ``rule`` (the one in force), or the wizard's proposal before there is one."""
        rule = rule or PROPOSED_COMMISSION_RULE
        form = cls(formdata=None, referral_depth=str(rule.referral_depth), cooling_days=str(rule.cooling_days),
                   **{name: percent_text(getattr(rule, f"{name}_bps")) for name in PERCENT_FIELDS})
        form.validate_values()
        return form

    def validate_values(self) -> None:
        """Parse the values shown without checking CSRF (a form filled in from the data, not posted)."""
        for field in self:
            if isinstance(field, RuleField):
                try:
                    field.pre_validate(self)
                except StopValidation:
                    field.value = None


class IdentityRuleForm(FlaskForm):
    """身份升级规则: one target's condition; which metrics and modes are allowed is upgrades.py's to say."""

    target = StringField("目标身份")
    metric = StringField("条件")
    threshold = YuanField("门槛（元）")
    counts_at = StringField("计入时点", default=CountsAt.REDEEMED)
    grant_mode = StringField("开通方式")
    note = StringField("说明")


class ExportForm(FlaskForm):
    """What to export, from which China-time day to which; a GET (a link or bookmark works), so no CSRF. The
    range's limits are exports.parse_export's."""

    class Meta:
        csrf = False

    kind = StringField("导出内容")
    start = StringField("开始日期")
    end = StringField("结束日期")
    format = StringField("格式")


# ---------------------------------------------------------------- members, stock, after-sales

class UplineForm(FlaskForm):
    """改绑推荐人: the new upline's referral code (empty: no upline) and why."""

    code = StringField("新推荐人推广码")
    reason = TextAreaField("原因")


class ActiveForm(FlaskForm):
    active = StringField("账号状态", validators=[AnyOf(("0", "1"), message="请选择启用或停用。")])
    reason = TextAreaField("原因")


class StockAdjustForm(FlaskForm):
    location_id = IdField("库存地点", "库存地点不存在，请重新选择。")
    product_id = IdField("商品", "请选择商品。")
    delta = SignedNumberField("调整数量", "调整数量需为整数，增加填正数，减少填负数，例如 5 或 -2。")
    note = StringField("原因")

    def first_error(self) -> str:
        return first_error(self)


class ReplyForm(FlaskForm):
    """A reply in an after-sales thread; its length and the photos are service_cases' to check."""

    body = TextAreaField("回复")


# ---------------------------------------------------------------- 开店向导 (setup.py)

class ClaimForm(FlaskForm):
    username = StringField("管理员用户名", validators=[InputRequired("请填写用户名。")])
    password = PasswordField(f"密码（至少 {MIN_ADMIN_PASSWORD_LENGTH} 位）", validators=[InputRequired("请填写密码。")])
    password_again = PasswordField("再次输入密码", validators=[InputRequired("请再次输入密码。")])
    shop_name = StringField("店铺名称", default=DEFAULT_SHOP_NAME, validators=[InputRequired("请填写店铺名称。")])


class NameForm(FlaskForm):
    shop_name = StringField("店铺名称", validators=[InputRequired("请填写店铺名称。")])


class IdentityRulesForm(FlaskForm):
    """The wizard's two identity rules at once: the thresholds in yuan and how identities are granted."""

    outlet_threshold = YuanField("成为核销网点：累计提货满（元）", "门槛请填写金额（元），最多两位小数。", "请填写门槛。")
    factory_threshold = YuanField("成为工厂店：门店累计进货满（元）", "门槛请填写金额（元），最多两位小数。", "请填写门槛。")
    grant_mode = SelectField("开通方式", choices=[("review", "达标后人工审核"), ("auto", "达标自动开通"),
                                              ("closed", "暂停申请")])

    def thresholds_fen(self) -> dict[str, int]:
        return {"outlet": self.outlet_threshold.value, "factory": self.factory_threshold.value}


def yuan_text(fen: int) -> str:
    return f"{Decimal(fen) / 100:.2f}"
