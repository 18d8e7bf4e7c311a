"""What the forms of every blueprint package (each one's forms.py) share: a field checked by a rule the services
already own (web.parse_id, cart.parse_quantity, withdrawals.parse_yuan, accounts.normalise_mobile,
commissions.percent_to_bps…), so the rule is written once and its Chinese message shows next to the field; and the
first message of a refused form.

Not a blueprint module: every package may use it without importing another package."""
from collections.abc import Callable

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField
from wtforms.validators import StopValidation

from .services import DomainError
from .services.dashboards import parse_day, parse_range
from .web import domain_error_status, parse_id


def first_error(form: FlaskForm) -> str:
    """The first thing wrong with a refused form, for a page that shows one message."""
    return next((str(message) for messages in form.errors.values() for message in messages), "请检查填写的内容。")


def refuse(form: FlaskForm) -> DomainError:
    """A refused form whose fields the page cannot show again (a stepper's buttons, hidden ids, an htmx form that
    keeps what was typed): its first message as the DomainError the views raise, of the rule's own kind, so it
    lands where every refusal does (the page's #flash for htmx, the error page otherwise)."""
    return _first_refusal(form) or DomainError(first_error(form))


def place_refusal(form: FlaskForm, exc: DomainError, default: str | None = None) -> bool:
    """A service's refusal shown next to the field it is about (``exc.field``, else ``default``), as if the form had
    found it; False when the form has no such field (the page shows it in its message area then)."""
    name = exc.field or default
    if not name or name not in form:
        return False
    form[name].errors = [*form[name].errors, exc.message]
    return True


def refusal_status(form: FlaskForm) -> int:
    """The status a refused form answers with: its first rule's own (the service's kind, e.g. a conflict's 409),
    else 400."""
    refusal = _first_refusal(form)
    return domain_error_status(refusal) if refusal is not None else 400


def _first_refusal(form: FlaskForm) -> DomainError | None:
    return next((field.refusal for field in form if field.errors and getattr(field, "refusal", None)), None)


class SubmissionForm(FlaskForm):
    """A form whose double tap must act once: the page's one-time key (services/submissions.py,
    ``submission_key_field()`` in the templates)."""

    submission_key = HiddenField()

    @property
    def key(self) -> str | None:
        return self.submission_key.data or None


class RuleField(StringField):
    """Text parsed by a service's rule: ``parse(text)`` returns the value (``field.value``) or raises a DomainError,
    whose message becomes the field's error. ``optional`` leaves an empty field as ``None`` unchecked. The text as
    typed stays in ``data`` so the form shows it again. ``optional_when_absent`` leaves it unchecked only when
    the request did not send it at all (``?buy=`` is checked, no ``buy`` is the cart's checkout).
    ``default_text`` stands in for a field not sent (one sent empty is checked as it is).

    ``message`` puts the refusal in the field's own words (the rule's message otherwise), and with it ``parse``
    returning None is a refusal too (without it None is the value: "nothing chosen" for the service to judge);
    ``empty`` is what to say when nothing but spaces was typed."""

    def __init__(self, label: str = "", parse: Callable[[str], object] = str, *, optional: bool = False,
                 default_text: str | None = None, message: str = "", empty: str = "", **kwargs):
        super().__init__(label, **kwargs)
        self.parse, self.optional, self.default_text, self.value = parse, optional, default_text, None
        self.message, self.empty = message, empty
        self.optional_when_absent = False
        self.refusal: DomainError | None = None  # the rule's own refusal, when it refused

    def pre_validate(self, form) -> None:
        self.value, self.refusal = None, None
        text = self.data if self.raw_data or self.default_text is None else self.default_text
        if (self.optional or self.optional_when_absent and not self.raw_data) and text in (None, ""):
            return
        if self.empty and not (text or "").strip():
            raise StopValidation(self.empty)
        try:
            value = self.parse(text or "")
        except DomainError as exc:
            self.refusal = DomainError(self.message) if self.message else exc
            raise StopValidation(self.refusal.message) from exc
        if value is None and self.message:
            self.refusal = DomainError(self.message)
            raise StopValidation(self.message)
        self.value = value


def id_rule(message: str) -> Callable[[str], int]:
    """web.parse_id with the field's own message for anything that is no id."""

    def parse(text: str) -> int:
        value = parse_id(text)
        if value is None:
            raise DomainError(message)
        return value

    return parse


BAD_DAY = "日期格式应为 年-月-日，例如 2024-05-01；已按最近 30 天显示。"


class DateRangeForm(FlaskForm):
    """A dashboard's 从/到 (YYYY-MM-DD), from the query string (the outlet's and the factory store's). Never
    refused: a missing or wrong day means the last 30 days (services/dashboards.parse_range); a wrong one is
    said next to its field."""

    first = StringField("从", name="from")
    last = StringField("到", name="to")

    class Meta:
        csrf = False  # a GET: nothing is written

    def validate_first(self, field) -> None:
        if field.data and parse_day(field.data) is None:
            raise StopValidation(BAD_DAY)

    def validate_last(self, field) -> None:
        if field.data and parse_day(field.data) is None:
            raise StopValidation(BAD_DAY)

    def buckets(self):
        self.validate()
        return parse_range(self.first.data, self.last.data)
