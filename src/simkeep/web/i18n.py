"""The pages' texts in zh-CN and English; a key missing in one language falls back to English, then the key.

Catalogues grow with the pages: each page module adds its own texts with :func:`add`, next to its code.
"""

from __future__ import annotations

from collections.abc import Mapping

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"

CATALOG: dict[str, dict[str, str]] = {"zh-CN": {}, "en": {}}


def add(texts: Mapping[str, tuple[str, str]]) -> None:
    """Add texts as ``key: (zh-CN, English)``."""
    for key, (zh, en) in texts.items():
        CATALOG["zh-CN"][key] = zh
        CATALOG["en"][key] = en


def translate(language: str, key: str, **params: object) -> str:
    """The text of ``key`` in ``language``, with ``params`` filled in."""
    text = CATALOG.get(language, {}).get(key) or CATALOG["en"].get(key) or key
    return text.format(**params) if params else text


def negotiate(cookie: str | None, accept_language: str | None, preferred: str | None = None) -> str:
    """The page language: the switch (cookie) first, then the holder's preference, then the browser."""
    for candidate in (cookie, preferred):
        if candidate in LANGUAGES:
            return str(candidate)
    if accept_language:
        for part in accept_language.split(","):
            tag = part.split(";")[0].strip().lower()
            if tag.startswith("en"):
                return "en"
            if tag.startswith("zh"):
                return "zh-CN"
    return DEFAULT_LANGUAGE


add(
    {
        "app.name": ("号码守护", "simkeep"),
        "app.portal": ("号码守护 · 保号卡自助服务", "simkeep · number-keeping SIM self-service"),
        "app.console": ("号码守护 · 员工控制台", "simkeep · staff console"),
        "lang.switch": ("English", "中文"),
        "nav.home": ("首页", "Home"),
        "nav.help": ("帮助", "Help"),
        "nav.sign_out": ("退出", "Sign out"),
        "nav.sign_in": ("登录", "Sign in"),
        "nav.report_loss": ("挂失", "Report loss"),
        "form.submit": ("提交", "Submit"),
        "form.continue": ("继续", "Continue"),
        "form.cancel": ("取消", "Cancel"),
        "form.required": ("必填", "Required"),
        "error.title": ("出错了", "Something went wrong"),
        "error.back": ("返回", "Go back"),
        "error.csrf": (
            "页面已过期，请刷新后重试。",
            "This page has expired. Reload it and try again.",
        ),
        "error.not_found": ("页面不存在。", "This page does not exist."),
        "error.forbidden": ("您没有权限查看此页面。", "You are not allowed to see this page."),
        "error.sign_in": ("请先登录。", "Please sign in first."),
        "msisdn.label": ("手机号码", "Phone number"),
        "msisdn.hint": ("含国家代码，例如 +8613800138000", "With the country code, e.g. +8613800138000"),
        "password.label": ("服务密码", "Service password"),
    }
)


add(
    {
        "nav.skip": ("跳到正文", "Skip to content"),
        "nav.label": ("导航", "Navigation"),
        "nav.dashboard": ("概览", "Dashboard"),
        "channel.store": ("营业厅", "At a store"),
        "channel.online_mail": ("线上申请 · 邮寄", "Online, by mail"),
        "channel.esim": ("eSIM", "eSIM"),
        "state.submitted": ("已提交", "Submitted"),
        "state.verifying": ("核验中", "Verifying"),
        "state.in_review": ("人工审核中", "In review"),
        "state.approved": ("已通过", "Approved"),
        "state.awaiting_payment": ("待支付", "Awaiting payment"),
        "state.paid": ("已支付", "Paid"),
        "state.sim_assigned": ("已配卡", "SIM assigned"),
        "state.shipped": ("已寄出", "Shipped"),
        "state.delivered": ("已送达", "Delivered"),
        "state.on_hold": ("包裹退回，待处理", "On hold (parcel returned)"),
        "state.activating": ("正在网络中开通", "Activating in the network"),
        "state.activated": ("已激活", "Activated"),
        "state.rejected": ("未通过", "Rejected"),
        "state.cancelled": ("已取消", "Cancelled"),
        "state.expired": ("已过期", "Expired"),
        "role.clerk": ("营业员", "Clerk"),
        "role.reviewer": ("审核员", "Reviewer"),
        "role.admin": ("管理员", "Admin"),
    }
)
