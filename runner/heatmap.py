"""Saver × loader heatmaps as SVG, written directly (stdlib only).

No plotting library: the SVG is text this module writes, so the bytes depend on the
numbers only (no renderer version, font embedding or timestamp), and a no-op rerun of
the report writes the same file. Text is left to the viewer's fonts (``DejaVu Sans``
first, then any sans-serif). The colour scale is viridis (perceptually uniform, readable
with the common colour-vision deficiencies and in greyscale); every cell also prints
its number, so the colour is never the only carrier of the value.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape

__all__ = ["VIRIDIS", "colour", "contrast", "heatmap_svg", "luminance", "text_colour"]

# viridis at 0, 0.125, ..., 1 (matplotlib's table, sampled): interpolated linearly in RGB.
VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")
EMPTY = "#ffffff"
CELL = 22
SUB_FONT = 11  # the subtitle's font size, its line height and a character's widest advance (em)
SUB_LINE = 14
TITLE_FONT = 15
CHAR_EM = 0.62
FONT = "DejaVu Sans, Verdana, sans-serif"


def _rgb(hexcode: str) -> tuple[int, int, int]:
    return int(hexcode[1:3], 16), int(hexcode[3:5], 16), int(hexcode[5:7], 16)


def colour(share: float) -> str:
    """The viridis colour of ``share`` (0..1)."""
    share = min(1.0, max(0.0, share))
    pos = share * (len(VIRIDIS) - 1)
    i = min(int(pos), len(VIRIDIS) - 2)
    frac = pos - i
    lo, hi = _rgb(VIRIDIS[i]), _rgb(VIRIDIS[i + 1])
    return "#" + "".join(f"{round(a + (b - a) * frac):02x}" for a, b in zip(lo, hi, strict=True))


def luminance(fill: str) -> float:
    """WCAG 2 relative luminance of ``#rrggbb``."""
    def lin(c: int) -> float:
        x = c / 255
        return x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in _rgb(fill))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def text_colour(fill: str) -> str:
    """Black or white, whichever contrasts more with ``fill`` (at least 4.58:1 either way)."""
    return "#000000" if contrast("#000000", fill) >= contrast("#ffffff", fill) else "#ffffff"


def heatmap_svg(title: str, savers: Sequence[str], loaders: Sequence[str],
                stats: Mapping[tuple[str, str], tuple[int, int]], subtitle: str = "") -> str:
    """Rows: savers; columns: loaders; each cell the per cent (rounded down) of ``ok / n``
    from ``stats[(saver, loader)] = (ok, n)``; a pair without cells is white with a dash."""
    label_w = 8 + 7 * max((len(s) for s in savers), default=4)
    label_h = 8 + 6 * max((len(s) for s in loaders), default=4)
    width = max(label_w + CELL * len(loaders) + 20, 420, 16 + int(len(title) * TITLE_FONT * CHAR_EM))
    # the subtitle wrapped to the width (a character is at most ~0.62 em wide in DejaVu Sans), the
    # axis label on its own line under it: nothing is cut off and nothing overlaps
    sub_lines = textwrap.wrap(subtitle, max(20, int((width - 16) / (SUB_FONT * CHAR_EM)))) if subtitle else []
    axis_y = 37 + SUB_LINE * len(sub_lines)
    top = axis_y + 6 + label_h
    grid_bottom = top + CELL * len(savers)
    height = grid_bottom + 74
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{FONT}" role="img" aria-labelledby="t d">',
        f'<title id="t">{escape(title)}</title>',
        f'<desc id="d">{escape(subtitle or title)} Rows: saving stack; columns: loading stack; '
        'each cell: per cent of the cells that loaded and matched.</desc>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="8" y="20" font-size="{TITLE_FONT}" font-weight="bold">{escape(title)}</text>',
    ]
    for k, line in enumerate(sub_lines):
        out.append(f'<text x="8" y="{37 + SUB_LINE * k}" font-size="{SUB_FONT}">{escape(line)}</text>')
    out.append(f'<text x="{label_w}" y="{axis_y}" font-size="10" fill="#333333">loader (column) →</text>')
    for j, lo in enumerate(loaders):
        x = label_w + CELL * j + CELL // 2 + 4
        out.append(f'<text x="{x}" y="{top - 4}" font-size="10" transform="rotate(-90 {x} {top - 4})">'
                   f'{escape(lo)}</text>')
    out.append(f'<text x="4" y="{top - 4}" font-size="10" fill="#333333">saver ↓</text>')
    for i, sv in enumerate(savers):
        y = top + CELL * i
        out.append(f'<text x="{label_w - 4}" y="{y + 15}" font-size="10" text-anchor="end">{escape(sv)}</text>')
        rects, labels = [], []
        for j, lo in enumerate(loaders):
            x = label_w + CELL * j
            ok, n = stats.get((sv, lo), (0, 0))
            if n:
                fill = colour(ok / n)
                label, ink = str(100 * ok // n), text_colour(fill)
            else:
                fill, label, ink = EMPTY, "–", "#666666"
            rects.append(f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{fill}"/>')
            labels.append(f'<text x="{x + CELL // 2}" y="{y + 15}" fill="{ink}">{label}</text>')
        # cell borders (white) and label defaults once per row: the file stays small
        out.append('<g stroke="#ffffff" stroke-width="1">' + "".join(rects) + "</g>")
        out.append('<g font-size="9" text-anchor="middle">' + "".join(labels) + "</g>")
    # the scale: 0 .. 100 % in ten steps, labelled
    y = grid_bottom + 22
    out.append(f'<text x="{label_w}" y="{y - 6}" font-size="10">per cent of cells that load and match '
               '(– : no cell could exist)</text>')
    for k in range(11):
        fill = colour(k / 10)
        x = label_w + 26 * k
        out.append(f'<rect x="{x}" y="{y}" width="26" height="14" fill="{fill}"/>')
        out.append(f'<text x="{x + 13}" y="{y + 28}" font-size="9" text-anchor="middle">{10 * k}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
