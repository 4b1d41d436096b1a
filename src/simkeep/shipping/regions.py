"""Delivery regions (China's provincial-level divisions) and how many days a parcel takes to each.

The days are counted from the warehouse's hand-over to the carrier, as published by Chinese express
carriers for standard service from the north-east coast (3 days to the neighbouring provinces, up to 7 to
Xinjiang and Tibet). An operator sets its own with ``SIMKEEP_SHIPPING_ETA_DAYS`` (JSON, region code -> days).
"""

from __future__ import annotations

import unicodedata
from datetime import date, timedelta

from simkeep.config import Settings

#: Region code -> (Chinese name, English name, default days).
REGIONS: dict[str, tuple[str, str, int]] = {
    "BJ": ("北京", "Beijing", 3),
    "TJ": ("天津", "Tianjin", 3),
    "HE": ("河北", "Hebei", 3),
    "SH": ("上海", "Shanghai", 3),
    "JS": ("江苏", "Jiangsu", 3),
    "ZJ": ("浙江", "Zhejiang", 3),
    "SD": ("山东", "Shandong", 3),
    "SX": ("山西", "Shanxi", 4),
    "LN": ("辽宁", "Liaoning", 4),
    "AH": ("安徽", "Anhui", 4),
    "FJ": ("福建", "Fujian", 4),
    "JX": ("江西", "Jiangxi", 4),
    "HA": ("河南", "Henan", 4),
    "HB": ("湖北", "Hubei", 4),
    "HN": ("湖南", "Hunan", 4),
    "GD": ("广东", "Guangdong", 4),
    "JL": ("吉林", "Jilin", 5),
    "HL": ("黑龙江", "Heilongjiang", 5),
    "NM": ("内蒙古", "Inner Mongolia", 5),
    "SN": ("陕西", "Shaanxi", 5),
    "CQ": ("重庆", "Chongqing", 5),
    "SC": ("四川", "Sichuan", 5),
    "GX": ("广西", "Guangxi", 5),
    "HI": ("海南", "Hainan", 5),
    "GZ": ("贵州", "Guizhou", 6),
    "YN": ("云南", "Yunnan", 6),
    "GS": ("甘肃", "Gansu", 6),
    "NX": ("宁夏", "Ningxia", 6),
    "QH": ("青海", "Qinghai", 6),
    "HK": ("香港", "Hong Kong", 6),
    "MO": ("澳门", "Macau", 6),
    "XJ": ("新疆", "Xinjiang", 7),
    "XZ": ("西藏", "Tibet", 7),
}

# Suffixes an address may carry after the region's name: 省 province, 市 municipality, 自治区 and the
# named autonomous regions, 特别行政区 special administrative region.
_SUFFIXES = (
    "维吾尔自治区",
    "壮族自治区",
    "回族自治区",
    "特别行政区",
    "自治区",
    "省",
    "市",
)
_EN_SUFFIXES = (" province", " municipality", " autonomous region", " sar", " shi", " sheng")
_EN_ALIASES = {"xizang": "XZ", "neimenggu": "NM", "nei mongol": "NM", "hongkong": "HK", "macao": "MO"}


def _index() -> dict[str, str]:
    found: dict[str, str] = {}
    for code, (zh, en, _days) in REGIONS.items():
        found[zh] = code
        found[en.casefold()] = code
        found[code.casefold()] = code
    for alias, code in _EN_ALIASES.items():
        found[alias] = code
    return found


_BY_NAME = _index()


def region_code(name: str) -> str | None:
    """The code of a region as written in an address (北京市, 广东省, Guangdong, gd ...), or None."""
    text = unicodedata.normalize("NFKC", name).strip()
    for suffix in _SUFFIXES:
        if text.endswith(suffix) and len(text) > len(suffix):
            text = text[: -len(suffix)]
            break
    key = text.casefold()
    for suffix in _EN_SUFFIXES:
        if key.endswith(suffix):
            key = key[: -len(suffix)].strip()
            break
    return _BY_NAME.get(key)


def transit_days(settings: Settings, code: str) -> int:
    """Days a parcel takes to region ``code`` (the operator's table first, then the defaults)."""
    configured = settings.shipping_eta_days.get(code)
    return int(configured) if configured is not None else REGIONS[code][2]


def expected_on(settings: Settings, code: str, *, shipped_on: date) -> date:
    """The date a parcel handed over on ``shipped_on`` is expected."""
    return shipped_on + timedelta(days=transit_days(settings, code))
