"""Message texts of the eSIM channel, added to the notification templates at import."""

from __future__ import annotations

from simkeep.notifications.templates import TEMPLATES

TEMPLATES.update(
    {
        "esim_activation_code": {
            "zh-CN": (
                "您的 eSIM 激活码",
                "补卡申请 {reference} 的 eSIM 已开通。激活码：{activation_code}\n"
                "在手机的“添加 eSIM”中扫描订单页面上的二维码，或手动输入上面的激活码。"
                "安装时需要的确认码已通过{confirmation_via}另行发送。"
                "请在 {deadline} 前安装；安装完成后号码 {msisdn} 将转到 eSIM，原卡随即失效。",
            ),
            "en": (
                "Your eSIM activation code",
                "The eSIM of application {reference} is ready. Activation code: {activation_code}\n"
                "In your phone's 'Add eSIM', scan the QR code on the order page or type the activation code. "
                "The confirmation code the phone asks for was sent separately, {confirmation_via}. "
                "Install it before {deadline}; once it is installed {msisdn} moves to the eSIM and the old "
                "SIM stops working.",
            ),
        },
        "esim_confirmation_code": {
            "zh-CN": (
                "eSIM 确认码",
                "号码 {msisdn} 的 eSIM（申请 {reference}）安装确认码：{code}。"
                "仅在手机安装 eSIM 时输入，请勿告诉任何人，运营商不会向您索取。",
            ),
            "en": (
                "eSIM confirmation code",
                "The confirmation code for the eSIM of {msisdn} (application {reference}) is {code}. "
                "Type it only into your phone while installing the eSIM; never tell it to anyone.",
            ),
        },
    }
)

#: How the activation-code message names the channel the confirmation code went to.
CONFIRMATION_VIA = {
    "sms": ("短信发送到您登记的联系电话", "by SMS to your registered contact number"),
    "email": ("电子邮件发送到您登记的邮箱", "by e-mail to your registered address"),
    "line_sms": ("短信发送到本号码", "by SMS to this number"),
}
