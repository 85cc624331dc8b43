"""Work the gateway does for the whole platform in the background, one replica at a time:
the lost-message sweep."""
