"""The member login's one form: demo mode's picker (WeChat's login has no form of ours)."""
from flask_wtf import FlaskForm
from wtforms import HiddenField

from ...forms import RuleField, id_rule


class DemoLoginForm(FlaskForm):
    user_id = RuleField("演示用户", id_rule("请选择一位演示用户。"))
    next = HiddenField()
