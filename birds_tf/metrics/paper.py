"""The paper's published numbers, kept in one file (`paper_tables.csv`), and which config each
row of a table is reproduced by.

One row per (table, row id): the gin file that reproduces it, the paper's dataset group,
architecture, sparsity and method, and the published RA / SA best-final-diff, training FLOPs
(absolute, the paper's x1e17 column times 1e17), inference FLOPs (x1e9 column times 1e9), RGG and
RGG reduction. Empty cells are numbers the table does not print. `tests/test_paper_tables.py`
checks rows against the paper's text.
"""
import csv
import dataclasses
import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_tables.csv")
METRICS = ("ra_best", "ra_final", "ra_diff", "sa_best", "sa_final", "sa_diff", "training_flops",
           "inference_flops", "rgg", "rgg_reduction")


@dataclasses.dataclass(frozen=True)
class PaperRow:
    table: str
    row: str
    gin: str
    group: str
    dataset: str
    arch: str
    sparsity: float
    method: str
    setting: str
    values: dict  # METRICS -> float, or None where the paper prints none


def load(path=PATH):
    """{table name: [PaperRow, ...]} in the paper's row order."""
    tables = {}
    with open(path, newline="") as f:
        for record in csv.DictReader(f):
            values = {key: (float(record[key]) if record[key] else None) for key in METRICS}
            row = PaperRow(table=record["table"], row=record["row"], gin=record["gin"],
                           group=record["group"], dataset=record["dataset"], arch=record["arch"],
                           sparsity=float(record["sparsity"]), method=record["method"],
                           setting=record["setting"], values=values)
            tables.setdefault(row.table, []).append(row)
    return tables


def table(name, path=PATH):
    """The rows of table `name` ("1", "2", "3", "A6", "A10", "A11", "A12", "A17")."""
    tables = load(path)
    key = str(name).strip()
    key = key[len("table"):].strip() if key.lower().startswith("table") else key
    key = key.upper()
    if key not in tables:
        raise ValueError(f"Unknown table {name!r}; the paper numbers in {os.path.basename(path)} "
                         f"cover tables {', '.join(tables)}.")
    return tables[key]
