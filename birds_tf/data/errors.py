"""The one error a user sees when a dataset is not on disk.

Training jobs run on machines that may have no internet, and a download started from inside a
training job can hang for minutes before failing. birds-tf therefore never downloads: it checks
for the data when the pipeline is built and, if it is missing, stops with the exact steps that
fix it. Subclassing `FileNotFoundError` lets callers catch it the ordinary way.
"""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not prepared where birds-tf looked; the message says how to prepare it."""
