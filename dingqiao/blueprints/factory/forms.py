"""The 区域看板's one form: the date range (从/到, YYYY-MM-DD), as the picker's inputs name it."""
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import StopValidation

from ...services.dashboards import parse_day, parse_range

BAD_DAY = "日期格式应为 年-月-日，例如 2024-05-01；已按最近 30 天显示。"


class DateRangeForm(FlaskForm):
    """Never refused: a missing or wrong day means the last 30 days (services/dashboards.parse_range); a wrong
    one is said next to its field."""

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
