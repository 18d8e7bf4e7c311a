"""推广海报 and the share routes: what the posters show (measured on the pixels), what they are cached by, who
may have one, and the 分享赚 line that only the member's own page may show (and only when the setting allows)."""
import io
import os
import time
from pathlib import Path

import pytest
import qrcode
from PIL import Image

from dingqiao.blueprints.member import routes as member_routes
from dingqiao.extensions import db
from dingqiao.fonts import cjk_font, find_cjk_font
from dingqiao.models import CommissionRuleVersion, Identity, Product, ProductImage
from dingqiao.services import NotFound, posters
from dingqiao.services.posters import (
    KEEP_UNUSED,
    QR_BOX,
    poster_png,
    product_poster_input,
    prune_posters,
    shop_poster_input,
)
from tests.factories import make_product, make_user
from tests.test_access import log_in

BASE = "http://localhost"  # make_config's PUBLIC_BASE_URL
PICTURE_COLOURS = [(200, 40, 40), (40, 90, 200), (230, 150, 20), (120, 40, 160)]


def with_picture(app, product: Product, colour: tuple[int, int, int]) -> None:
    """A plain square picture of ``colour`` as the product's cover, as an upload would leave it."""
    folder = Path(app.config["UPLOAD_FOLDER"]) / "products"
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (600, 600), colour).save(folder / f"p{product.id}.png")
    db.session.add(ProductImage(product_id=product.id, path=f"products/p{product.id}.png"))
    db.session.commit()


def png(response) -> Image.Image:
    assert response.status_code == 200 and response.mimetype == "image/png"
    return Image.open(io.BytesIO(response.data)).convert("RGB")


def non_white_share(image: Image.Image, box: tuple[int, int, int, int] | None = None) -> float:
    region = image.crop(box) if box else image
    grey = region.convert("L")
    return sum(1 for value in grey.get_flattened_data() if value < 250) / (grey.width * grey.height)


def colour_share(image: Image.Image, colour: tuple[int, int, int], box: tuple[int, int, int, int]) -> float:
    region = image.crop(box)
    close = sum(1 for pixel in region.get_flattened_data() if all(abs(pixel[i] - colour[i]) <= 12 for i in range(3)))
    return close / (region.width * region.height)


def qr_matrix(image: Image.Image, size: int) -> list[list[bool]]:
    """Read a size×size QR matrix (quiet zone included) off the poster's QR box by sampling module centres."""
    left, top, right, _bottom = QR_BOX
    module = (right - left) / size
    grey = image.convert("L")
    return [[grey.getpixel((int(left + (x + 0.5) * module), int(top + (y + 0.5) * module))) < 128
             for x in range(size)] for y in range(size)]


def expected_matrix(link: str) -> list[list[bool]]:
    code = qrcode.QRCode(box_size=6, border=2)
    code.add_data(link)
    code.make(fit=True)
    return code.get_matrix()


def assert_no_blank_band(image: Image.Image) -> None:
    """No 100-px stripe across the poster is empty: the old poster was mostly blank white."""
    for top in range(0, image.height, 100):
        assert non_white_share(image, (0, top, image.width, min(top + 100, image.height))) > 0.02, top


def test_a_product_poster_shows_its_picture_name_and_price_and_a_qr_of_the_sharers_product_link(app, client):
    with app.app_context():
        product = make_product(member_price_fen=5490, name="顶俏薰衣草洗衣液 3kg")
        with_picture(app, product, PICTURE_COLOURS[0])
        member = make_user("海报达人")
        product_id, member_id, code = product.id, member.id, member.referral_code
    log_in(client, member_id)
    image = png(client.get("/me/poster.png", query_string={"product": product_id}))
    assert image.size == (750, 1200)
    assert non_white_share(image) > 0.4
    assert_no_blank_band(image)
    assert colour_share(image, PICTURE_COLOURS[0], (40, 90, 710, 690)) > 0.8  # the picture fills its place
    assert non_white_share(image, (40, 700, 710, 830)) > 0.04  # the name and subtitle
    assert colour_share(image, (250, 81, 81), (40, 830, 710, 910)) > 0.03  # the price, in red
    assert non_white_share(image, (40, 960, 480, 1170)) > 0.05  # the sharer and what to do
    link = f"{BASE}/products/{product_id}?ref={code}"
    assert qr_matrix(image, len(expected_matrix(link))) == expected_matrix(link)


def test_the_price_on_a_poster_is_what_the_friend_pays_whatever_the_sharers_identity(app, client):
    """Friends open the link as visitors or members and see the 会员价; an outlet's poster never shows its
    own (lower) price."""
    with app.app_context():
        product = make_product(member_price_fen=3990)
        outlet_keeper = make_user("店主", identity=Identity.OUTLET)
        spec = product_poster_input(db.session, outlet_keeper, product.id, "http://x/", app.config["UPLOAD_FOLDER"])
        assert spec.items[0].price_fen == 3990 != product.outlet_price_fen
        product_id, keeper_id, member_id = product.id, outlet_keeper.id, make_user("会员").id
    price_box = (40, 820, 710, 910)
    posters = {}
    for who in (member_id, keeper_id):
        client = app.test_client()
        log_in(client, who)
        posters[who] = png(client.get("/me/poster.png", query_string={"product": product_id})).crop(price_box)
    assert posters[member_id].tobytes() == posters[keeper_id].tobytes()
    with app.app_context():
        db.session.get(Product, product_id).member_price_fen = 4590
        db.session.commit()
    dearer = png(client.get("/me/poster.png", query_string={"product": product_id})).crop(price_box)
    assert dearer.tobytes() != posters[keeper_id].tobytes()  # a new price: a new poster, not the cached one


def test_the_shop_poster_shows_products_with_their_pictures_and_prices(app, client):
    with app.app_context():
        for index, colour in enumerate(PICTURE_COLOURS + [(10, 10, 10)]):
            with_picture(app, make_product(member_price_fen=1990 + index * 1000, name=f"好物{index}"), colour)
        member = make_user("逛店达人")
        member_id, code = member.id, member.referral_code
        spec = shop_poster_input(db.session, member, f"{BASE}/?ref={code}", app.config["UPLOAD_FOLDER"])
        assert [item.name for item in spec.items] == ["好物0", "好物1", "好物2", "好物3"]  # the first four
        assert [item.price_fen for item in spec.items] == [1990, 2990, 3990, 4990]
    log_in(client, member_id)
    image = png(client.get("/me/poster.png"))
    assert image.size == (750, 1200) and non_white_share(image) > 0.5
    assert_no_blank_band(image)
    cells = [(30, 270, 365, 580), (385, 270, 720, 580), (30, 600, 365, 910), (385, 600, 720, 910)]
    for colour, cell in zip(PICTURE_COLOURS, cells):
        assert colour_share(image, colour, cell) > 0.2, colour  # each product's picture in its own card
        assert colour_share(image, (250, 81, 81), cell) > 0.005, cell  # and its price
    link = f"{BASE}/?ref={code}"
    assert qr_matrix(image, len(expected_matrix(link))) == expected_matrix(link)


def test_a_poster_is_kept_while_its_inputs_hold_and_drawn_again_when_one_changes(app, tmp_path):
    cache = tmp_path / "poster-cache"
    with app.app_context():
        product = make_product(member_price_fen=2990)
        member = make_user("缓存")
        upload_folder = app.config["UPLOAD_FOLDER"]
        spec = product_poster_input(db.session, member, product.id, "http://x/p?ref=A", upload_folder)
        first = poster_png(spec, str(cache), None)
        stamp = first.stat().st_mtime_ns
        assert poster_png(spec, str(cache), None) == first and first.stat().st_mtime_ns == stamp
        with_picture(app, product, PICTURE_COLOURS[1])  # a picture is added
        with_picture_spec = product_poster_input(db.session, member, product.id, "http://x/p?ref=A", upload_folder)
        assert poster_png(with_picture_spec, str(cache), None) != first
        other_link = product_poster_input(db.session, member, product.id, "http://x/p?ref=B", upload_folder)
        assert other_link.fingerprint() != with_picture_spec.fingerprint()
    assert sorted(path.suffix for path in cache.iterdir()) == [".png", ".png"]  # no half-written files left


def aged(path: Path, days: float) -> None:
    """Make ``path`` look last used ``days`` ago."""
    moment = time.time() - days * 86400
    os.utime(path, (moment, moment))


def test_the_nightly_prune_deletes_posters_nobody_asked_for_and_one_asked_for_again_is_kept(app, tmp_path):
    cache = tmp_path / "posters"
    with app.app_context():
        product = make_product(member_price_fen=2990)
        member = make_user("修剪")
        upload_folder = app.config["UPLOAD_FOLDER"]
        old_price = poster_png(product_poster_input(db.session, member, product.id, "http://x/p?ref=A", upload_folder),
                               str(cache), None)
        in_use_spec = product_poster_input(db.session, member, product.id, "http://x/p?ref=B", upload_folder)
        in_use = poster_png(in_use_spec, str(cache), None)
        recent = poster_png(shop_poster_input(db.session, member, "http://x/?ref=B", upload_folder), str(cache), None)
        abandoned = cache / "0123456789abcdef.1a2b3c4d.part"  # a writer that died mid-draw
        abandoned.write_bytes(b"half a png")
        fresh_part = cache / "0123456789abcdef.5e6f7a8b.part"  # a writer drawing right now
        fresh_part.write_bytes(b"half a png")
        unrelated = cache / "README.txt"
        unrelated.write_text("not ours")
        for path in (old_price, in_use, unrelated):
            aged(path, KEEP_UNUSED.days + 5)
        aged(recent, KEEP_UNUSED.days - 1)
        aged(abandoned, 1)

        assert poster_png(in_use_spec, str(cache), None) == in_use  # asked for again: served, marked in use
        assert time.time() - in_use.stat().st_mtime < 3600

        assert prune_posters(str(cache)) == 2
        assert sorted(path.name for path in cache.iterdir()) == sorted(
            [in_use.name, recent.name, fresh_part.name, unrelated.name])
        assert prune_posters(str(cache)) == 0  # nothing more to do

        redrawn = poster_png(product_poster_input(db.session, member, product.id, "http://x/p?ref=A", upload_folder),
                             str(cache), None)  # a pruned poster asked for again is drawn again
        assert redrawn == old_price and Image.open(redrawn).size == (750, 1200)
    assert prune_posters(str(tmp_path / "never-made")) == 0  # a shop whose members never shared


def test_a_poster_this_process_may_not_touch_or_delete_is_still_served_and_the_others_pruned(app, tmp_path,
                                                                                              monkeypatch):
    cache = tmp_path / "posters"
    with app.app_context():
        member = make_user("只读")
        upload_folder = app.config["UPLOAD_FOLDER"]
        specs = [product_poster_input(db.session, member, make_product(member_price_fen=price).id, "http://x/p",
                                      upload_folder) for price in (1990, 2990)]
        kept, other = (poster_png(spec, str(cache), None) for spec in specs)
        for path in (kept, other):
            aged(path, KEEP_UNUSED.days + 5)

        def refused(path, *args, **kwargs):  # as for another account's file, or a read-only folder
            raise PermissionError(13, "Permission denied", str(path))

        real_unlink = os.unlink
        monkeypatch.setattr(posters.os, "utime", refused)
        monkeypatch.setattr(posters.os, "unlink",
                            lambda path: refused(path) if str(path).endswith(kept.name) else real_unlink(path))
        assert poster_png(specs[0], str(cache), None) == kept  # served, though it could not be marked in use
        assert prune_posters(str(cache)) == 1 and [path.name for path in cache.iterdir()] == [kept.name]


def test_a_poster_pruned_between_the_look_and_the_send_is_drawn_again(app, client, monkeypatch):
    with app.app_context():
        member_id = make_user("竞态").id
    log_in(client, member_id)
    real = member_routes.poster_png
    calls = []

    def pruned_right_after_the_look(spec, folder, font):
        path = real(spec, folder, font)
        calls.append(path)
        if len(calls) == 1:
            path.unlink()  # what the nightly prune does in that instant
        return path

    monkeypatch.setattr(member_routes, "poster_png", pruned_right_after_the_look)
    response = client.get("/me/poster.png")
    assert response.status_code == 200 and len(calls) == 2
    assert png(response).size == (750, 1200)


def test_the_poster_is_only_the_members_own_and_only_of_a_product_on_sale(app, client):
    with app.app_context():
        product = make_product()
        off_sale = make_product(name="下架商品")
        off_sale.is_on_sale = False
        db.session.commit()
        product_id, off_sale_id, member_id = product.id, off_sale.id, make_user("会员").id
    visitor = client.get("/me/poster.png", query_string={"product": product_id})
    assert visitor.status_code == 302 and "/auth/login" in visitor.headers["Location"]
    log_in(client, member_id)
    for bad in [str(off_sale_id), "999999", "abc", "-1", "1.5", "", "1" * 30, "０１", str(product_id) + " OR 1=1"]:
        assert client.get("/me/poster.png", query_string={"product": bad}).status_code == 404, bad
    good = client.get("/me/poster.png", query_string={"product": product_id})
    assert good.status_code == 200 and good.headers["Cache-Control"] == "private, no-cache" and good.headers["ETag"]
    again = client.get("/me/poster.png", query_string={"product": product_id},
                       headers={"If-None-Match": good.headers["ETag"]})
    assert again.status_code == 304  # revalidated, not sent again


def test_the_product_page_offers_copy_link_and_poster_to_members_only(app, client):
    with app.app_context():
        product_id = make_product().id
        member = make_user("分享者")
        member_id, code = member.id, member.referral_code
    visitor_page = client.get(f"/products/{product_id}").get_data(as_text=True)
    assert "data-share-open" not in visitor_page and "生成海报" not in visitor_page
    log_in(client, member_id)
    page = client.get(f"/products/{product_id}").get_data(as_text=True)
    assert 'data-share-open="dq-share-sheet"' in page and 'id="dq-share-sheet"' in page
    assert f'data-share-copy="{BASE}/products/{product_id}?ref={code}"' in page
    assert f'data-share-poster="/me/poster.png?product={product_id}"' in page
    assert 'target="_blank"' not in page


def test_the_share_page_shows_its_poster_in_the_page_not_in_a_new_tab(app, client):
    with app.app_context():
        member = make_user("推广")
        member_id, code = member.id, member.referral_code
    log_in(client, member_id)
    page = client.get("/me/share").get_data(as_text=True)
    assert 'data-share-poster="/me/poster.png"' in page and 'target="_blank"' not in page
    assert f'data-share-copy="{BASE}/?ref={code}"' in page and f'data-share-link="{BASE}/?ref={code}"' in page


def publish_rule(direct_bps: int) -> None:
    db.session.add(CommissionRuleVersion(direct_bps=direct_bps, team_bps=0, service_fee_bps=0, regional_bps=0,
                                         payout_cap_bps=direct_bps))
    db.session.commit()


def test_the_expected_reward_is_shown_only_when_the_setting_allows_and_never_in_what_is_shared(app, client):
    with app.app_context():
        product_id = make_product(member_price_fen=3990).id
        publish_rule(direct_bps=1000)
        member_id = make_user("会员").id
    log_in(client, member_id)
    page = client.get(f"/products/{product_id}").get_data(as_text=True)
    assert "share-reward" not in page and "分享赚" not in page  # off by default
    assert client.get("/me/share-reward", query_string={"product": product_id}).status_code == 404

    app.config["SHARE_SHOW_REWARD"] = True
    page = client.get(f"/products/{product_id}").get_data(as_text=True)
    assert f'hx-get="/me/share-reward?product={product_id}"' in page
    share_data = page[page.index("<article"):page.index(">", page.index("<article"))]
    assert "赚" not in share_data and "¥" not in share_data  # the WeChat card: name, subtitle, picture only
    reward = client.get("/me/share-reward", query_string={"product": product_id}, headers={"HX-Request": "true"})
    body = reward.get_data(as_text=True)
    assert reward.status_code == 200 and "分享赚 ¥3.99" in body and "<html" not in body
    assert "private" in reward.headers["Cache-Control"]
    for bad in ["999999", "x", "1" * 30]:
        assert client.get("/me/share-reward", query_string={"product": bad}).status_code == 404
    with app.app_context():
        publish_rule(direct_bps=0)  # a rule paying no direct reward: nothing to show
    assert "分享赚" not in client.get("/me/share-reward", query_string={"product": product_id}).get_data(as_text=True)


def test_the_shop_poster_without_products_is_still_a_poster(app, client):
    with app.app_context():
        member_id = make_user("空店").id
    log_in(client, member_id)
    image = png(client.get("/me/poster.png"))
    assert non_white_share(image, (0, 250, 750, 930)) > 0.9  # the tinted panel with its message


def test_chinese_is_drawn_in_the_simplified_chinese_face_of_a_collection():
    try:
        font_file = find_cjk_font()
    except Exception:
        pytest.skip("no CJK font installed")
    if not font_file.endswith(".ttc") or "Noto" not in font_file:
        pytest.skip("only Noto's collection holds a Japanese face first")
    assert cjk_font(font_file, 20).getname()[0].endswith(" SC")
    assert cjk_font(font_file, 20, regular=True).getname()[1] == "Regular"


def test_an_unknown_product_is_not_found_by_the_service(app):
    with app.app_context():
        member = make_user("x")
        with pytest.raises(NotFound):
            product_poster_input(db.session, member, 10**17, "http://x/", app.config["UPLOAD_FOLDER"])
