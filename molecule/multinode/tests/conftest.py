import os
import sys
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def nodes():
    """The five hosts by their short names. The tests take this fixture, not
    testinfra's `host`, so each runs once and reaches every host it needs."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return {name: testinfra.get_host(f"ansible://flaskops-multinode-{name}", ansible_inventory=inventory)
            for name in ("lb", "app1", "app2", "db", "backup")}
