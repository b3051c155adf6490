"""Write the demo line's generated panel frames (api/demo/frames/panel_*.png, calib_*.png), deterministically.

Run from the repository root: ``python scripts/make_demo_panels.py``. The frames are committed; this script
says exactly what they show (colour as Lab, size in mm at 0.5 px/mm, under a warm light cast).
"""

from __future__ import annotations

from pathlib import Path

import cv2

from inspection.conformance.colour import parse_colour
from inspection.conformance.synthetic import checkerboard, panel

OUT = Path(__file__).resolve().parent.parent / "api" / "demo" / "frames"
CANVAS = (640, 480)
PX_PER_MM = 0.5
CAST = (1.05, 1.0, 0.85)
BELT = (140, 140, 140)  # a grey belt: dark and light panels both stand out from it

PANELS = {
    # name: (colour actually painted, size actually cut in mm)
    "panel_1005_a.png": ("RAL 7016", (1000, 800)),   # as ordered
    "panel_1006_a.png": ("RAL 7016", (1000, 800)),   # ordered in RAL 5010 gentian blue: wrong colour
    "panel_1007_a.png": ("RAL 9016", (1000, 760)),   # ordered 1000 x 800: 40 mm short
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    png = [cv2.IMWRITE_PNG_COMPRESSION, 9]
    cv2.imwrite(str(OUT / "calib_checkerboard.png"), checkerboard((7, 5), square_px=20, margin_px=30), png)
    cv2.imwrite(str(OUT / "calib_white.png"), panel(CANVAS, (0, 0), (0, 0, 0), cast=CAST, belt_bgr=BELT), png)
    for index, (name, (colour, (w, h))) in enumerate(PANELS.items()):
        image = panel(CANVAS, (w * PX_PER_MM, h * PX_PER_MM), parse_colour(colour), angle_deg=1.5 + index, cast=CAST,
                      belt_bgr=BELT)
        cv2.imwrite(str(OUT / name), image, png)


if __name__ == "__main__":
    main()
