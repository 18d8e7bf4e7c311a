"""The member's forms (我的, orders, wallet): each only parses, with the services' own rules (parse_yuan,
normalise_mobile…) so a refusal shows next to its field, in the services' words, with what was typed kept."""
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, TextAreaField

from ...forms import RuleField
from ...services.accounts import normalise_mobile
from ...services.withdrawals import parse_yuan

MAX_PAYEE_NAME = 64


class SubmissionForm(FlaskForm):
    """A button whose double tap must act once: the page's one-time key (services/submissions.py)."""

    submission_key = HiddenField()

    @property
    def key(self) -> str | None:
        return self.submission_key.data or None


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
