"""Shared by the cluster tests' node fixtures."""
import pytest


def stop_nodes(made):
    """Stops every roomcast node a test started (those still running must exit cleanly: their
    sanitizer reports fail the test) and removes their files; all failures are reported."""
    errors = []
    for s in made:
        try:
            if s.returncode is None:
                s.stop()
        except AssertionError as e:
            errors.append(str(e))
        finally:
            s.cleanup()
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)
