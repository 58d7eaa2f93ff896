"""Old home of the atomic writers, kept only for ``launch/report.py`` (another branch edits it).

Use ``birds_tf.utils.records``; delete this file once no launcher imports it.
"""
from birds_tf.utils.records import (atomic_save_model, atomic_write_text,  # noqa: F401
                                    read_metrics_csv)
