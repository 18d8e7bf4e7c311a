"""The network's forms (services/network.py's arguments as typed), shared by 网络 (network.py) and the
开店向导 (setup.py): each only parses — text as typed, picked rows as bounded ids — and the service says what is
allowed."""
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import StopValidation

from ...web import parse_id


def first_error(form: FlaskForm) -> str:
    """The first thing wrong with a refused form, to show above it."""
    return next((str(message) for messages in form.errors.values() for message in messages), "请检查填写的内容。")


class IdField(StringField):
    """A row picked from a list, or a member's id typed: ASCII digits (web.parse_id), else the field's message."""

    def __init__(self, label: str, refusal: str, **kwargs):
        super().__init__(label, **kwargs)
        self.refusal = refusal

    def pre_validate(self, form) -> None:
        if parse_id(self.data) is None:
            raise StopValidation(self.refusal)


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
