"""Finding a font that can draw Chinese, for images composed server-side (product pictures, posters)."""
from pathlib import Path

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
