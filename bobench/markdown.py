"""Markdown pipe tables for the human-readable reports (ranking.md, table1.md)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def markdown_table(df: pd.DataFrame) -> str:
    """Plain pipe table (avoids the optional ``tabulate`` dependency of ``DataFrame.to_markdown``)."""

    def cell(value: Any) -> str:
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            return "–"
        if isinstance(value, (float, np.floating)):
            return f"{value:.3f}"
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])
