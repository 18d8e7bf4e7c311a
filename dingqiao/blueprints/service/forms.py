"""售后与客服's forms: each only parses. The rules (a kind, a body, lengths, an order of one's own, the photos)
are services/service_cases.py's; a refusal lands in the page's message area while the htmx form keeps what was
typed and the photos chosen. The photos themselves are read by common.uploaded_photos."""
from wtforms import StringField, TextAreaField

from ...forms import SubmissionForm


class CaseForm(SubmissionForm):
    """提交 a new case."""

    kind = StringField("问题类型")  # the service names the kinds and refuses any other
    order_no = StringField("相关订单")
    subject = StringField("标题")
    body = TextAreaField("问题描述")


class CaseMessageForm(SubmissionForm):
    """A member's next message in a case's thread."""

    body = TextAreaField("补充说明")


class CloseCaseForm(SubmissionForm):
    """问题已解决: close the case."""
