"""Message texts in zh-CN and English, chosen by the holder's language."""

from __future__ import annotations

TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "otp": {
        "zh-CN": (
            "验证码",
            "您的验证码是 {code}，{minutes} 分钟内有效。请勿告诉任何人，运营商不会向您索取验证码。",
        ),
        "en": (
            "Your verification code",
            "Your code is {code}. It is valid for {minutes} minutes. "
            "Never tell it to anyone: we will never ask you for it.",
        ),
    },
    "password_locked": {
        "zh-CN": (
            "服务密码已锁定",
            "号码 {msisdn} 的服务密码输错次数过多，已暂时锁定。如非本人操作，请立即挂失或前往营业厅。",
        ),
        "en": (
            "Service password locked",
            "Too many wrong service passwords were tried for {msisdn}; password "
            "use is locked for a while. If this was not you, report the SIM lost or visit a store.",
        ),
    },
    "password_changed": {
        "zh-CN": ("服务密码已修改", "号码 {msisdn} 的服务密码已修改。如非本人操作，请立即联系我们。"),
        "en": (
            "Service password changed",
            "The service password of {msisdn} was changed. If this was not you, contact us at once.",
        ),
    },
    "lock_changed": {
        "zh-CN": (
            "换卡保护已{state_zh}",
            "号码 {msisdn} 的换卡保护已{state_zh}。如非本人操作，请立即联系我们。",
        ),
        "en": (
            "SIM-change lock turned {state}",
            "The SIM-change lock of {msisdn} was turned {state}. If this was not you, contact us at once.",
        ),
    },
    "sim_change_blocked": {
        "zh-CN": (
            "换卡请求已拒绝",
            "有人试图为号码 {msisdn} 办理补换卡，因换卡保护已开启而被拒绝。如非本人操作，请注意账户安全。",
        ),
        "en": (
            "SIM change refused",
            "Someone asked for a new SIM for {msisdn}; it was refused because the "
            "SIM-change lock is on. If this was not you, watch your accounts.",
        ),
    },
    "contacts_changed": {
        "zh-CN": (
            "联系方式已修改",
            "号码 {msisdn} 登记的联系方式已修改。如非本人操作，请立即挂失并前往营业厅。",
        ),
        "en": (
            "Contact details changed",
            "The registered contact details of {msisdn} were changed. If this "
            "was not you, report the SIM lost and visit a store.",
        ),
    },
    "failed_proofs": {
        "zh-CN": (
            "身份验证失败",
            "号码 {msisdn} 多次身份验证失败，自助服务已暂时锁定。如非本人操作，请立即挂失。",
        ),
        "en": (
            "Failed identity checks",
            "Several identity checks for {msisdn} failed and self-service is "
            "locked for a while. If this was not you, report the SIM lost.",
        ),
    },
}


def render(template: str, language: str, **params: object) -> tuple[str, str]:
    """The subject and body of ``template`` in ``language`` (English when the language is unknown)."""
    texts = TEMPLATES[template]
    subject, body = texts.get(language) or texts["en"]
    return subject.format(**params), body.format(**params)
