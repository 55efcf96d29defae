"""Checks of plain values shared by the maths modules and the methods: a leaf, importing nothing."""


def check_count(name, value, minimum=1):
    """Raise ValueError unless value is an integer >= minimum (True is an int to Python, and
    a silent mistake as a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
