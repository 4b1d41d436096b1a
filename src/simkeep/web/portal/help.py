"""Help: what a number-keeping SIM is, keeping the number alive, and the questions about a new SIM."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from simkeep.auth.deps import AppSettings, DbSession
from simkeep.billing import service as billing
from simkeep.web import i18n
from simkeep.web.deps import PageActor
from simkeep.web.portal.common import page

router = APIRouter()
QUESTIONS = ("what", "alive", "fee", "stolen", "number", "bank")

i18n.add(
    {
        "help.title": ("帮助", "Help"),
        "help.q.what": ("什么是保号卡？", "What is a number-keeping SIM?"),
        "help.a.what": (
            "保号卡是为了保住手机号码而保留的低月租 SIM 卡。"
            "只要号码保持使用，它就一直属于您，照常接听电话、接收短信（如银行验证码）。",
            "A cheap SIM kept so that your phone number is not recycled while you are away: as long as the "
            "number is used it stays yours, and it still receives calls and SMS (bank codes, for example).",
        ),
        "help.q.alive": ("怎样保持号码不被回收？", "How do I keep the number alive?"),
        "help.a.alive": (
            "连续 {days} 天没有计费使用（通话、短信、上网或充值）的号码会被回收。"
            "每隔几个月打一次电话、发一条短信或充值一次即可。"
            "首页显示剩余天数，我们会在剩 60、30、7、1 天时提醒您。",
            "A number with no chargeable use (a call, an SMS, a data session or a top-up) for {days} days is "
            "recycled. One call, SMS or top-up every few months is enough. Home shows the days left, and we "
            "remind you at 60, 30, 7 and 1 days.",
        ),
        "help.q.fee": ("补卡要多少钱？", "What does a new SIM cost?"),
        "help.a.fee": (
            "费用取决于方式和卡的类型，支付前会明确显示：{fees}。审核未通过不收费。",
            "It depends on the channel and the kind of SIM, and is shown before you pay: {fees}. Nothing is "
            "charged if the application is not approved.",
        ),
        "help.q.stolen": ("SIM 卡被盗了怎么办？", "My SIM was stolen. What do I do?"),
        "help.a.stolen": (
            "先挂失：挂失后 SIM 卡立即停用，他人无法用它接收您的验证码。"
            "无需登录，只需号码和机主姓名或证件号码。然后再申请补卡。",
            "Report it first: the SIM is suspended at once, so nobody can receive your codes with it. No "
            "sign-in needed, only the number and the holder's name or document number. "
            "Then apply for a new SIM.",
        ),
        "help.q.number": ("补卡后号码会变吗？", "Does my number change with a new SIM?"),
        "help.a.number": (
            "不会。号码保持不变，只是换到新卡上；新卡激活时原卡同时失效。",
            "No. The number stays the same and moves to the new SIM; the old SIM stops working when the new "
            "one is activated.",
        ),
        "help.q.bank": ("需要通知银行吗？", "Do I need to tell my bank?"),
        "help.a.bank": (
            "如果号码只是用来保号，无需到银行变更。但绑定了该号码的服务（如银行）会得知 SIM 卡已更换，"
            "短时间内可能要求额外验证。",
            "If the number is only kept alive, nothing needs changing at the bank. But services bound to the "
            "number (banks among them) learn that its SIM changed, and may ask for extra checks for a while.",
        ),
    }
)


@router.get("/portal/help")
def help_page(request: Request, session: DbSession, settings: AppSettings, actor: PageActor) -> Response:
    """The questions holders ask, answered (no sign-in needed)."""
    quotes = billing.schedule(session, settings)
    return page(
        request,
        settings,
        "portal/help.html",
        signed_in=actor.kind == "line",
        questions=QUESTIONS,
        quotes=quotes,
        days=settings.inactivity_days_before_recycling,
    )
