"""Who and what is in the demo dataset: stores, staff, holders, SIM serials and the scenario of each line.

Every person, number and document here is fictitious. Resident ID numbers are built with a valid region
code, birth date and ISO 7064 MOD 11-2 check character, so they pass ``stdnum.cn.ric``; the numbers
themselves are only ever stored as keyed hashes. ``docs/demo.md`` describes the same data for a reader.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from simkeep.identifiers import luhn_valid
from simkeep.models import DocumentType, Language, StaffRole

DEMO_STAFF_PASSWORD = "simkeep-demo"  # noqa: S105 - the documented, public demo password
DEMO_SERVICE_PASSWORD = "123456"  # noqa: S105 - the documented service password of every demo holder
PLAN_CODE = "keep"
STORE_STOCK = 20
WAREHOUSE_STOCK = 50
ESIM_STOCK = 30
INITIAL_BATCH = "demo-initial"
WAREHOUSE_BATCH = "demo-warehouse"
ESIM_BATCH = "demo-esim"

# Serial ranges of the demo SIMs, one per batch.
INITIAL_SERIALS = 7_700_100_000
STORE_SERIALS = {"BJ-XIDAN": 7_700_200_000, "SH-NANJINGRD": 7_700_300_000}
WAREHOUSE_SERIALS = 7_700_400_000
ESIM_SERIALS = 7_700_500_000


def store_batch(code: str) -> str:
    """The batch name of a demo store's stock."""
    return f"demo-store-{code}"


def resident_id(region: str, birth_date: str, sequence: int) -> str:
    """A CN resident ID number: region (6) + birth date (8) + sequence (3) + ISO 7064 MOD 11-2 check."""
    body = f"{region}{birth_date}{sequence:03d}"
    total = sum(int(digit) * pow(2, 17 - i, 11) for i, digit in enumerate(body))
    check = (12 - total % 11) % 11
    return body + ("X" if check == 10 else str(check))


def demo_iccid(serial: int) -> str:
    """A 19-digit ICCID: 89 (telecom), 86 (China), 00 (issuer), a 12-digit serial, the Luhn digit."""
    body = f"898600{serial:012d}"
    return next(body + str(d) for d in range(10) if luhn_valid(body + str(d)))


def demo_imsi(serial: int) -> str:
    """A 15-digit IMSI of the test network MCC 001 / MNC 01, so it never names a real subscriber."""
    return f"00101{serial:010d}"


@dataclass(frozen=True)
class StoreSpec:
    """A demo store; it gets :data:`STORE_STOCK` blank physical SIMs."""

    code: str
    name: str
    region: str
    address: str


@dataclass(frozen=True)
class StaffSpec:
    """A demo staff user (password :data:`DEMO_STAFF_PASSWORD`)."""

    username: str
    role: StaffRole
    store_code: str | None
    display_name: str


class Scenario(enum.StrEnum):
    """What the demo does with a holder's line."""

    IDLE = "idle"
    LOSS_REPORTED = "loss_reported"
    IN_REVIEW = "in_review"
    AWAITING_PAYMENT = "awaiting_payment"
    SHIPPED = "shipped"
    STORE_ACTIVATED = "store_activated"
    CANCELLED_REFUNDED = "cancelled_refunded"
    ESIM_SIM_ASSIGNED = "esim_sim_assigned"


SCENARIO_TEXT = {
    Scenario.IDLE: "no order; try a loss report or a replacement",
    Scenario.LOSS_REPORTED: "SIM reported lost: line suspended, loss report open",
    Scenario.IN_REVIEW: "online (mail) replacement waiting for a reviewer",
    Scenario.AWAITING_PAYMENT: "online (mail) replacement approved by the reviewer, fee not yet paid",
    Scenario.SHIPPED: "online (mail) replacement paid and shipped (SF Express)",
    Scenario.STORE_ACTIVATED: "SIM stolen, reported, replaced and activated at the BJ-XIDAN counter",
    Scenario.CANCELLED_REFUNDED: "store order at SH-NANJINGRD paid in cash, then cancelled and refunded",
    Scenario.ESIM_SIM_ASSIGNED: "eSIM replacement paid, profile assigned, waiting for activation",
}

# The state each scenario leaves the line's newest order in (None: the line has no order).
SCENARIO_ORDER_STATE: dict[Scenario, str | None] = {
    Scenario.IDLE: None,
    Scenario.LOSS_REPORTED: None,
    Scenario.IN_REVIEW: "in_review",
    Scenario.AWAITING_PAYMENT: "awaiting_payment",
    Scenario.SHIPPED: "shipped",
    Scenario.STORE_ACTIVATED: "activated",
    Scenario.CANCELLED_REFUNDED: "cancelled",
    Scenario.ESIM_SIM_ASSIGNED: "sim_assigned",
}


@dataclass(frozen=True)
class HolderSpec:
    """A demo holder with one line (service password :data:`DEMO_SERVICE_PASSWORD`)."""

    msisdn: str
    real_name: str
    document_type: DocumentType
    document_number: str
    document_country: str
    language: Language
    email: str
    contact_phone: str | None
    region: str
    city: str
    street: str
    postal_code: str
    days_since_activity: int
    years_held: int
    scenario: Scenario

    @property
    def delivery_address(self) -> dict[str, str]:
        """Where a mailed SIM goes: the holder, reachable on a number other than the line's."""
        return {
            "recipient": self.real_name,
            "phone": self.contact_phone or "+86137" + self.msisdn[-8:],
            "region": self.region,
            "city": self.city,
            "street": self.street,
            "postal_code": self.postal_code,
        }


STORES = (
    StoreSpec("BJ-XIDAN", "北京西单营业厅", "Beijing", "北京市西城区西单北大街120号"),
    StoreSpec("SH-NANJINGRD", "上海南京路营业厅", "Shanghai", "上海市黄浦区南京东路800号"),
)

STAFF = (
    StaffSpec("clerk.bj", StaffRole.CLERK, "BJ-XIDAN", "王芳 (西单营业厅)"),
    StaffSpec("clerk.sh", StaffRole.CLERK, "SH-NANJINGRD", "陈静 (南京路营业厅)"),
    StaffSpec("reviewer", StaffRole.REVIEWER, None, "李娜 (back office)"),
    StaffSpec("admin", StaffRole.ADMIN, None, "Operator admin"),
)

_CN, _PP = DocumentType.CN_RIC, DocumentType.PASSPORT
_ZH, _EN = Language.ZH_CN, Language.EN
_S = Scenario

# fmt: off
HOLDERS = (
    HolderSpec("+8613800138001", "张伟", _CN, resident_id("110102", "19850314", 123), "CHN", _ZH,
               "zhang.wei@example.cn", None, "北京市", "北京市", "西城区金融大街15号3单元502", "100033",
               3, 6, _S.STORE_ACTIVATED),
    HolderSpec("+8613800138002", "王秀英", _CN, resident_id("310104", "19790622", 246), "CHN", _ZH,
               "wang.xiuying@example.cn", None, "上海市", "上海市", "徐汇区漕溪北路88号1201室", "200030",
               12, 9, _S.LOSS_REPORTED),
    HolderSpec("+8613800138003", "刘洋", _CN, resident_id("440106", "19920108", 357), "CHN", _ZH,
               "liu.yang@example.cn", None, "广东省", "广州市", "天河区天河路385号28楼", "510620",
               25, 4, _S.IN_REVIEW),
    HolderSpec("+8613800138004", "Emily Chen", _PP, "533381297", "GBR", _EN,
               "emily.chen@example.co.uk", "+447911123456", "浙江省", "杭州市", "西湖区文三路90号6幢301",
               "310012", 160, 7, _S.AWAITING_PAYMENT),
    HolderSpec("+8613800138005", "杨帆", _CN, resident_id("330106", "19880917", 468), "CHN", _ZH,
               "yang.fan@example.cn", None, "浙江省", "杭州市", "西湖区曙光路122号", "310007",
               40, 5, _S.SHIPPED),
    HolderSpec("+8613800138006", "James Wilson", _PP, "567891234", "USA", _EN,
               "james.wilson@example.com", "+12025550143", "上海市", "上海市", "静安区南京西路1266号",
               "200040", 170, 3, _S.ESIM_SIM_ASSIGNED),
    HolderSpec("+8613900139001", "赵敏", _CN, resident_id("320102", "19950503", 572), "CHN", _ZH,
               "zhao.min@example.cn", None, "上海市", "上海市", "黄浦区南京东路299号", "200001",
               7, 2, _S.CANCELLED_REFUNDED),
    HolderSpec("+8613900139002", "黄丽", _CN, resident_id("420106", "19860211", 684), "CHN", _ZH,
               "huang.li@example.cn", None, "湖北省", "武汉市", "武昌区中南路99号", "430071",
               155, 11, _S.IDLE),
    HolderSpec("+8613900139003", "周杰", _CN, resident_id("610113", "19830730", 795), "CHN", _ZH,
               "zhou.jie@example.cn", None, "陕西省", "西安市", "雁塔区小寨西路232号", "710061",
               1, 8, _S.IDLE),
    HolderSpec("+8613900139004", "Sophie Martin", _PP, "18AB12345", "FRA", _EN,
               "sophie.martin@example.fr", "+33612345678", "北京市", "北京市", "朝阳区三里屯路19号",
               "100027", 178, 5, _S.IDLE),
    HolderSpec("+8613900139005", "吴刚", _CN, resident_id("120101", "19660925", 813), "CHN", _ZH,
               "wu.gang@example.cn", None, "天津市", "天津市", "和平区南京路189号", "300051",
               90, 12, _S.IDLE),
    HolderSpec("+8613900139006", "林晓", _PP, "E83920175", "CHN", _EN,
               "lin.xiao@example.com.au", "+61412345678", "山东省", "青岛市", "市南区香港中路76号",
               "266071", 165, 6, _S.IDLE),
)
# fmt: on
