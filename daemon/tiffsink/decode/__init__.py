"""The decode stage: one TIFF file in, rows of the image spec out.

`tiffheader` parses IFD 0 cheaply and `limits` checks it before any allocation,
`safeopen` opens sources without following links out of the root, `planes` says which
pages are rows, `decoder` picks the cheapest route (raw read, cv2, tifffile; `fallback`:
Pillow, libtiff), `samples` shows a page as viewers do (palette, CMYK, MinIsWhite, extra
samples), and `convert` maps it onto a row. `metadata` says what each row shows, from
`tifftags`, `micromanager`, `vendors` and `omexml`.
Runs inside worker processes; `decode_file` is the same code as a plain function.
"""

from .decoder import Decoder, DecodeResult, PageInfo, decode_file

__all__ = ["DecodeResult", "Decoder", "PageInfo", "decode_file"]
