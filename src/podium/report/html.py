"""Small HTML builders for podium's self-contained pages: inline CSS, images as data URIs, no scripts."""

from __future__ import annotations

from html import escape
from typing import Iterable

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1d232a;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b8c2cc}nav{padding:8px 28px;background:#e9edf1;font-size:13px}
nav a{margin-right:14px;color:#1d5fa8;text-decoration:none}main{padding:8px 28px 40px}
section{background:#fff;border:1px solid #dde2e7;border-radius:6px;padding:14px 18px;margin:16px 0}
h2{font-size:17px;margin:0 0 10px}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border-bottom:1px solid #e3e7eb;padding:3px 10px;text-align:right;white-space:nowrap}
th{background:#f0f3f6}td.l,th.l{text-align:left}tr.total td{font-weight:600;border-top:2px solid #b9c2cb}
td.bad{color:#b42318}td.good{color:#067647}pre{background:#f0f3f6;padding:10px;overflow:auto;font-size:12px}
.plot{max-width:100%}.note{color:#5b6670;font-size:13px}
.grid{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}.pairs{gap:4px 28px}
figure{margin:0;width:150px;font-size:11px;background:#fafbfc;border:1px solid #e3e7eb;border-radius:4px;padding:4px}
figure img{width:140px;height:140px;object-fit:contain;image-rendering:pixelated;background:#000}
figcaption{margin-top:3px;word-break:break-all}figure.wide{width:440px}figure.wide img{width:140px}
.ok{color:#067647}.no{color:#b42318}
"""


def esc(value) -> str:
    return escape(str(value), quote=True)


def table(headers: list[str], rows: Iterable[list], left: int = 1, row_classes: Iterable[str] | None = None,
          cell_html: bool = False) -> str:
    """A table; the first `left` columns are left-aligned (names), the rest right-aligned (numbers).
    Cells are escaped unless cell_html (then the caller escaped them)."""
    head = "".join(f'<th class="l">{esc(h)}</th>' if i < left else f"<th>{esc(h)}</th>" for i, h in enumerate(headers))
    body = []
    classes = iter(row_classes) if row_classes is not None else None
    for row in rows:
        cls = next(classes, "") if classes is not None else ""
        cells = "".join(
            f'<td{" class=l" if i < left else ""}>{cell if cell_html else esc(cell)}</td>' for i, cell in enumerate(row)
        )
        body.append(f'<tr{f" class={cls}" if cls else ""}>{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def img(uri: str, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" src="{uri}" alt="{esc(alt)}">'


def figure(uri: str, caption_html: str, extra_uris: Iterable[str] = ()) -> str:
    """One gallery tile: the image (and e.g. its Grad-CAM overlays) with a caption (already escaped)."""
    extra = list(extra_uris)
    pictures = "".join(f'<img src="{u}" alt="">' for u in [uri, *extra])
    return f'<figure{" class=wide" if extra else ""}>{pictures}<figcaption>{caption_html}</figcaption></figure>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document: header, a navigation bar to every section, the sections."""
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f"<body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{nav}</nav>"
            f"<main>{body}</main></body></html>\n")
