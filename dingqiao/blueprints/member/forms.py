"""The member's forms (我的, orders, wallet): each only parses, with the services' own rules (parse_yuan,
normalise_mobile…) so a refusal shows next to its field, in the services' words, with what was typed kept."""
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, TextAreaField

from ...forms import RuleField, SubmissionForm
from ...services.accounts import normalise_mobile
from ...services.upgrades import ApplicationInput
from ...services.withdrawals import parse_yuan
from ...web import parse_id

MAX_PAYEE_NAME = 64


class PhoneForm(FlaskForm):
    """我的 → 手机号."""

    phone = RuleField("手机号", normalise_mobile)


class WithdrawalForm(SubmissionForm):
    """提现 (review, ``fill=max`` for 全部提现) and 确认提现. The phone is asked until the member has one; a new one
    typed later replaces it."""

    amount = RuleField("提现金额", parse_yuan)
    phone = RuleField("手机号", normalise_mobile, optional=True)
    payee_name = StringField("收款人真实姓名", filters=[lambda text: (text or "")[:MAX_PAYEE_NAME]])
    fill = HiddenField()

    def __init__(self, *args, needs_phone: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.phone.optional = not needs_phone
        if self.fill.data == "max":  # 全部提现: the amount is the service's to work out
            self.amount.optional = True
            self.amount.data = ""


class RefundForm(SubmissionForm):
    reason = TextAreaField("退款原因")  # services/refunds.py trims it and says when it is missing


class DemoPayForm(SubmissionForm):
    """模拟支付 (demo mode): the button only, its one-time key making a double tap pay once."""


class UpgradeForm(FlaskForm):
    """身份升级's application. Its rules (the target, lengths, the region, the phone, the position) are
    services/upgrades.py's, said in the page's message area while the form keeps what was typed."""

    target = HiddenField()
    region_id = RuleField("所在区域", parse_id)  # None for none chosen: the service asks for one
    shop_name = StringField("店名")
    address = StringField("详细地址")
    phone = StringField("联系电话")
    opening_hours = StringField("营业时间")
    latitude = HiddenField()
    longitude = HiddenField()

    def application(self) -> ApplicationInput:
        return ApplicationInput(
            target=self.target.data or "", region_id=self.region_id.value, shop_name=self.shop_name.data or "",
            address=self.address.data or "", latitude=self.latitude.data or "", longitude=self.longitude.data or "",
            phone=self.phone.data or "", opening_hours=self.opening_hours.data or "",
        )
