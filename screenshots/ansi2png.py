#!/usr/bin/env python3
"""Turn a terminal capture with colours (`tmux capture-pane -e -p`) into a PNG.

Usage: tmux capture-pane -e -p -t SESSION | python3 ansi2png.py out.png

Needs Pillow (`pip install pillow`) and DejaVu Sans Mono (Debian's
fonts-dejavu-core). Handles what the console emits: SGR colours (16, 256 and
truecolour), bold, reverse.
"""

import re
import sys

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
SIZE = 16
FG, BG = (220, 220, 220), (24, 24, 28)
BASE16 = [
    (0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16),
    (36, 114, 200), (188, 63, 188), (17, 168, 205), (229, 229, 229),
    (102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67),
    (59, 142, 234), (214, 112, 214), (41, 184, 219), (255, 255, 255),
]


def color256(n):
    if n < 16:
        return BASE16[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    v = 8 + (n - 232) * 10
    return (v, v, v)


def parse(text):
    """Yield rows of (char, fg, bg, bold) cells."""
    rows = []
    for line in text.rstrip("\n").split("\n"):
        fg, bg, bold, rev = None, None, False, False
        cells = []
        for token in re.split(r"(\x1b\[[0-9;:]*m)", line):
            if token.startswith("\x1b["):
                codes = [int(c) if c else 0 for c in re.split("[;:]", token[2:-1])] or [0]
                i = 0
                while i < len(codes):
                    c = codes[i]
                    if c == 0:
                        fg, bg, bold, rev = None, None, False, False
                    elif c == 1:
                        bold = True
                    elif c == 22:
                        bold = False
                    elif c == 7:
                        rev = True
                    elif c == 27:
                        rev = False
                    elif 30 <= c <= 37:
                        fg = BASE16[c - 30]
                    elif 90 <= c <= 97:
                        fg = BASE16[c - 90 + 8]
                    elif 40 <= c <= 47:
                        bg = BASE16[c - 40]
                    elif 100 <= c <= 107:
                        bg = BASE16[c - 100 + 8]
                    elif c == 39:
                        fg = None
                    elif c == 49:
                        bg = None
                    elif c in (38, 48) and i + 1 < len(codes):
                        if codes[i + 1] == 5 and i + 2 < len(codes):
                            col = color256(codes[i + 2])
                            i += 2
                        elif codes[i + 1] == 2 and i + 4 < len(codes):
                            col = tuple(codes[i + 2:i + 5])
                            i += 4
                        else:
                            col = None
                        if c == 38:
                            fg = col
                        else:
                            bg = col
                    i += 1
            else:
                for ch in token:
                    f, b = fg or FG, bg or BG
                    if rev:
                        f, b = b, f
                    cells.append((ch, f, b, bold))
        rows.append(cells)
    return rows


def main():
    out = sys.argv[1]
    rows = parse(sys.stdin.read())
    font, bold = ImageFont.truetype(FONT, SIZE), ImageFont.truetype(BOLD, SIZE)
    cw = round(font.getlength("M"))
    ch = SIZE + 4
    cols = max((len(r) for r in rows), default=1)
    img = Image.new("RGB", (cols * cw + 16, len(rows) * ch + 16), BG)
    draw = ImageDraw.Draw(img)
    for y, row in enumerate(rows):
        for x, (c, f, b, is_bold) in enumerate(row):
            px, py = 8 + x * cw, 8 + y * ch
            if b != BG:
                draw.rectangle([px, py, px + cw - 1, py + ch - 1], fill=b)
            if c != " ":
                draw.text((px, py + 1), c, font=bold if is_bold else font, fill=f)
    img.save(out)


if __name__ == "__main__":
    main()
