"""Finding a font that can draw Chinese, for images composed server-side (product pictures, posters)."""
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

# Debian's fonts-noto-cjk first, then other common places. CJK_FONT_PATH in the config wins.
CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/System/Library/Fonts/PingFang.ttc",
)


class FontMissing(RuntimeError):
    """No CJK font: drawing Chinese would give empty boxes, so we refuse instead."""


def find_cjk_font(configured: str | None = None) -> str:
    """The configured font (which must exist: a typo should not silently fall back), else the first known one."""
    if configured:
        if Path(configured).is_file():
            return configured
        raise FontMissing(f"CJK_FONT_PATH={configured} does not exist.")
    for candidate in CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    raise FontMissing(
        "No font that can draw Chinese was found. Install Debian's fonts-noto-cjk (scripts/install-system-deps) "
        "or set CJK_FONT_PATH to a .ttf/.ttc/.otf file with Chinese glyphs."
    )


@lru_cache(maxsize=16)
def _simplified_face(font_file: str) -> int:
    """The index of the Simplified Chinese face in a font collection: Noto's .ttc holds the Japanese face first,
    whose forms of many characters (门, 说, 该 …) look wrong to a Chinese reader. 0 for a single font."""
    for index in range(16):
        try:
            family = ImageFont.truetype(font_file, 12, index=index).getname()[0] or ""
        except OSError:  # past the last face of the collection (or not a collection at all)
            break
        if family.endswith(" SC") or "Simplified" in family:
            return index
    return 0


def cjk_font(font_file: str, size: int, *, regular: bool = False) -> ImageFont.FreeTypeFont:
    """``font_file`` (from ``find_cjk_font``) at ``size`` pixels, in its Simplified Chinese face; ``regular``
    takes the Regular sibling of a Bold file where one lies beside it (Noto ships both), for body text."""
    if regular and "-Bold." in font_file:
        sibling = font_file.replace("-Bold.", "-Regular.")
        if Path(sibling).is_file():
            font_file = sibling
    return ImageFont.truetype(font_file, size, index=_simplified_face(font_file))
