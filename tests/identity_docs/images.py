"""Synthetic document images for the OCR tests, drawn with Pillow.

They imitate the layout of the real thing closely enough for OCR to face the same task (labels, a portrait,
the number or the machine-readable zone) without containing anyone's data. Chinese labels are drawn when a
CJK font is installed (``fc-list :lang=zh``); otherwise English labels stand in for them.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
SANS = DEJAVU / "DejaVuSans.ttf"
SANS_BOLD = DEJAVU / "DejaVuSans-Bold.ttf"
MONO = DEJAVU / "DejaVuSansMono.ttf"
MONO_BOLD = DEJAVU / "DejaVuSansMono-Bold.ttf"
# OCR-B, the typeface of machine-readable zones (Debian package fonts-ocr-b); DejaVu Sans Mono stands in.
OCR_B = Path("/usr/share/fonts/opentype/ocr-b/OCRB.otf")

CARD_BACKGROUND = (232, 240, 247)
PAGE_BACKGROUND = (244, 238, 226)
INK = (24, 24, 32)
LABEL_INK = (70, 110, 150)


@cache
def cjk_font() -> Path | None:
    """A font with Chinese glyphs, if fontconfig knows one."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return None
    out = subprocess.run(  # noqa: S603 - a fixed local command
        [fc_list, ":lang=zh", "file"], capture_output=True, text=True, check=False, timeout=30
    ).stdout
    files = sorted(line.split(":")[0].strip() for line in out.splitlines() if line.strip())
    return Path(files[0]) if files else None


def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    if not path.exists():
        msg = f"{path} is missing; install the Debian package fonts-dejavu-core"
        raise FileNotFoundError(msg)
    return ImageFont.truetype(str(path), size)


def _png(image: Image.Image, fmt: str = "PNG", **options: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _guilloche(draw: ImageDraw.ImageDraw, width: int, height: int, colour: tuple[int, int, int]) -> None:
    """Faint background lines, as security printing has."""
    for y in range(0, height, 18):
        draw.line([(0, y), (width, y + 40)], fill=colour, width=1)


def id_card_image(number: str | None, *, name: str = "张三") -> bytes:
    """The front of a resident ID card (~1000x630) with ``number`` (as given) on its last line."""
    width, height = 1000, 630
    image = Image.new("RGB", (width, height), CARD_BACKGROUND)
    draw = ImageDraw.Draw(image)
    _guilloche(draw, width, height, (222, 232, 242))
    cjk = cjk_font()
    label_font = _font(cjk, 30) if cjk else _font(SANS, 26)
    value_font = _font(cjk, 34) if cjk else _font(SANS_BOLD, 30)
    # Sex and birth date as the number encodes them, when it is well formed.
    digits = "".join((number or "").split())
    born = digits[6:14] if len(digits) == 18 and digits[:17].isdigit() else "19900101"
    man = len(digits) == 18 and digits[16].isdigit() and int(digits[16]) % 2 == 1
    if cjk:
        labels = ["姓名", "性别", "出生", "住址", "公民身份号码"]
        birth = f"{born[:4]}年{int(born[4:6])}月{int(born[6:])}日"
        values = [name, f"{'男' if man else '女'}    民族 汉", birth, "北京市朝阳区建国路1号", ""]
    else:
        labels = ["Name", "Sex", "Born", "Address", "Citizen ID No."]
        birth = f"{born[:4]}-{born[4:6]}-{born[6:]}"
        values = ["ZHANG SAN", "M" if man else "F", birth, "1 Jianguo Road, Chaoyang, Beijing", ""]
    for i, (label, value) in enumerate(zip(labels[:4], values[:4], strict=True)):
        y = 60 + i * 80
        draw.text((50, y), label, font=label_font, fill=LABEL_INK)
        draw.text((200, y - 2), value, font=value_font, fill=INK)
    # The portrait: a grey silhouette where the photo sits.
    draw.rectangle([(700, 60), (940, 360)], fill=(200, 206, 214))
    draw.ellipse([(765, 100), (875, 230)], fill=(160, 168, 178))
    draw.ellipse([(720, 240), (920, 420)], fill=(160, 168, 178))
    draw.rectangle([(700, 361), (940, 430)], fill=CARD_BACKGROUND)
    draw.text((50, 520), labels[4], font=label_font, fill=LABEL_INK)
    if number is not None:
        draw.text((290, 508), number, font=_font(MONO_BOLD, 44), fill=INK)
    return _png(image)


def passport_page_image(mrz: str | None) -> bytes:
    """A passport data page (~1250x880) with the two MRZ lines in a monospace font at its foot."""
    width, height = 1250, 880
    image = Image.new("RGB", (width, height), PAGE_BACKGROUND)
    draw = ImageDraw.Draw(image)
    _guilloche(draw, width, height, (236, 228, 212))
    draw.text((60, 40), "PASSPORT", font=_font(SANS_BOLD, 40), fill=(120, 40, 40))
    draw.rectangle([(60, 130), (360, 520)], fill=(205, 205, 200))
    draw.ellipse([(140, 180), (280, 340)], fill=(165, 165, 160))
    draw.ellipse([(90, 350), (330, 560)], fill=(165, 165, 160))
    draw.rectangle([(60, 521), (360, 600)], fill=PAGE_BACKGROUND)
    label_font, value_font = _font(SANS, 20), _font(SANS_BOLD, 28)
    rows = _visual_zone(mrz)
    for i, (label, value) in enumerate(rows):
        y = 130 + i * 78
        draw.text((420, y), label, font=label_font, fill=(110, 90, 70))
        draw.text((420, y + 26), value, font=value_font, fill=INK)
    if mrz is not None:
        # ICAO 9303 prints the zone at 10 characters per inch, wider apart than a monospace font sets them:
        # one character every 26 px under capitals 26 px high.
        mono = _font(OCR_B if OCR_B.exists() else MONO, 36)
        for row, line in enumerate(mrz.splitlines()):
            for col, char in enumerate(line):
                draw.text((50 + col * 26, 700 + row * 70), char, font=mono, fill=INK)
    return _png(image)


def _visual_zone(mrz: str | None) -> list[tuple[str, str]]:
    """The printed fields of a data page, taken from its MRZ (or made up when there is none)."""
    if mrz is None:
        return [("Type / Code", "P    UTO"), ("Surname", "ERIKSSON"), ("Given names", "ANNA MARIA")]
    line1, line2 = mrz.splitlines()
    surname, _, given = line1[5:].rstrip("<").partition("<<")
    return [
        ("Type / Code", f"{line1[0]}    {line1[2:5].rstrip('<')}"),
        ("Surname", surname.replace("<", " ")),
        ("Given names", given.replace("<", " ")),
        ("Date of birth", f"{line2[17:19]}.{line2[15:17]}.{line2[13:15]}"),
        ("Date of expiry", f"{line2[25:27]}.{line2[23:25]}.{line2[21:23]}"),
    ]


def blank_image(width: int = 1000, height: int = 630) -> bytes:
    """A card-sized image with nothing written on it."""
    return _png(Image.new("RGB", (width, height), CARD_BACKGROUND))


def photographed(image: bytes, *, width: int = 640, blur: float = 0.8, quality: int = 70) -> bytes:
    """``image`` as a phone would send it: smaller, slightly blurred, rotated a little, JPEG-compressed."""
    with Image.open(io.BytesIO(image)) as source:
        picture = source.convert("RGB")
    picture = picture.rotate(0.7, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(90, 90, 90))
    height = round(picture.height * width / picture.width)
    picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    picture = picture.filter(ImageFilter.GaussianBlur(blur))
    return _png(picture, "JPEG", quality=quality)
