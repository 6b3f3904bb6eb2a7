"""The web app's tests. A package, so its conftest and helpers do not take the name `conftest`
that the other test folders import (tests/conftest.py's tiny_config)."""
