# Makes tests/mount a package so its test modules can share basenames with
# tests elsewhere (pytest imports them as mount.test_*).
