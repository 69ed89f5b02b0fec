"""Installing remote monitoring: the default bands a deployment sets are checked at start."""

from __future__ import annotations

import pytest

from adapters.monitoring.plugin import Options, install
from fhir_server.interactions.service import FhirService
from fhir_server.storage.sqlite import SQLiteStorage


@pytest.mark.parametrize(
    ("bands", "message"),
    [
        ({"85354-9": (None, 140.0)}, "85354-9 not among"),  # the panel: bands are per measure
        ({"8867-4": (120.0, 50.0)}, "8867-4 has low 120.0 above high 50.0"),
    ],
)
def test_unusable_default_bands_stop_the_start(tmp_path, bands, message) -> None:
    service = FhirService(SQLiteStorage(tmp_path / "x.db"))
    with pytest.raises(ValueError, match=message):
        install(service, Options(bands=bands))


def test_a_band_set_to_none_removes_the_default(tmp_path) -> None:
    service = FhirService(SQLiteStorage(tmp_path / "x.db"))
    alerts = install(service, Options(bands={"8310-5": (None, None), "8867-4": (50.0, 120.0)}))
    assert alerts.defaults["8310-5"] == (None, None)
    assert alerts.defaults["8867-4"] == (50.0, 120.0)
    assert alerts.defaults["8480-6"] == (90.0, 180.0)  # the shipped one
