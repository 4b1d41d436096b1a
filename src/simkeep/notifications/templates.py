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


# Replacement orders, by the state they reach (see replacements/workflow.py), and loss reports.
TEMPLATES.update(
    {
        "order_submitted": {
            "zh-CN": (
                "补卡申请已受理",
                "号码 {msisdn} 的补卡申请 {reference} 已受理。如非本人操作，请立即挂失并联系我们。",
            ),
            "en": (
                "Replacement SIM application received",
                "We received application {reference} for a new SIM for {msisdn}. "
                "If this was not you, report the SIM lost and contact us at once.",
            ),
        },
        "order_in_review": {
            "zh-CN": (
                "补卡申请审核中",
                "补卡申请 {reference} 需要人工审核，通常一个工作日内完成，结果将另行通知。",
            ),
            "en": (
                "Your application is being reviewed",
                "Application {reference} for {msisdn} needs a person to look at it; this usually takes one "
                "working day. We will tell you the outcome.",
            ),
        },
        "order_approved": {
            "zh-CN": (
                "补卡申请已通过",
                "补卡申请 {reference} 已通过。请支付补卡费用 {fee}，支付后即为您寄出或签发新卡。",
            ),
            "en": (
                "Application approved",
                "Application {reference} for {msisdn} is approved. Please pay the fee of {fee}; the new SIM "
                "is issued once it is paid.",
            ),
        },
        "order_rejected": {
            "zh-CN": (
                "补卡申请未通过",
                "补卡申请 {reference} 未通过：{reason}。您可以重新申请，或携带身份证件前往营业厅办理。",
            ),
            "en": (
                "Application not approved",
                "Application {reference} for {msisdn} was not approved: {reason}. You may apply again, or "
                "bring your identity document to a store.",
            ),
        },
        "order_shipped": {
            "zh-CN": (
                "新卡已寄出",
                "补卡申请 {reference} 的新卡已寄出，运单号 {tracking}，预计 {eta} 前送达。",
            ),
            "en": (
                "Your new SIM is on its way",
                "The new SIM of application {reference} was shipped, tracking number {tracking}; "
                "expected by {eta}.",
            ),
        },
        "order_delivered": {
            "zh-CN": (
                "新卡已送达，请激活",
                "补卡申请 {reference} 的新卡已送达。请登录后输入新卡 ICCID 的后六位以激活；"
                "激活后旧卡立即失效，号码不变。请在 {deadline} 前激活。",
            ),
            "en": (
                "Your new SIM arrived: activate it",
                "The new SIM of application {reference} was delivered. Sign in and enter the last six "
                "digits of the ICCID printed on it to activate it; the old SIM stops working at that "
                "moment and your number stays the same. Activate it before {deadline}.",
            ),
        },
        "order_on_hold": {
            "zh-CN": (
                "新卡包裹已退回",
                "补卡申请 {reference} 的包裹（运单号 {tracking}）被退回。我们会核对地址后重新寄出，"
                "您也可以更新收件地址或取消申请。",
            ),
            "en": (
                "Your SIM parcel came back",
                "The parcel of application {reference} (tracking {tracking}) was returned to us. We will "
                "check the address and send it again; you may also update the address or cancel.",
            ),
        },
        "sim_changed": {
            "zh-CN": (
                "号码已换到新 SIM 卡",
                "号码 {msisdn} 已于 {when} 换到新 SIM 卡（申请 {reference}），旧卡已失效。"
                "如非本人操作，请立即联系我们并通知您的银行。",
            ),
            "en": (
                "Your number moved to a new SIM",
                "{msisdn} moved to a new SIM at {when} (application {reference}); the old SIM no longer "
                "works. If this was not you, contact us and your bank at once.",
            ),
        },
        "order_expired": {
            "zh-CN": (
                "补卡申请已过期",
                "补卡申请 {reference} 未在期限内激活，已关闭，新卡已作废。如仍需补卡，请重新申请。",
            ),
            "en": (
                "Application expired",
                "Application {reference} was not activated in time and is closed; its new SIM was "
                "cancelled. Apply again if you still need a SIM.",
            ),
        },
        "order_cancelled": {
            "zh-CN": ("补卡申请已取消", "补卡申请 {reference} 已取消。{refund}"),
            "en": ("Application cancelled", "Application {reference} for {msisdn} was cancelled. {refund}"),
        },
        "loss_reported": {
            "zh-CN": (
                "号码已挂失",
                "号码 {msisdn} 已挂失，SIM 卡已停用，任何人都无法再用它接收短信验证码。"
                "您可以在线或到营业厅补卡，号码不变。如非本人操作，请联系我们解除挂失。",
            ),
            "en": (
                "Your SIM is suspended",
                "{msisdn} was reported lost and its SIM is suspended: nobody can receive your codes on it. "
                "Get a replacement online or at a store; the number stays the same. If this was not you, "
                "contact us to lift the suspension.",
            ),
        },
        "loss_reinstated": {
            "zh-CN": (
                "挂失已解除",
                "号码 {msisdn} 已解除挂失，原 SIM 卡恢复使用。如非本人操作，请立即联系我们。",
            ),
            "en": (
                "Suspension lifted",
                "The suspension of {msisdn} was lifted and the SIM works again. If this was not you, "
                "contact us at once.",
            ),
        },
    }
)


def render(template: str, language: str, **params: object) -> tuple[str, str]:
    """The subject and body of ``template`` in ``language`` (English when the language is unknown)."""
    texts = TEMPLATES[template]
    subject, body = texts.get(language) or texts["en"]
    return subject.format(**params), body.format(**params)
