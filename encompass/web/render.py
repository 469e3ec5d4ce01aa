"""Server-rendered pages: Jinja2 templates with every value escaped, and safe headers.

Pages are plain HTML that works without JavaScript unless a page needs the browser's own
cryptography (the Key Adult's inbox). Scripts and styles come only from ``/static/`` on this
service (CSP ``script-src 'self'``): nothing is loaded from another site. Pages may show
personal data to the person entitled to it, so no page is cached or sent a referrer.

Use::

    return render(request, "admin/today.html", title="Today", figures=figures)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import jinja2
from aiohttp import web

STATIC_DIR: Final = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("encompass.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty cell
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_text(template: str, **context: Any) -> str:
    """The page ``template`` rendered with ``context`` (every value escaped)."""
    return _templates.get_template(template).render(**context)


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """An HTML response of ``template``, with the page headers."""
    return web.Response(
        text=render_text(template, **context),
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=PAGE_HEADERS,
    )


def install(app: web.Application) -> None:
    """Serve ``/static/`` (the stylesheet and the page scripts) from the package."""
    app.router.add_static("/static/", STATIC_DIR, name="static", append_version=False)
