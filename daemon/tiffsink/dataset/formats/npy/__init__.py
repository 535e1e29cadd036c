"""The npy format: `images.npy`, a fixed 4096-byte header whose row count is rewritten in
place (`header`), rows at fixed offsets (`rows`), written in place by the workers
(`sink`), made durable by one fdatasync (`store`), memory-mapped by readers (`reader`),
checked by `tiffsink verify` (`check`)."""

from .format import NpyFormat

NPY = NpyFormat()

__all__ = ["NPY", "NpyFormat"]
