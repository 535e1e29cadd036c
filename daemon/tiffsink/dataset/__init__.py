"""The dataset stage: where committed rows live, and the only code that touches its files.

`writer` appends and commits (the commit point is the index transaction), `reader` maps
committed rows while a writer appends, `verify` and `status` inspect, `lookup` answers
exactly-once checks. `layout` names the files, `lock` guards the single writer, `index`
holds every SQL statement, `meta` the image spec a dataset was created with, `fsio` the
durable file calls. Each storage format is one package under `formats/`.
"""

from .collection import Collection, open_collection
from .opener import open_dataset
from .reader import Dataset
from .writer import DatasetWriter

__all__ = ["Collection", "Dataset", "DatasetWriter", "open_collection", "open_dataset"]
