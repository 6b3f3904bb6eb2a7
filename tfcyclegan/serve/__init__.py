"""A local web app and its HTTP API: drop a photo in a browser, see it translated."""
