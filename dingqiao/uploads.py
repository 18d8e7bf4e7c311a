"""Uploaded photos (after-sales photos, banners, article images): checked, decoded and re-encoded by Pillow
before they are stored, so what we serve is always a plain image we wrote ourselves — never the uploader's
bytes, never anything a browser could take for HTML or script."""
import io
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .models.base import utcnow
from .services import DomainError

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF"}
# The same formats as browsers name them: every page's file inputs check these before sending (app.js).
ACCEPTED_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")
WRONG_TYPE_MESSAGE = "只支持 JPG、PNG、WEBP、GIF 格式的图片。"
MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding them
MAX_SIDE = 1600  # stored images are scaled down to this
THUMBNAIL_SIDE = 400  # product lists and the cart show this copy (a 300 px card at 1.3x density)


class UploadRefused(DomainError):
    pass


def too_large_message(max_bytes: int) -> str:
    """"图片不能超过 5 MB，请压缩后重试。": said by the server and, before sending, by the browser."""
    limit = f"{max_bytes / (1024 * 1024):g} MB" if max_bytes >= 1024 * 1024 else f"{max(1, max_bytes // 1024)} KB"
    return f"图片不能超过 {limit}，请压缩后重试。"


@dataclass(frozen=True)
class SavedImage:
    path: str  # relative to the uploads folder, e.g. "service/2026-11/ab12….jpg"
    width: int
    height: int
    thumb_path: str | None = None  # a THUMBNAIL_SIDE copy beside it, when one was asked for

    @property
    def paths(self) -> list[str]:
        return [self.path, *([self.thumb_path] if self.thumb_path else [])]


def save_image(stream, upload_folder: str, kind: str, max_bytes: int, *, thumbnail: bool = False) -> SavedImage:
    """Read at most ``max_bytes`` from ``stream``; refuse, with a Chinese message, anything larger or that is
    not a JPG / PNG / WEBP / GIF image; store a re-encoded copy (JPEG, or PNG when it has transparency), and
    with ``thumbnail`` a small copy named ``<name>_t.<ext>`` beside it."""
    data = stream.read(max_bytes + 1)
    if not data:
        raise UploadRefused("请选择要上传的图片。")
    if len(data) > max_bytes:
        raise UploadRefused(too_large_message(max_bytes))
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.format not in ALLOWED_FORMATS:
                raise UploadRefused(WRONG_TYPE_MESSAGE)
            if probe.width * probe.height > MAX_PIXELS:
                raise UploadRefused("图片尺寸过大，请缩小后重试。")
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            has_alpha = image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)
            image = image.convert("RGBA" if has_alpha else "RGB")
            image.thumbnail((MAX_SIDE, MAX_SIDE))
            suffix, fmt, options = (".png", "PNG", {"optimize": True}) if has_alpha else (
                ".jpg", "JPEG", {"quality": 85, "optimize": True})
            relative = Path(kind) / utcnow().strftime("%Y-%m") / f"{secrets.token_hex(12)}{suffix}"
            target = Path(upload_folder) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            image.save(target, fmt, **options)
            thumb_relative = None
            if thumbnail:
                thumb_relative = relative.with_name(f"{relative.stem}_t{suffix}")
                small = image.copy()
                small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                small.save(Path(upload_folder) / thumb_relative, fmt, **options)
            return SavedImage(relative.as_posix(), image.width, image.height,
                              thumb_relative.as_posix() if thumb_relative else None)
    except UploadRefused:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError):
        raise UploadRefused("无法识别的图片文件，请上传 JPG、PNG、WEBP 或 GIF 图片。") from None


@contextmanager
def removed_on_failure(upload_folder: str, saved: Sequence[SavedImage | None]) -> Iterator[None]:
    """Around the write that records stored images: if it fails, the files go too (no orphans on disk)."""
    try:
        yield
    except BaseException:
        delete_stored(upload_folder, [path for image in saved if image is not None for path in image.paths])
        raise


def delete_stored(upload_folder: str, paths: Sequence[str]) -> None:
    """Remove stored files (relative to the uploads folder); one already gone is no error."""
    for path in paths:
        (Path(upload_folder) / path).unlink(missing_ok=True)
