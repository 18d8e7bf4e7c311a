"""推广海报: a PNG composed with Pillow — the product (or brand) picture, the sharer's nickname and a QR code of
their share link — cached per user and product, and drawn again when any input changes."""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont

from ..fonts import find_cjk_font
from ..models import Product, User

WIDTH, HEIGHT = 750, 1200
BRAND = (7, 193, 96)


@dataclass(frozen=True)
class PosterInput:
    nickname: str
    link: str
    title: str
    subtitle: str
    picture: Path | None

    def fingerprint(self) -> str:
        stamp = self.picture.stat().st_mtime_ns if self.picture and self.picture.exists() else 0
        raw = "\x1f".join([self.nickname, self.link, self.title, self.subtitle, str(self.picture), str(stamp)])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def poster_input(user: User, product: Product | None, link: str, upload_folder: str) -> PosterInput:
    picture = Path(upload_folder) / product.cover_path if product and product.cover_path else None
    return PosterInput(
        nickname=user.display_name,
        link=link,
        title=product.name if product else "顶俏 · 家庭洗护",
        subtitle=product.subtitle if product else "社区自提 · 邻里分享 · 品质洗护",
        picture=picture,
    )


def poster_png(spec: PosterInput, cache_dir: str, font_path: str | None) -> Path:
    """The poster file for these inputs: reused while they are unchanged, drawn anew when they change.
    Raises fonts.FontMissing (never draws boxes) when no font can draw Chinese."""
    target = Path(cache_dir) / f"{spec.fingerprint()}.png"
    if target.exists():
        return target
    font_file = find_cjk_font(font_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, WIDTH, 110], fill=BRAND)
    draw.text((40, 55), "顶俏 · 家庭洗护", font=ImageFont.truetype(font_file, 40), fill="white", anchor="lm")
    if spec.picture and spec.picture.exists():
        picture = Image.open(spec.picture).convert("RGB").resize((670, 670))
        image.paste(picture, (40, 140))
    draw.text((40, 850), spec.title[:18], font=ImageFont.truetype(font_file, 40), fill=(30, 30, 30))
    draw.text((40, 908), spec.subtitle[:24], font=ImageFont.truetype(font_file, 28), fill=(120, 120, 120))
    draw.text((40, 1010), f"{spec.nickname[:10]} 向你推荐", font=ImageFont.truetype(font_file, 32), fill=(30, 30, 30))
    draw.text((40, 1060), "长按识别二维码，社区门店自提", font=ImageFont.truetype(font_file, 26), fill=(120, 120, 120))
    code = qrcode.QRCode(box_size=6, border=2)
    code.add_data(spec.link)
    code.make(fit=True)
    qr_image = code.make_image().convert("RGB").resize((220, 220), Image.NEAREST)
    image.paste(qr_image, (WIDTH - 260, 950))
    partial = target.with_suffix(".part")
    image.save(partial, "PNG", optimize=True)
    partial.replace(target)  # atomic: a concurrent request never serves half a file
    return target
