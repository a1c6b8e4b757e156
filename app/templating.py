"""Jinja2 templates (autoescaped) and the HTMX fragment convention.

One template per page; the pieces HTMX swaps are named blocks rendered on their own when the
request carries HX-Request (STYLE.md, "template fragments").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from markupsafe import Markup

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.autoescape = True

# "js-default" disables raw HTML in markdown, so guidelines cannot inject markup.
_markdown = MarkdownIt("js-default")


def render_markdown(text: str) -> Markup:
    return Markup(_markdown.render(text or ""))  # noqa: S704 (html disabled above)


templates.env.filters["markdown"] = render_markdown


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    block: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a page, or only `block` of it when HTMX asks for a fragment."""
    ctx = {"request": request, **(context or {})}
    ctx.setdefault("current_user", getattr(request.state, "user", None))
    ctx.setdefault("csrf_token", getattr(request.state, "csrf_token", ""))
    if block and request.headers.get("HX-Request"):
        tmpl = templates.env.get_template(template)
        html = "".join(tmpl.blocks[block](tmpl.new_context(ctx)))
        return HTMLResponse(html, status_code=status_code)
    return templates.TemplateResponse(request, template, ctx, status_code=status_code)
