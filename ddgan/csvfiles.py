"""The project's CSV files (a results CSV and sweep.csv, a run's eval.csv): their columns, and
rows read, written and appended the same way by train, evaluate, plot and the sweep.

A writer never leaves half a file: write_csv replaces a file atomically and append_csv adds
its rows with one write. A reader names a damaged row by its path and line.
"""
import csv
import io
from pathlib import Path

from .files import append_text, atomic_write

RESULT_COLUMNS = ["run", "method", "divergence", "sampler", "steps", "nfe", "metric_name", "fd",
                  "kid", "kid_std", "precision", "recall", "n_samples", "extractor",
                  "extractor_hash", "data", "seed", "train_seed", "img_per_s", "ckpt_step", "images_seen",
                  "train_seconds", "train_cpu_seconds", "train_device", "wall_seconds", "grid", "eval_csv"]
METRIC_COLUMNS = ["fd", "kid", "kid_std", "precision", "recall"]
PERIODIC_COLUMNS = ["step", "images_seen", "train_seconds", "train_cpu_seconds", "metric_name", "fd", "n_samples", "nfe",
                    "extractor", "extractor_hash"]
LABEL_COLUMNS = ["divergence"]  # what a method's labels() may record beside its sampler
INTEGERS = {"step", "steps", "nfe", "n_samples", "seed", "train_seed", "ckpt_step", "images_seen"}
FLOATS = {"fd", "kid", "kid_std", "precision", "recall", "img_per_s", "train_seconds", "train_cpu_seconds",
          "wall_seconds"}


def read_csv_rows(path):
    """(header, [(line number, row dict)]) of a CSV written by append_csv, refusing a row whose
    cell count is not the header's (a damaged row, e.g. from an interrupted write)."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows = []
        for cells in reader:
            if not cells:
                continue
            if len(cells) != len(header):
                raise ValueError(f"{path} line {reader.line_num}: {len(cells)} cells where the header "
                                 f"has {len(header)} (a damaged row, e.g. from an interrupted "
                                 f"write); delete or repair that line")
            rows.append((reader.line_num, dict(zip(header, cells))))
    return header, rows


def _csv_text(columns, rows, header):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return buffer.getvalue()


def write_csv(path, columns, rows):
    """Write rows (dicts) as a new CSV at path, atomically (a reader sees the old file or the new)."""
    text = _csv_text(columns, rows, header=True)
    atomic_write(Path(path), lambda f: f.write(text.encode()))


def append_csv(path, columns, rows):
    """Append rows (dicts) to a CSV with one write (ddgan.files.append_text), writing the
    header when the file is new. Only the header is read: a damaged row is the readers' to
    refuse, not a reason to lose the rows being appended."""
    path = Path(path)
    if not path.exists() or not path.stat().st_size:
        return append_text(path, _csv_text(columns, rows, header=True))
    with open(path, newline="") as f:
        old_columns = next(csv.reader(f), [])
    if old_columns != columns:  # written by an older version: rewrite it under the new header
        write_csv(path, columns, [row for _, row in read_csv_rows(path)[1]])
    append_text(path, _csv_text(columns, rows, header=False))


def parse_row(raw, where="row"):
    """A CSV row with its numbers parsed; empty cells (not computed) become None."""
    row = {}
    for column in dict.fromkeys([*RESULT_COLUMNS, *raw]):
        text = (raw.get(column) or "").strip()
        try:
            if column in INTEGERS:
                row[column] = int(text) if text else None
            elif column in FLOATS:
                row[column] = float(text) if text else None
            else:
                row[column] = text
        except ValueError:
            raise ValueError(f"{where}: {column} holds {text!r}, not a number (a damaged row?); "
                             f"delete or repair that line") from None
    return row


def read_csv(path):
    header, rows = read_csv_rows(path)
    return header, [parse_row(raw, f"{path} line {line}") for line, raw in rows]
