"""推广海报: PNGs composed with Pillow that a member saves and sends on — one per product (its picture, name and
price) and one for the shop (a few products with pictures and prices) — each with the sharer's name and a QR
code of their share link, which carries their referral code. Cached per inputs, drawn again when any changes.

The price on a poster is the 会员价: it is what the friend who scans the code sees and pays (visitors see
member prices), whatever the sharer's own identity — an outlet's poster never shows the outlet's price.

Nothing about commissions is ever drawn: a reward on a shared picture is 诱导分享 under WeChat's rules
(docs/wechat-callback.md, "Sharing and WeChat's rules"). ``share_reward_fen`` is for the member's own page only.
"""
import hashlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..fonts import cjk_font, find_cjk_font
from ..models import Identity, ProductImage, User
from ..money import format_yuan
from . import catalog
from .commissions import BPS, current_rule
from .setup import shop_name

log = logging.getLogger(__name__)
WIDTH, HEIGHT = 750, 1200
LAYOUT_VERSION = "2"  # part of every fingerprint: a new design draws every poster again
BRAND = (7, 193, 96)
BRAND_DARK = (5, 150, 75)
TINT = (240, 248, 243)
INK = (28, 28, 30)
MUTED = (128, 128, 134)
PRICE = (250, 81, 81)
SHOP_PRODUCTS = 4  # the shop poster's grid
# The QR code's place: the bottom right, 220 px square with a 2-module quiet zone (scanners need it).
QR_BOX = (490, 950, 710, 1170)
FOOTER_TOP = 930
SHOP_TAGLINE = "社区自提 · 邻里分享 · 品质洗护"
# A poster is a cache entry: one asked for again is marked in use (its mtime, at most once a day), and the nightly
# prune deletes those nobody asked for in KEEP_UNUSED; one asked for later is drawn again.
KEEP_UNUSED = timedelta(days=30)
MARK_IN_USE_AFTER = timedelta(days=1)
PART_ABANDONED = timedelta(hours=1)  # a writer's .part file this old was left by a process that died mid-draw


@dataclass(frozen=True)
class PosterItem:
    """One product as a poster shows it."""

    name: str
    subtitle: str
    price_fen: int
    picture: Path | None


@dataclass(frozen=True)
class PosterInput:
    """Everything a poster is drawn from; the same inputs always give the same file."""

    shop_name: str
    nickname: str
    link: str
    items: tuple[PosterItem, ...]
    single: bool  # one product's poster (else the shop's)

    def fingerprint(self) -> str:
        parts = [LAYOUT_VERSION, self.shop_name, self.nickname, self.link, "1" if self.single else "0"]
        for item in self.items:
            stamp = item.picture.stat().st_mtime_ns if item.picture and item.picture.exists() else 0
            parts += [item.name, item.subtitle, str(item.price_fen), str(item.picture), str(stamp)]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _picture(upload_folder: str, relative: str | None) -> Path | None:
    return Path(upload_folder) / relative if relative else None


def product_poster_input(session: Session, user: User, product_id: int, link: str, upload_folder: str) -> PosterInput:
    """The poster of one product on sale; NotFound for an unknown or off-sale product."""
    product = catalog.get_product(session, product_id)
    item = PosterItem(product.name, product.subtitle, product.price_for(Identity.MEMBER),
                      _picture(upload_folder, product.cover_path))
    return PosterInput(shop_name(session), user.display_name, link, (item,), single=True)


def shop_poster_input(session: Session, user: User, link: str, upload_folder: str) -> PosterInput:
    """The shop's poster: its first products on sale, those in stock first, with their full-size pictures."""
    page = catalog.list_products(session)
    cards = sorted(page.products, key=lambda card: page.available.get(card.id, 0) <= 0)[:SHOP_PRODUCTS]
    covers: dict[int, str] = {}
    rows = session.execute(select(ProductImage.product_id, ProductImage.path)
                           .where(ProductImage.product_id.in_([card.id for card in cards]))
                           .order_by(ProductImage.sort_order, ProductImage.id)).all()
    for product_id, path in rows:
        covers.setdefault(product_id, path)  # the first image is the cover
    items = tuple(PosterItem(card.name, card.subtitle, card.price_for(Identity.MEMBER),
                             _picture(upload_folder, covers.get(card.id))) for card in cards)
    return PosterInput(shop_name(session), user.display_name, link, items, single=False)


def share_reward_fen(session: Session, product_id: int) -> int:
    """What the direct reward of the rule in force pays on one unit of the product bought at the member price
    by a friend bound to the sharer; 0 without a rule. For the member's own product page, never a poster."""
    rule = current_rule(session)
    if rule is None:
        return 0
    return catalog.get_product(session, product_id).member_price_fen * rule.direct_bps // BPS


def poster_png(spec: PosterInput, cache_dir: str, font_path: str | None) -> Path:
    """The poster file for these inputs: reused while they are unchanged, drawn anew when they change.
    Raises fonts.FontMissing (never draws boxes) when no font can draw Chinese."""
    target = Path(cache_dir) / f"{spec.fingerprint()}.png"
    if _in_use(target):
        return target
    font_file = find_cjk_font(font_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    if spec.single:
        _draw_product(image, spec, font_file)
    else:
        _draw_shop(image, spec, font_file)
    _draw_footer(image, spec, font_file)
    partial = target.with_suffix(f".{uuid.uuid4().hex[:8]}.part")  # one per writer: two may draw at once
    image.save(partial, "PNG", optimize=True)
    partial.replace(target)  # atomic: a concurrent request never serves half a file
    return target


def _in_use(path: Path) -> bool:
    """Whether the poster is there to serve; one not marked for a day is marked in use now (so the nightly
    prune keeps it), and one pruned meanwhile is not there: it is drawn again. A file this process may read but
    not touch (another account's, a read-only folder) is served all the same."""
    try:
        if path.stat().st_mtime < time.time() - MARK_IN_USE_AFTER.total_seconds():
            os.utime(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("poster %s served but not marked in use: %s", path.name, exc)
    return True


def prune_posters(cache_dir: str, now: float | None = None) -> int:
    """Delete the posters nobody asked for in ``KEEP_UNUSED`` (prices, names and pictures change, and each
    change leaves the old file behind) and writers' abandoned ``.part`` files; returns how many files went. A
    poster asked for again after this is drawn again."""
    folder = Path(cache_dir)
    if not folder.is_dir():
        return 0
    now = time.time() if now is None else now
    gone = 0
    for entry in os.scandir(folder):
        name = entry.name
        if not entry.is_file(follow_symlinks=False):
            continue
        if name.endswith(".png"):
            keep = KEEP_UNUSED
        elif name.endswith(".part"):
            keep = PART_ABANDONED
        else:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < now - keep.total_seconds():
                os.unlink(entry.path)
                gone += 1
        except FileNotFoundError:  # another process pruned it first
            pass
        except OSError as exc:  # not ours to delete: the others are pruned all the same
            log.warning("poster %s not pruned: %s", name, exc)
    return gone


# ------------------------------------------------------------------------------------------------ drawing

def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut with an ellipsis to ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _rounded_mask(size: tuple[int, int], radius: int, top_only: bool) -> Image.Image:
    mask = Image.new("L", size, 0)
    corners = (True, True, False, False) if top_only else None
    ImageDraw.Draw(mask).rounded_rectangle([0, 0, size[0] - 1, size[1] - 1], radius=radius, fill=255,
                                           corners=corners)
    return mask


def _contain(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The whole picture scaled into ``size`` (never cropped: a product shot keeps its product), the bands left
    over filled by stretching its edge pixels, so a plain or graded background runs on to the box's edges."""
    scale = min(size[0] / picture.width, size[1] / picture.height)
    inner = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                           Image.LANCZOS)
    canvas = Image.new("RGB", size, "white")
    left, top = (size[0] - inner.width) // 2, (size[1] - inner.height) // 2
    right, bottom = size[0] - left - inner.width, size[1] - top - inner.height
    if left or right:
        canvas.paste(inner.crop((0, 0, 1, inner.height)).resize((max(left, 1), inner.height)), (0, top))
        canvas.paste(inner.crop((inner.width - 1, 0, inner.width, inner.height)).resize((max(right, 1), inner.height)),
                     (left + inner.width, top))
    if top or bottom:
        canvas.paste(inner.crop((0, 0, inner.width, 1)).resize((inner.width, max(top, 1))), (left, 0))
        canvas.paste(inner.crop((0, inner.height - 1, inner.width, inner.height)).resize((inner.width, max(bottom, 1))),
                     (left, top + inner.height))
    canvas.paste(inner, (left, top))
    return canvas


def _paste_picture(image: Image.Image, item: PosterItem, box: tuple[int, int, int, int], radius: int,
                   font_file: str, *, top_only: bool = False) -> None:
    """The item's picture filling ``box`` (centre-cropped, rounded corners), or a tinted card with its name."""
    size = (box[2] - box[0], box[3] - box[1])
    picture = None
    if item.picture and item.picture.exists():
        try:
            with Image.open(item.picture) as opened:
                picture = _contain(opened.convert("RGB"), size)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
            picture = None  # a damaged upload: the poster still comes out, with the placeholder
    if picture is None:
        picture = Image.new("RGB", size, TINT)
        draw = ImageDraw.Draw(picture)
        font = cjk_font(font_file, max(24, size[0] // 12))
        draw.text((size[0] // 2, size[1] // 2), _fit(draw, item.name, font, size[0] - 40), font=font,
                  fill=BRAND_DARK, anchor="mm")
    image.paste(picture, box[:2], _rounded_mask(size, radius, top_only))


def _draw_price(draw: ImageDraw.ImageDraw, xy: tuple[int, int], fen: int, font_file: str, size: int,
                label: str = "") -> None:
    """"会员价" chip (when ``label``) then ¥ small and the amount large, sharing a baseline."""
    x, baseline = xy
    if label:
        chip = cjk_font(font_file, size // 3, regular=True)
        width = int(draw.textlength(label, font=chip)) + 20
        height = size // 3 + 14
        top = baseline - height - 6
        draw.rounded_rectangle([x, top, x + width, top + height], radius=height // 2, outline=PRICE, width=2)
        draw.text((x + width // 2, top + height // 2), label, font=chip, fill=PRICE, anchor="mm")
        x += width + 14
    amount = format_yuan(fen)[1:]
    small, large = cjk_font(font_file, size // 2), cjk_font(font_file, size)
    draw.text((x, baseline), "¥", font=small, fill=PRICE, anchor="ls")
    x += int(draw.textlength("¥", font=small)) + 4
    draw.text((x, baseline), amount, font=large, fill=PRICE, anchor="ls")


def _draw_product(image: Image.Image, spec: PosterInput, font_file: str) -> None:
    draw = ImageDraw.Draw(image)
    item = spec.items[0]
    draw.text((40, 48), _fit(draw, spec.shop_name, cjk_font(font_file, 32), 460), font=cjk_font(font_file, 32),
              fill=BRAND_DARK, anchor="lm")
    chip = cjk_font(font_file, 22, regular=True)
    chip_text = "社区门店自提"
    chip_width = int(draw.textlength(chip_text, font=chip)) + 28
    draw.rounded_rectangle([WIDTH - 40 - chip_width, 30, WIDTH - 40, 66], radius=18, fill=TINT)
    draw.text((WIDTH - 40 - chip_width // 2, 48), chip_text, font=chip, fill=BRAND_DARK, anchor="mm")
    _paste_picture(image, item, (40, 90, WIDTH - 40, 690), 24, font_file)
    title = cjk_font(font_file, 44)
    draw.text((40, 716), _fit(draw, item.name, title, WIDTH - 80), font=title, fill=INK, anchor="lt")
    if item.subtitle:
        sub = cjk_font(font_file, 28, regular=True)
        draw.text((40, 776), _fit(draw, item.subtitle, sub, WIDTH - 80), font=sub, fill=MUTED, anchor="lt")
    _draw_price(draw, (40, 896), item.price_fen, font_file, 64, label="会员价")


def _draw_shop(image: Image.Image, spec: PosterInput, font_file: str) -> None:
    draw = ImageDraw.Draw(image)
    for y in range(250):  # the brand band, a little darker at the top
        mix = y / 250
        draw.line([(0, y), (WIDTH, y)], fill=tuple(int(BRAND_DARK[i] * (1 - mix) + BRAND[i] * mix) for i in range(3)))
    name = cjk_font(font_file, 60)
    draw.text((40, 92), _fit(draw, spec.shop_name, name, WIDTH - 80), font=name, fill="white", anchor="lm")
    tagline = cjk_font(font_file, 28, regular=True)
    draw.text((40, 168), SHOP_TAGLINE, font=tagline, fill=(225, 250, 235), anchor="lm")
    draw.rectangle([0, 250, WIDTH, FOOTER_TOP], fill=TINT)
    items = spec.items
    if not items:
        font = cjk_font(font_file, 40)
        draw.text((WIDTH // 2, (250 + FOOTER_TOP) // 2), "好物上新中，进店看看", font=font, fill=BRAND_DARK, anchor="mm")
        return
    columns = 1 if len(items) == 1 else 2
    rows = (len(items) + columns - 1) // columns
    gap, left, top, bottom = 20, 30, 270, FOOTER_TOP - 20
    cell_w = (WIDTH - 2 * left - gap * (columns - 1)) // columns
    cell_h = (bottom - top - gap * (rows - 1)) // rows
    title = cjk_font(font_file, 28 if columns == 2 else 36)
    for index in range(rows * columns):
        x = left + (index % columns) * (cell_w + gap)
        y = top + (index // columns) * (cell_h + gap)
        draw.rounded_rectangle([x, y, x + cell_w, y + cell_h], radius=20, fill="white")
        if index >= len(items):  # an odd count: the last cell invites into the shop
            font = cjk_font(font_file, 32)
            draw.text((x + cell_w // 2, y + cell_h // 2 - 22), "更多好物", font=font, fill=BRAND_DARK, anchor="mm")
            draw.text((x + cell_w // 2, y + cell_h // 2 + 24), "进店看看 ›", font=cjk_font(font_file, 26, regular=True),
                      fill=MUTED, anchor="mm")
            continue
        item = items[index]
        picture_h = cell_h - 110
        _paste_picture(image, item, (x, y, x + cell_w, y + picture_h), 20, font_file, top_only=True)
        draw.text((x + 18, y + picture_h + 14), _fit(draw, item.name, title, cell_w - 36), font=title, fill=INK,
                  anchor="lt")
        _draw_price(draw, (x + 18, y + cell_h - 16), item.price_fen, font_file, 40)


def _draw_footer(image: Image.Image, spec: PosterInput, font_file: str) -> None:
    """The sharer (an initial in a circle and their name), what to do, and the QR code of their link."""
    draw = ImageDraw.Draw(image)
    for x in range(40, WIDTH - 40, 16):
        draw.line([(x, FOOTER_TOP), (x + 8, FOOTER_TOP)], fill=(220, 220, 224), width=2)
    nickname = spec.nickname.strip() or "好友"
    draw.ellipse([40, 968, 128, 1056], fill=BRAND)
    draw.text((84, 1012), nickname[0], font=cjk_font(font_file, 44), fill="white", anchor="mm")
    name = cjk_font(font_file, 32)
    draw.text((148, 990), _fit(draw, nickname, name, 320), font=name, fill=INK, anchor="lm")
    caption = "向你推荐了一件好物" if spec.single else "邀请你来逛逛"
    draw.text((148, 1036), caption, font=cjk_font(font_file, 26, regular=True), fill=MUTED, anchor="lm")
    draw.text((40, 1106), "长按识别二维码", font=cjk_font(font_file, 30), fill=INK, anchor="lm")
    action = "查看商品 · 社区门店自提" if spec.single else "进店选购 · 社区门店自提"
    draw.text((40, 1150), action, font=cjk_font(font_file, 24, regular=True), fill=MUTED, anchor="lm")
    code = qrcode.QRCode(box_size=6, border=2)
    code.add_data(spec.link)
    code.make(fit=True)
    side = QR_BOX[2] - QR_BOX[0]
    image.paste(code.make_image().convert("RGB").resize((side, side), Image.NEAREST), QR_BOX[:2])
