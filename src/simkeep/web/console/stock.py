"""SIM stock: counts per place, kind and status; the CSV import; transfers between warehouse and stores.

Admins manage stock; clerks see their own store's counts, read-only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from simkeep.auth.actors import Actor
from simkeep.auth.deps import AppSettings, DbSession
from simkeep.config import Settings
from simkeep.errors import DomainError
from simkeep.models import SimKind, StaffRole
from simkeep.sims.importer import ImportResult, import_sims
from simkeep.web import i18n
from simkeep.web.console import queries
from simkeep.web.console.common import note_refusal, page, t
from simkeep.web.console.menu import register
from simkeep.web.console.stock_ops import Place, transfer_stock
from simkeep.web.deps import AdminPage, require_staff_page
from simkeep.web.forms import Form, keep_or_discard, read_form
from simkeep.web.templating import language_of

router = APIRouter()
register("/console/stock", "console.stock.menu", StaffRole.ADMIN)
StockPage = Annotated[Actor, Depends(require_staff_page(StaffRole.CLERK))]

i18n.add(
    {
        "console.stock.menu": ("SIM 库存", "SIM stock"),
        "console.stock.title": ("SIM 卡库存", "SIM stock"),
        "console.stock.counts": ("库存统计（在库、已预留、已寄出）", "Stock (in stock, reserved, shipped)"),
        "console.stock.place": ("位置", "Place"),
        "console.stock.kind": ("类型", "Kind"),
        "console.stock.status": ("状态", "Status"),
        "console.stock.count": ("数量", "Count"),
        "console.stock.warehouse": ("仓库", "Warehouse"),
        "console.stock.empty": ("没有库存 SIM 卡。", "No SIMs in stock."),
        "console.stock.import": ("导入库存（CSV）", "Import stock (CSV)"),
        "console.stock.file": ("CSV 文件", "CSV file"),
        "console.stock.file_hint": (
            "表头：iccid,imsi,kind,location,store,batch（见 docs/imports.md）",
            "Header: iccid,imsi,kind,location,store,batch (see docs/imports.md)",
        ),
        "console.stock.file_required": ("请选择一个 CSV 文件。", "Choose a CSV file."),
        "console.stock.do_import": ("导入", "Import"),
        "console.stock.result": (
            "共 {rows} 行：导入 {imported}，已存在 {present}，拒绝 {rejected}。",
            "{rows} rows: {imported} imported, {present} already present, {rejected} rejected.",
        ),
        "console.stock.result_title": ("导入结果", "Import result"),
        "console.stock.bad_rows": ("被拒绝的行", "Rejected rows"),
        "console.stock.line": ("行号", "Line"),
        "console.stock.field": ("列", "Column"),
        "console.stock.reason": ("原因", "Reason"),
        "console.stock.omitted": ("另有 {n} 条错误未列出。", "{n} more errors not listed."),
        "console.stock.transfer": ("调拨", "Transfer"),
        "console.stock.from": ("调出", "From"),
        "console.stock.to": ("调入", "To"),
        "console.stock.quantity": ("数量", "Quantity"),
        "console.stock.do_transfer": ("调拨", "Transfer"),
        "console.stock.moved": ("已调拨 {n} 张。", "{n} SIMs moved."),
        "console.stock.bad_quantity": (
            "请输入 1 到 10000 之间的整数。",
            "Give a whole number from 1 to 10000.",
        ),
        "ccode.TRANSFER_SAME_PLACE": ("调出与调入不能相同。", "Choose two different places."),
        "ccode.IMPORT_FILE_UNREADABLE": ("无法导入此文件：", "This file cannot be imported: "),
        "sim_kind.physical": ("实体卡", "Physical"),
        "sim_kind.esim": ("eSIM", "eSIM"),
        "sim_status.in_stock": ("在库", "In stock"),
        "sim_status.reserved": ("已预留", "Reserved"),
        "sim_status.shipped": ("已寄出", "Shipped"),
        "sim_status.active": ("使用中", "Active"),
        "sim_status.suspended": ("已停用", "Suspended"),
        "sim_status.retired": ("已作废", "Retired"),
    }
)


def _stock_page(
    request: Request,
    session: Session,
    settings: Settings,
    actor: Actor,
    *,
    form: Form | None = None,
    result: ImportResult | None = None,
    flash: str = "",
    status_code: int = 200,
) -> Response:
    admin = actor.has_role(StaffRole.ADMIN)
    stores = queries.stores(session)
    names = {s.id: f"{s.code} · {s.name}" for s in stores}
    counts = queries.stock_counts(session, store_id=None if admin else (actor.store_id or -1))
    form = form or Form({})
    return page(
        request,
        settings,
        actor,
        "console/stock.html",
        status_code=status_code,
        admin=admin,
        counts=[
            (names.get(store, "?") if store else t(request, "console.stock.warehouse"), kind, status, n)
            for _loc, store, kind, status, n in counts
        ],
        stores=stores,
        result=result,
        errors=form.errors,
        values=form.values,
        flash=flash,
    )


@router.get("/console/stock")
def stock(request: Request, session: DbSession, settings: AppSettings, actor: StockPage) -> Response:
    """Counts (a clerk's own store only); import and transfer forms for admins."""
    moved = request.query_params.get("moved", "")
    flash = t(request, "console.stock.moved", n=int(moved)) if moved.isdigit() else ""
    return _stock_page(request, session, settings, actor, flash=flash)


def _engine_of(session: Session) -> Engine:
    bind: Any = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


@router.post("/console/stock/import")
async def import_file(
    request: Request, session: DbSession, settings: AppSettings, actor: AdminPage
) -> Response:
    """Import a stock CSV; rows are checked one by one and bad ones reported by line number."""
    form, data = await read_form(request, settings)
    upload = data.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        form.errors["file"] = t(request, "console.stock.file_required")
        return _stock_page(request, session, settings, actor, form=form, status_code=422)
    session.rollback()  # the import writes on connections of its own; this request holds no lock meanwhile
    with tempfile.TemporaryDirectory(prefix="simkeep-stock-") as tmp:
        path = Path(tmp) / Path(upload.filename).name.replace("/", "_")[:100]
        with path.open("wb") as out:
            while chunk := await upload.read(1024 * 1024):
                out.write(chunk)
        try:
            result = import_sims(_engine_of(session), settings, path, actor=actor.label, parallel=False)
        except DomainError as exc:
            form.errors["file"] = t(request, "ccode.IMPORT_FILE_UNREADABLE") + exc.message
            return _stock_page(request, session, settings, actor, form=form, status_code=422)
    result.errors.sort(key=lambda e: e.line)
    return _stock_page(
        request, session, settings, actor, result=result, status_code=422 if result.rejected else 200
    )


def _place(form: Form, name: str, stores: dict[str, Any]) -> Place | None:
    value = form.get(name)
    if value == "warehouse":
        return Place(None)
    return Place(stores[value]) if value in stores else None


@router.post("/console/stock/transfer")
async def transfer(request: Request, session: DbSession, settings: AppSettings, actor: AdminPage) -> Response:
    """Move in-stock SIMs between the warehouse and a store."""
    form, _ = await read_form(request, settings)
    form.require(language_of(request), "source", "target", "kind", "quantity")
    stores = {s.code: s for s in queries.stores(session)}
    source, target = _place(form, "source", stores), _place(form, "target", stores)
    for name, place in (("source", source), ("target", target)):
        if place is None and name not in form.errors:
            form.errors[name] = t(request, "form.required")
    quantity = form.get("quantity")
    if "quantity" not in form.errors and not (quantity.isdigit() and 1 <= int(quantity) <= 10_000):
        form.errors["quantity"] = t(request, "console.stock.bad_quantity")
    if form.get("kind") not in {str(k) for k in SimKind}:
        form.errors.setdefault("kind", t(request, "form.required"))
    if form.ok and source is not None and target is not None:
        try:
            moved = transfer_stock(
                session,
                actor=actor,
                kind=SimKind(form.get("kind")),
                source=source,
                target=target,
                quantity=int(quantity),
            )
        except DomainError as exc:
            keep_or_discard(session, exc)
            note_refusal(request, form, exc)
        else:
            session.commit()
            return RedirectResponse(f"/console/stock?moved={moved}", status_code=303)
    return _stock_page(request, session, settings, actor, form=form, status_code=422)
