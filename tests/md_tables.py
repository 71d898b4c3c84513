"""Test helper: read the markdown tables of an ``optisr bench`` report."""


def md_tables(text: str) -> dict[str, dict[str, list[str]]]:
    """Markdown report -> {table title (after '### '): {first cell: [other cells]}}; header rows skipped."""
    out: dict[str, dict[str, list[str]]] = {}
    title = None
    for line in text.splitlines():
        if line.startswith("### "):
            title = line[4:]
            out[title] = {}
        elif title and line.startswith("| ") and not line.startswith(("| method", "| image")):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[title][cells[0]] = cells[1:]
    return out
