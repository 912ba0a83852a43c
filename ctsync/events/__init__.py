"""Event syncs: warehouse Track, Page and Screen rows sent to CleverTap's Upload API, once per event id."""
