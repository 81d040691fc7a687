"""The videos: lifecycle, uploads, catalog, subtitles, watching, live events."""
