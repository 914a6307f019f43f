"""The read models as the commands see them: catching up, reading, exporting for analysts."""

__all__: list[str] = []
