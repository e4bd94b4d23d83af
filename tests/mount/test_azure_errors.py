"""What a user sees when Resource Manager misbehaves: throttling is waited
out transparently, nonsense answers are EIO, refusals are EACCES, and the
log says what Azure said."""

import errno

import pytest

STATUS = "rg-prod/coll1/rp1/status"


def test_throttled_status_read_is_retried_transparently(rpfs, emulator):
    m = rpfs()
    emulator.reset_stats()
    emulator.faults({"target": "arm", "path_contains": "restorepoints/rp1",
                     "action": "status", "status": 429,
                     "code": "TooManyRequests", "retry_after": 1,
                     "count": 2})
    assert (m.path / STATUS).read_text() == "Succeeded\n"
    assert emulator.stats()["faults_injected"] == 2


def test_service_unavailable_is_retried_transparently(rpfs, emulator):
    m = rpfs()
    emulator.faults({"target": "arm", "path_contains": "restorepoints/rp1",
                     "action": "status", "status": 503, "count": 2})
    assert (m.path / STATUS).read_text() == "Succeeded\n"


def test_dropped_connection_is_retried_transparently(rpfs, emulator):
    m = rpfs()
    emulator.faults({"target": "arm", "path_contains": "restorepoints/rp1",
                     "action": "reset", "count": 1})
    assert (m.path / STATUS).read_text() == "Succeeded\n"


def test_malformed_json_is_eio(rpfs, emulator):
    m = rpfs()
    emulator.faults({"target": "arm", "path_contains": "restorepoints/rp1",
                     "action": "malformed", "count": -1})
    with pytest.raises(OSError) as ei:
        (m.path / STATUS).read_text()
    assert ei.value.errno == errno.EIO
    assert "malformed JSON" in m.log_text()


def test_forbidden_is_eacces_with_azure_code_in_log(rpfs, emulator):
    m = rpfs()
    emulator.faults({"target": "arm", "path_contains": "restorepoints/rp1",
                     "action": "status", "status": 403,
                     "code": "AuthorizationFailed", "count": -1})
    with pytest.raises(PermissionError) as ei:
        (m.path / STATUS).read_text()
    assert ei.value.errno == errno.EACCES
    assert "AuthorizationFailed" in m.log_text()
