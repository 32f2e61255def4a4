"""The simulated GitHub's page of an upstream pull request, as a reviewer would see it there:
its check runs on each head the PR had, and its comments. Read-only HTML for `make demo`."""

from html import escape
from typing import Any

STYLE = """body{font:14px/1.5 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3em .5em;
text-align:left;vertical-align:top}pre{white-space:pre-wrap;margin:0}.success{color:#1a7f37}
.failure,.timed_out{color:#cf222e}.neutral,.cancelled,.skipped{color:#57606a}
.comment{border:1px solid #ddd;border-radius:6px;margin:1em 0;padding:.5em 1em}"""


def render(repo: str, number: int, heads: list[str], runs: list[dict[str, Any]],
           comments: list[dict[str, Any]]) -> str:  # fmt: skip
    """The page: `heads` oldest first, `runs` the check runs on them, `comments` oldest first."""
    parts = [
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(repo)}#{number}"
        f"</title><style>{STYLE}</style><h1>{escape(repo)} · pull request #{number}</h1>",
        "<p>Simulated GitHub (make demo): what the relay wrote on this PR.</p>",
    ]
    for n, head in enumerate(reversed(heads)):
        on_head = [run for run in runs if run.get("head_sha") == head]
        label = "latest head" if n == 0 else "earlier head"
        parts.append(f"<h2>Checks on {escape(head[:12])} ({label})</h2>")
        if not on_head:
            parts.append("<p>No check runs.</p>")
            continue
        parts.append("<table><tr><th>Check</th><th>Status</th><th>Title</th><th>Summary</th></tr>")
        for run in sorted(on_head, key=lambda r: str(r.get("name"))):
            outcome = str(run.get("conclusion") or run.get("status") or "")
            output: dict[str, Any] = run["output"] if isinstance(run.get("output"), dict) else {}
            name = escape(str(run.get("name", "")))
            url = run.get("details_url")
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                name = f'<a href="{escape(url)}">{name}</a>'
            parts.append(
                f"<tr><td>{name}</td><td class={escape(outcome)}>{escape(outcome)}</td>"
                f"<td>{escape(str(output.get('title', '')))}</td>"
                f"<td><pre>{escape(str(output.get('summary', '')))}</pre></td></tr>"
            )
        parts.append("</table>")
    parts.append(f"<h2>Conversation ({len(comments)} comment{'s' * (len(comments) != 1)})</h2>")
    for comment in comments:
        user: dict[str, Any] = comment["user"] if isinstance(comment.get("user"), dict) else {}
        parts.append(
            f"<div class=comment><p><b>{escape(str(user.get('login', '')))}</b></p>"
            f"<pre>{escape(str(comment.get('body', '')))}</pre></div>"
        )
    return "".join(parts)
