"""Dataset readers, RLE, YOLO export and the synthetic generator.

Every reader returns a `ReadResult`: the samples it could read and, with `skip_invalid=True`,
the `DataError` of every item it skipped. `read_dataset` dispatches on the format name.
"""

from .registry import FORMATS, ReadResult, read_dataset

__all__ = ["FORMATS", "ReadResult", "read_dataset"]
