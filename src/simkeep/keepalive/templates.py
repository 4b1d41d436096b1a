"""Message texts of the keep-alive domain, added to the notification templates at import."""

from __future__ import annotations

from simkeep.notifications.templates import TEMPLATES

TEMPLATES.update(
    {
        "keepalive_reminder": {
            "zh-CN": (
                "号码即将回收提醒",
                "号码 {msisdn} 已长期未使用，还有 {days} 天（{date}）将被回收。"
                "拨打一次电话、发送一条短信、使用一次流量或充值即可保号。",
            ),
            "en": (
                "Your number will be recycled soon",
                "{msisdn} has not been used for a long time: it will be recycled in {days} days ({date}). "
                "One call, one SMS, one data session or a top-up keeps it.",
            ),
        },
        "keepalive_recycled": {
            "zh-CN": (
                "号码已回收",
                "号码 {msisdn} 因长期未使用已于 {date} 回收。如有疑问，请在 {grace_days} 天内联系我们。",
            ),
            "en": (
                "Your number was recycled",
                "{msisdn} was recycled on {date} after a long time without use. "
                "If this is a mistake, contact us within {grace_days} days.",
            ),
        },
        "keepalive_restored": {
            "zh-CN": ("号码已恢复", "号码 {msisdn} 的回收已撤销，号码已恢复使用。"),
            "en": ("Your number is back", "The recycling of {msisdn} was undone: the number is yours again."),
        },
    }
)
