"""The shop's forms (cart, 立即购买, checkout): each only parses, with the services' own rules (web.parse_id,
cart.parse_quantity, accounts.normalise_mobile), so a refusal is said in the services' words."""
from flask_wtf import FlaskForm
from wtforms import HiddenField

from ...forms import RuleField, SubmissionForm, id_rule
from ...services.accounts import normalise_mobile
from ...services.cart import parse_quantity
from ...web import parse_id

CHOOSE_PRODUCT = "请选择商品。"


class CartAddForm(FlaskForm):
    """加入购物车 / 立即购买 (``then=checkout``) on the product page."""

    product_id = RuleField("商品", id_rule(CHOOSE_PRODUCT))
    quantity = RuleField("购买数量", parse_quantity, default_text="1")
    then = HiddenField()

    @property
    def buy_now(self) -> bool:
        return self.then.data == "checkout"


class CartQuantityForm(FlaskForm):
    """A cart line's −, + and 删除 (quantity 0 removes the line)."""

    quantity = RuleField("数量", parse_quantity, default_text="0")


class BuyNowMixin:
    """The 立即购买 line a checkout carries (``buy`` = product id, ``qty``); no ``buy`` is the cart's checkout."""

    buy = RuleField("商品", id_rule(CHOOSE_PRODUCT))
    qty = RuleField("数量", parse_quantity, default_text="1")

    def _buy_optional(self) -> None:
        self.buy.optional_when_absent = True
        self.qty.optional = not self.buy.raw_data  # a quantity matters only with its product

    @property
    def line(self) -> tuple[int, int] | None:
        return (self.buy.value, self.qty.value) if self.buy.value is not None else None


class BuyNowArgs(BuyNowMixin, FlaskForm):
    """The checkout page's and the outlet list's address (``?buy=&qty=``): read from the query, no CSRF (a GET)."""

    class Meta:
        csrf = False

    def __init__(self, formdata, **kwargs):
        super().__init__(formdata=formdata, **kwargs)
        self._buy_optional()


class CheckoutForm(BuyNowMixin, SubmissionForm):
    """提交订单: the pickup outlet, the phone until the member has one, and the 立即购买 line if any. No outlet
    chosen is the service's to explain (cart.no_pickup_message says why none could be)."""

    outlet_id = RuleField("自提门店", parse_id)  # None (nothing or no id chosen): the view says why
    phone = RuleField("手机号", normalise_mobile, optional=True)

    def __init__(self, *args, needs_phone: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._buy_optional()
        self.phone.optional = not needs_phone
