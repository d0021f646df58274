import sslsr


def test_version_is_declared():
    assert sslsr.__version__.count(".") == 2
