"""我的: the member's own profile, identity, referral code and wallet summary, and the devices logged in."""
import io

import qrcode
from flask import Blueprint, abort, current_app, jsonify, make_response, render_template, request, send_file, url_for
from jinja2_fragments.flask import render_block

from ...extensions import db
from ...fonts import FontMissing
from ...services.accounts import set_member_phone
from ...services.logins import end_member_session, end_other_member_sessions, live_logins, member_policy
from ...services.network_rules import region_choices
from ...services.posters import poster_png, product_poster_input, share_reward_fen, shop_poster_input
from ...services.redemption import staff_outlet_ids
from ...services.team import team_board, team_trends
from ...forms import place_refusal, refusal_status
from ...services.upgrades import apply_for_identity, upgrade_progress, withdraw_application
from ...services.wallet import wallet_view
from ...wechat import WeChatError, js_sdk
from ...services import DomainError
from ...web import (arg_id, domain_error_status, error_response, html_response, public_url, redirect_after_post,
                    render_page, wants_fragment)
from ..common import current_member, require_member
from .forms import PhoneForm, UpgradeForm

bp = Blueprint("me", __name__, url_prefix="/me")
bp.before_request(require_member)


@bp.get("/")
def index():
    return _me_page(PhoneForm(formdata=None))


def _me_page(phone_form: PhoneForm, *, block: str | None = None, status_code: int = 200):
    member = current_member()
    return render_page(
        "me/index.html", block=block, status_code=status_code, member=member,
        wallet=wallet_view(db.session, member.id), upline=member.binding.upline if member.binding else None,
        is_staff=bool(staff_outlet_ids(db.session, member.id)), phone_form=phone_form,
    )


def share_link(member, product_id: int | None = None) -> str:
    path = f"/products/{product_id}" if product_id else "/"
    return public_url(f"{path}?ref={member.referral_code}")


@bp.post("/phone")
def change_phone():
    """我的 → 手机号: the member records or changes their mobile number; a wrong one is said under the field
    (htmx: the form's inside again), what was typed kept."""
    form = PhoneForm()
    if not form.validate():
        return _me_page(form, block="phone_form", status_code=refusal_status(form))
    set_member_phone(db.session, current_member().id, form.phone.value)
    return redirect_after_post(url_for("me.index"))


@bp.get("/share")
def share():
    """推广: the member's code, link and QR code. Anyone who opens the link and logs in is bound to them."""
    member = current_member()
    follow_qr = None
    if not current_app.config["DINGQIAO_DEMO"]:
        try:
            follow_qr = js_sdk(current_app).referral_qr_url(member.referral_code)
        except WeChatError as exc:
            current_app.logger.warning("parametric QR for %s failed: %s", member.id, exc)
    return render_page("me/share.html", member=member, link=share_link(member), follow_qr=follow_qr)


@bp.get("/share-qr.png")
def share_qr():
    image = qrcode.make(share_link(current_member()), box_size=8, border=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    response = make_response(buffer.getvalue())
    response.mimetype = "image/png"
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@bp.get("/team")
def team():
    """我的团队: counts, paid sales and members (masked), down to the commission depth in force."""
    return render_page("me/team.html", board=team_board(db.session, current_member().id))


@bp.get("/team/trends.json")
def team_trends_json():
    """The team board's charts: new members per week, the team's paid sales per month."""
    response = jsonify(team_trends(db.session, current_member().id))
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.get("/poster.png")
def poster():
    """The member's own share poster: the shop's, or one product's (?product=ID, 404 unless on sale); a file
    cached until its inputs change, revalidated by the browser (the URL stays while the picture changes)."""
    member = current_member()
    upload_folder = current_app.config["UPLOAD_FOLDER"]
    if "product" in request.args:
        product_id = arg_id("product")
        if product_id is None:  # malformed or beyond any id of ours
            abort(404)
        spec = product_poster_input(db.session, member, product_id, share_link(member, product_id), upload_folder)
    else:
        spec = shop_poster_input(db.session, member, share_link(member), upload_folder)
    folder, font = current_app.config["POSTER_FOLDER"], current_app.config["CJK_FONT_PATH"] or None

    def send():
        return send_file(poster_png(spec, folder, font), mimetype="image/png", max_age=0, etag=True, conditional=True)

    try:
        try:
            response = send()
        except FileNotFoundError:  # the nightly prune took it between the look and the send: drawn again
            response = send()
    except FontMissing:
        current_app.logger.error("poster: no CJK font; install fonts-noto-cjk or set CJK_FONT_PATH")
        return error_response("海报暂时无法生成（服务器缺少中文字体），请联系客服。", 503)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.get("/share-reward")
def share_reward():
    """分享赚 ¥x on the member's own product page, only where SHARE_SHOW_REWARD allows it (off by default:
    see docs/wechat-callback.md, "Sharing and WeChat's rules"); never in anything that is shared."""
    product_id = arg_id("product")
    if not current_app.config.get("SHARE_SHOW_REWARD") or product_id is None:
        abort(404)
    reward_fen = share_reward_fen(db.session, product_id)
    response = html_response(render_block("shop/_share.html", "share_reward", reward_fen=reward_fen))
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.get("/upgrade")
def upgrade():
    """身份升级: each identity's rule in one sentence, how far the member is, and the application form."""
    return _upgrade_page()


def _upgrade_page(form: UpgradeForm | None = None, status_code: int = 200, progress: list | None = None):
    """The page, or (htmx) only the refused ``form`` again: its refusals next to their fields, all typed kept."""
    member = current_member()
    progress, regions = progress or upgrade_progress(db.session, member), region_choices(db.session)
    shown = _form_shown(progress, form)
    if shown is not None and wants_fragment():
        return html_response(render_template("me/_upgrade_form.html", p=shown, regions=regions, form=form),
                             status_code)
    return render_page("me/upgrade.html", status_code=status_code, member=member, progress=progress,
                       regions=regions, form=form)


def _form_shown(progress: list, form: UpgradeForm | None):
    """The target whose application form the page shows and ``form`` was sent from, if any."""
    return next((p for p in progress if form is not None and p.target.value == form.target.data and p.may_apply_now),
                None)


@bp.post("/upgrade")
def apply():
    """The application's rules are services/upgrades.py's: a refusal about one field comes back next to it, the
    rest (closed, already applied, not this identity's to ask) in the page's message area."""
    form = UpgradeForm()
    form.validate()  # parses only: nothing here refuses
    try:
        apply_for_identity(db.session, current_member().id, form.application())
    except DomainError as exc:
        progress = upgrade_progress(db.session, current_member())
        shown = _form_shown(progress, form)
        if shown is None or exc.field not in shown.application_fields or not place_refusal(form, exc):
            raise  # about nothing the page's form shows: in the message area
        return _upgrade_page(form, domain_error_status(exc), progress)
    return redirect_after_post(url_for("me.upgrade"))


@bp.post("/upgrade/<int:application_id>/withdraw")
def withdraw(application_id: int):
    withdraw_application(db.session, current_member().id, application_id)
    return redirect_after_post(url_for("me.upgrade"))


@bp.get("/devices")
def devices():
    """登录设备: where the member is logged in, each with 退出, and 退出其他设备."""
    return render_page("me/devices.html", logins=live_logins(db.session, current_member(),
                                                               member_policy(current_app.config)))


@bp.post("/devices/<int:login_session_id>/end")
def end_device(login_session_id: int):
    end_member_session(db.session, current_member(), login_session_id)
    return redirect_after_post(url_for("me.devices"))


@bp.post("/devices/end-others")
def end_other_devices():
    end_other_member_sessions(db.session, current_member())
    return redirect_after_post(url_for("me.devices"))
