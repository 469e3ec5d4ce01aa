"""The HTML of the Key Adult's pages: plain, server-rendered, one script module.

Nothing personal is ever written here: the pages carry notice ids, times and statuses; a
notice's content arrives sealed and is opened and shown by ``static/inbox.js`` in the
browser. Every value is escaped; no inline script or style (the CSP forbids both).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Final

from encompass.services.inbox import InboxItem

ANSWERS: Final = {
    "received": "Acknowledged: received",
    "not_our_pupil": "Answered: not our pupil",
    "child_absent": "Acknowledged: child absent",
}


def page(title: str, body: str, *, data: dict[str, str] | None = None) -> str:
    """The shared layout. ``data`` becomes ``data-*`` attributes of ``<main>``, which the
    script reads (a CSRF token, the service key); never personal data."""
    attrs = "".join(f' data-{escape(k)}="{escape(v)}"' for k, v in (data or {}).items())
    return f"""<!doctype html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} - Encompass</title>
<link rel="stylesheet" href="/static/inbox.css">
<script type="module" src="/static/inbox.js"></script>
</head>
<body>
<a class="skip-link" href="#main">Skip to main content</a>
<header class="header"><div class="width"><span class="service">Encompass</span>
<span class="strap">Operation Encompass notices</span></div></header>
<div class="width">
<main id="main" tabindex="-1"{attrs}>
{body}
</main>
</div>
<footer class="footer"><div class="width">Notices are opened in this browser.
The server only ever holds them sealed.</div></footer>
</body>
</html>
"""


def enrol_page(*, usable: bool, service_key: str) -> str:
    if not usable:
        return page(
            "Set-up link not usable",
            """<h1>This set-up link cannot be used</h1>
<p>It was used already or it has expired. Ask your Encompass administrator for a new one.</p>""",
        )
    return page(
        "Set up this browser",
        """<h1>Set up this browser</h1>
<p>This browser will make its own keys to open Operation Encompass notices for you and to
sign your acknowledgements. The keys never leave this browser.</p>
<p>Use a browser on a device your school manages. Each set-up link works once.</p>
<div id="status" role="status" aria-live="polite"></div>
<button type="button" class="button" id="enrol" data-action="enrol">Set up this browser</button>
""",
        data={"page": "enrol", "service-key": service_key},
    )


def sign_in_page(service_key: str, *, automatic: bool) -> str:
    said = "Signing in with this browser's key…" if automatic else "You are signed out."
    return page(
        "Inbox",
        f"""<h1>Your notices</h1>
<div id="status" role="status" aria-live="polite"><p>{said}</p></div>
<noscript><p>This page needs JavaScript: notices are opened in the browser.</p></noscript>
<button type="button" class="button" data-action="sign-in" hidden>Sign in with this browser</button>
""",
        data={
            "page": "sign-in",
            "service-key": service_key,
            "automatic": "yes" if automatic else "no",
        },
    )


def _when(at: datetime) -> str:
    return at.strftime("%-d %b %Y, %H:%M UTC")


def _item(item: InboxItem, focused: bool) -> str:
    label = "Retraction" if item.kind == "retraction" else "Notice"
    state = (
        '<strong class="tag tag-new">New</strong>'
        if item.unread
        else '<span class="tag">Opened</span>'
    )
    answer = ANSWERS.get(item.answer or "", "Not yet acknowledged")
    if item.kind == "retraction":
        answer = "Withdrawn by the police"
    nid = escape(item.notice_id)
    return f"""<li class="notice{" unread" if item.unread else ""}" data-notice="{nid}"
 data-kind="{escape(item.kind)}" data-answer="{escape(item.answer or "")}"
 {"data-focus" if focused else ""}>
<h2 class="notice-title">{label} sealed {_when(item.sealed_at)} {state}</h2>
<p class="meta">Reference <code>{nid}</code> · {escape(answer)}</p>
<button type="button" class="button button-secondary" data-action="open"
 aria-expanded="false">Open {label.lower()}</button>
<div class="opened" hidden></div>
</li>"""


def inbox_page(
    items: Sequence[InboxItem], *, csrf: str, service_key: str, focus: str | None
) -> str:
    listing = (
        '<ol class="notices">' + "".join(_item(i, i.notice_id == focus) for i in items) + "</ol>"
        if items
        else "<p>No notices. When a notice is released to you it appears here.</p>"
    )
    unread = sum(i.unread for i in items)
    return page(
        "Inbox",
        f"""<h1>Your notices</h1>
<p class="lead">{len(items)} notice{"s" if len(items) != 1 else ""}, {unread} new.
Newest first.</p>
<div id="status" role="status" aria-live="polite"></div>
{listing}
<form method="post" action="/inbox/sign-out" class="sign-out">
<input type="hidden" name="csrf" value="{escape(csrf)}">
<button type="submit" class="button button-secondary">Sign out</button>
</form>""",
        data={"page": "inbox", "csrf": csrf, "service-key": service_key},
    )
