"""The forms of the outlet pages (pickup codes, staff, the profile, stock, 进货单), as Flask-WTF classes that keep
the inputs' names. Each only parses; the rule behind a field is the service's own (``ServiceRule`` runs it on the
field), so a message is written once, in the service, and shown next to its field.

``refused`` is the one answer to a form that did not pass: the whole page drawn again with the typed values and
each message next to its field; for htmx, the first message in the page's message area (#flash, like every
refusal) and the form drawn again out of band."""
from flask import Response, render_template
from flask_wtf import FlaskForm
from wtforms import Field, HiddenField, StringField, TextAreaField
from wtforms.utils import unset_value
from wtforms.validators import StopValidation

from ...services import DomainError
from ...services.outlets import clean_address, clean_name, clean_opening_hours, clean_phone, clean_typed_position
from ...services.redemption import RedeemError, clean_code
from ...services.restock import parse_quantities
from ...services.submissions import FIELD_NAME
from ...web import domain_error_status, error_response, parse_id, parse_signed_int, render_page, wants_fragment


class ServiceRule:
    """A validator that runs a service's rule on the field's text; the rule's DomainError is the field's error."""

    def __init__(self, rule):
        self.rule = rule

    def __call__(self, form, field) -> None:
        try:
            self.rule(field.data or "")
        except DomainError as error:
            raise StopValidation(error.message) from None


class Parsed:
    """A validator for text that must parse (web.parse_id, web.parse_signed_int): else the field's message."""

    def __init__(self, parse, message: str):
        self.parse, self.message = parse, message

    def __call__(self, form, field) -> None:
        if self.parse(field.data) is None:
            raise StopValidation(self.message)


class OutletForm(FlaskForm):
    refusal_status = 400

    def first_error(self) -> str:
        return next((str(message) for messages in self.errors.values() for message in messages), "请检查填写的内容。")

    def refuse(self, error: DomainError, field: Field | None = None) -> None:
        """A service said no after the form passed: its message goes next to ``field``, else above the form."""
        (field.errors if field is not None else self.form_errors).append(error.message)
        self.refusal_status = domain_error_status(error)


def refused(form: OutletForm, page: str, part: str, **context) -> Response:
    """The answer to a refused form (module docstring). ``part`` is the template of the form alone; drawn with
    ``oob`` it swaps itself into the page."""
    if wants_fragment():
        response = error_response(form.first_error(), form.refusal_status)
        response.set_data(response.get_data(as_text=True) + render_template(part, form=form, oob=True, **context))
        return response
    return render_page(page, form=form, status_code=form.refusal_status, **context)


# ---------------------------------------------------------------- 核销 and staff

class RedeemLookupForm(OutletForm):
    """The typed (or scanned) pickup code, from the query string."""

    refusal_status = domain_error_status(RedeemError(""))
    code = StringField("核销码", [ServiceRule(clean_code)])

    class Meta:
        csrf = False  # a GET: nothing is written


class RedeemForm(OutletForm):
    submission_key = HiddenField(name=FIELD_NAME)


class InviteForm(OutletForm):
    """生成邀请二维码: nothing to type (the CSRF token only)."""


class RemoveStaffForm(OutletForm):
    """移除 a staff member: the row is in the URL."""


class JoinForm(OutletForm):
    """接受邀请: the invite is in the URL."""


# ---------------------------------------------------------------- 门店资料

def _position_rule(form, field) -> None:
    try:
        clean_typed_position(form.latitude.data or "", form.longitude.data or "")
    except DomainError as error:
        raise StopValidation(error.message) from None


class ProfileForm(OutletForm):
    name = StringField("店名", [ServiceRule(clean_name)])
    address = StringField("详细地址", [ServiceRule(clean_address)])
    phone = StringField("联系电话", [ServiceRule(clean_phone)])
    opening_hours = StringField("营业时间", [ServiceRule(clean_opening_hours)])
    latitude = StringField("纬度", [_position_rule])  # both or neither; the message goes next to 纬度
    longitude = StringField("经度")

    def values(self) -> dict:
        return {name: self[name].data or "" for name in
                ("name", "address", "phone", "opening_hours", "latitude", "longitude")}


# ---------------------------------------------------------------- 库存

PRODUCT_GONE = "页面已过期，请刷新后重试。"


class AdjustForm(OutletForm):
    product_id = HiddenField(validators=[Parsed(parse_id, PRODUCT_GONE)])
    delta = StringField("调整数量", [Parsed(parse_signed_int, "请填写调整数量，例如 5 或 -2。")])
    note = StringField("原因")  # required and cleaned by services/stock.adjust_stock

    def values(self) -> dict:
        return {"product_id": parse_id(self.product_id.data), "delta": parse_signed_int(self.delta.data),
                "note": self.note.data or ""}


class ThresholdForm(OutletForm):
    product_id = HiddenField(validators=[Parsed(parse_id, PRODUCT_GONE)])
    threshold = StringField("库存预警数量", [Parsed(parse_id, "预警数量需为不小于 0 的整数。")])

    def values(self) -> dict:
        return {"product_id": parse_id(self.product_id.data), "threshold": parse_id(self.threshold.data)}


# ---------------------------------------------------------------- 进货单

class QuantitiesField(Field):
    """Every ``qty-<product id>`` input of the form as {product id: quantity} (services/restock.parse_quantities,
    its message the field's error); ``typed`` keeps the text of each input to draw it again."""

    def process(self, formdata, data=unset_value, extra_filters=None) -> None:
        self.process_errors, self.raw_data, self.object_data = [], [], {}
        self.typed = {key: value for key, value in (formdata or {}).items() if key.startswith("qty-")}
        try:
            self.data = parse_quantities(self.typed)
        except DomainError as error:
            self.data = {}
            self.process_errors.append(error.message)

    def typed_for(self, product_id: int, default: str = "") -> str:
        return self.typed.get(f"qty-{product_id}", default)


class PlaceRestockForm(OutletForm):
    quantities = QuantitiesField("进货数量")
    note = StringField("备注")
    submission_key = HiddenField(name=FIELD_NAME)


class ShipRestockForm(OutletForm):
    quantities = QuantitiesField("本次发货")
    submission_key = HiddenField(name=FIELD_NAME)


class ReceiveRestockForm(OutletForm):
    submission_key = HiddenField(name=FIELD_NAME)


class CancelRestockForm(OutletForm):
    reason = TextAreaField("取消原因")


