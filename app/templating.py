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


def format_eta(seconds: float | None) -> str:
    """A time left as people say it: "under a minute", "about 3 min", "about 1 h 20 min"."""
    if seconds is None or seconds != seconds:
        return "unknown time"
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"about {minutes} min"
    return f"about {hours} h" + (f" {minutes} min" if minutes else "")


templates.env.filters["markdown"] = render_markdown
templates.env.filters["eta"] = format_eta


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
